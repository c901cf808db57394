"""nbgrader configuration for the convlab course (the repository root is the course root).

solutions/<id>/<id>.ipynb (source) --nbgrader generate_assignment--> assignments/<id>/<id>.ipynb (release).
Hardening, from measured nbgrader 0.9.6 behaviour (see shared FACTS.md):
- skip_cells_with_tag is an unguessable per-course value: students could otherwise tag test cells
  `skip-execution` and nbgrader would not run them;
- missing cells (a deleted or metadata-stripped test cell) are restored from the gradebook;
- hidden tests are cleared from generated feedback;
- every cell has a time limit, and SQLite waits instead of failing the run on a locked gradebook;
- autograde never runs student code in nbgrader's kernel: the isolated grader (IsolatedAutograde) replaces
  Execute, grades in the sandbox and writes each exercise's score into its test cell, which SaveAutoGrades
  records. `nbgrader autograde` and formgrader's Autograde button give the tamper-proof score.
The course secret (.convlab-secret, git-ignored) seeds the hidden cases: one seed per assignment (autograder.seeds).
"""
import os
import sys

_root = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, _root)
from autograder.seeds import derive, secret_text  # noqa: E402
from autograder.integrations.nbgrader_preprocessor import IsolatedAutograde  # noqa: E402
from nbconvert.preprocessors import ClearMetadataPreprocessor, CSSHTMLHeaderPreprocessor  # noqa: E402
from nbgrader.preprocessors import (AssignLatePenalties, CheckCellMetadata, ClearHiddenTests, GetGrades,  # noqa: E402
                                    IgnorePattern, LimitOutput, SaveAutoGrades)

c = get_config()  # noqa: F821 - provided by nbgrader

_secret = secret_text(_root)

c.CourseDirectory.root = _root
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "assignments"
c.CourseDirectory.db_url = f"sqlite:///{os.path.join(_root, 'gradebook.db')}?timeout=60"
c.CourseDirectory.course_id = "convlab"

c.Execute.timeout = 120
c.Execute.interrupt_on_timeout = True
c.Execute.skip_cells_with_tag = "skip-" + derive(_secret, "skip-tag")[:24]
c.OverwriteCells.add_missing_cells = True

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.enforce_metadata = True

c.GenerateFeedback.preprocessors = [GetGrades, CSSHTMLHeaderPreprocessor, ClearHiddenTests]

c.Autograde.autograde_preprocessors = [IsolatedAutograde, IgnorePattern, ClearMetadataPreprocessor, LimitOutput,
                                       SaveAutoGrades, AssignLatePenalties, CheckCellMetadata]
