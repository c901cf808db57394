"""Running a notebook in a real Jupyter kernel (``nbclient``) without its rare silent wait.

With ipykernel 7, pyzmq 27 and nbclient 0.11 a cell's reply can reach the client's shell socket without waking
the coroutine that waits for it (an edge-triggered wake-up used up by another operation on the socket; nbclient
issue #312, ipykernel issue #1554): the kernel is idle, the reply sits unread, and nbclient notices it only when
its poll times out, at the end of the cell's whole time limit (a 12-second notebook once took 4.5 minutes in the
test suite, waiting after 03's widget cell). Each new poll first looks at the socket's state, so
:class:`NotebookRunner` waits in slices of :data:`SLICE_SECONDS`: a lost wake-up costs at most one slice.
"""
from __future__ import annotations

import time
from queue import Empty
from typing import Any, Callable

from nbclient import NotebookClient

#: the longest a reply already received can wait unnoticed
SLICE_SECONDS = 1.0


def sliced_get_msg(get_msg: Callable[..., Any], slice_seconds: float = SLICE_SECONDS) -> Callable[..., Any]:
    """``get_msg(timeout=None)`` of a kernel client's channel as a series of polls of at most ``slice_seconds``
    each, until a message comes or ``timeout`` (seconds; ``None``: no limit) has passed, then ``Empty``."""
    async def get(timeout: float | None = None, **kwargs: Any) -> Any:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            left = slice_seconds if deadline is None else max(0.0, min(slice_seconds, deadline - time.monotonic()))
            try:
                return await get_msg(timeout=left, **kwargs)
            except Empty:
                if deadline is not None and time.monotonic() >= deadline:
                    raise

    return get


class NotebookRunner(NotebookClient):
    """``nbclient.NotebookClient`` whose kernel client reads the shell and IOPub channels in slices
    (:func:`sliced_get_msg`); everything else is nbclient's."""

    async def async_start_new_kernel_client(self):
        kc = await super().async_start_new_kernel_client()
        for channel in (kc.shell_channel, kc.iopub_channel):
            channel.get_msg = sliced_get_msg(channel.get_msg)
        return kc
