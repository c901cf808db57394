"""``kernel_run.sliced_get_msg``: a wait for a kernel message never lasts longer than one slice without a fresh
look at the socket, and still ends with ``Empty`` at the caller's time limit."""
from __future__ import annotations

import asyncio
import time
from queue import Empty

import pytest

from autograder.kernel_run import sliced_get_msg


def _channel(answers_after: int):
    """A ``get_msg`` that finds nothing on its first ``answers_after`` polls (each lasting its timeout)."""
    polls: list = []

    async def get_msg(timeout=None):
        polls.append(timeout)
        if len(polls) <= answers_after:
            await asyncio.sleep(timeout)
            raise Empty
        return {"msg_type": "execute_reply"}

    return get_msg, polls


def test_a_reply_is_found_by_the_next_slice():
    get_msg, polls = _channel(answers_after=3)
    got = asyncio.run(sliced_get_msg(get_msg, slice_seconds=0.05)(timeout=None))
    assert got == {"msg_type": "execute_reply"}
    assert len(polls) == 4 and all(t == 0.05 for t in polls)


def test_the_time_limit_still_holds():
    get_msg, polls = _channel(answers_after=10 ** 6)
    start = time.monotonic()
    with pytest.raises(Empty):
        asyncio.run(sliced_get_msg(get_msg, slice_seconds=0.05)(timeout=0.22))
    assert 0.2 <= time.monotonic() - start < 1.0
    assert len(polls) >= 5 and all(0 <= t <= 0.05 for t in polls)
