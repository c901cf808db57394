"""``python -m autograder``: see :mod:`autograder.cli`.

The process ends with :func:`autograder.fastexit.exit`: exit handlers run and streams are flushed, but the
modules are not torn down one by one (with torch loaded that alone takes ~0.5 s).
"""
from .cli import main
from .fastexit import exit

exit(main())
