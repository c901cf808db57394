"""What the student edition's wheel leaves out and what it adds (the metadata is in pyproject.toml).

``make student-edition`` builds the wheel with setuptools. The wheel is the student library: checks, oracles,
visible cases, datasets. :data:`INSTRUCTOR_ONLY` modules never go into it: the isolated grader, the integrations,
the command line, the release tools, the course root and the seeds of hidden cases. :data:`STUDENT_ENVIRONMENT`
files configure the environment the wheel is installed into: every IPython kernel loads ``autograder.check`` (one
line instead of a ``NameError`` after a kernel restart) and JupyterLab hides nbgrader's instructor tools.

An editable install (``make setup``: an instructor's or developer's checkout) imports everything from the source
tree and leaves the Jupyter settings out, so formgrader stays available there.
"""
from setuptools import setup
from setuptools.command.build_py import build_py
from setuptools.command.editable_wheel import editable_wheel

INSTRUCTOR_ONLY = (
    "autograder.__main__", "autograder.cli",            # python -m autograder grade | batch | demo | ...
    "autograder.isolation", "autograder.integrations",  # the trusted grader, nbgrader/Gradescope/GitHub
    "autograder.analytics",                             # class reports over a batch output
    "autograder.release", "autograder.edition", "autograder.course", "autograder.curriculum",
    "autograder.seeds",                                 # the course secret and hidden-case seeds
    "autograder.figures.attach",                        # writes key figures into solutions/
)
STUDENT_ENVIRONMENT = [
    ("etc/ipython", ["edition/etc/ipython/ipython_kernel_config.json"]),
    ("etc/jupyter/labconfig/page_config.d", ["edition/etc/jupyter/labconfig/page_config.d/convlab-course.json"]),
]


def instructor_only(dotted: str) -> bool:
    return any(dotted == m or dotted.startswith(m + ".") for m in INSTRUCTOR_ONLY)


class StudentBuildPy(build_py):
    """build_py without the instructor-only modules."""

    def find_package_modules(self, package, package_dir):
        modules = super().find_package_modules(package, package_dir)
        return [(pkg, mod, path) for pkg, mod, path in modules if not instructor_only(f"{pkg}.{mod}")]


class CheckoutEditable(editable_wheel):
    """An editable install is a course checkout: the whole source tree, no student Jupyter settings."""

    def run(self):
        self.distribution.data_files = []
        super().run()


setup(cmdclass={"build_py": StudentBuildPy, "editable_wheel": CheckoutEditable}, data_files=STUDENT_ENVIRONMENT)
