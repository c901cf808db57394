"""``python -m autograder``: see :mod:`autograder.cli`.

The process ends with :func:`autograder.fastexit.exit`: exit handlers run and streams are flushed, but the
modules are not torn down one by one (with torch loaded that alone takes ~0.5 s). Its garbage collector runs with
the grader's setting (:mod:`autograder.collector`), which the grading processes it forks inherit.
"""
from .collector import tune

tune()      # before the imports below build anything

from .cli import main  # noqa: E402
from .fastexit import exit  # noqa: E402

exit(main())
