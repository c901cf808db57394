"""Tamper-proof isolated grading: student code in a sandbox, oracle and comparison in the grader.

One idea per module: :mod:`.submission` (what runs), :mod:`.protocol` (plain-data messages), :mod:`.sandbox`
(the limited process and its cleanup), :mod:`.stubs` (what the sandbox sees), :mod:`.worker` (the program in the
sandbox, standalone), :mod:`.remote` (the Answer proxy), :mod:`.grader` (one submission), :mod:`.report`
(Gradescope JSON, JUnit, Markdown, table), :mod:`.batch` (a class), :mod:`.resume` (reusing finished results,
the output lock), :mod:`.executors` (local pool or Dask), :mod:`.demo` (the bundled examples).
"""
