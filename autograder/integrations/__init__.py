"""Where grades go: nbgrader's gradebook, Gradescope, GitHub Actions. Each module adapts the isolated grader's
:class:`~autograder.isolation.grader.SubmissionResult` to one workflow; none grades by itself."""
