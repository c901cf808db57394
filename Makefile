# convlab: two entry points on a fresh machine with Python 3.11, make and git.
#   make demo   set up .venv and grade the bundled example submissions (score table + feedback)
#   make test   set up .venv and run the whole test suite
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
# nbgrader calls `alembic` by name: the venv's bin/ must be on PATH.
RUN    := PATH="$(CURDIR)/$(BIN):$$PATH" PYTHONNOUSERSITE=1
WORKERS ?= 2
# Where the CPU build of torch comes from. Empty: the configured indexes (this course's machines mirror the CPU
# build). On a machine with internet and no GPU: `make setup TORCH_INDEX=cpu` (PyTorch's CPU wheel index), or any
# index URL; without it, PyPI's torch wheel for Linux pulls CUDA libraries that the lock does not list.
TORCH_INDEX ?=
CPU_TORCH_INDEX := https://download.pytorch.org/whl/cpu
TORCH_INDEX_URL := $(if $(filter cpu,$(TORCH_INDEX)),$(CPU_TORCH_INDEX),$(TORCH_INDEX))
PIP_INDEX := $(if $(TORCH_INDEX_URL),--extra-index-url $(TORCH_INDEX_URL))

.PHONY: setup demo test test-fast release student-edition lock clean

setup: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check $(PIP_INDEX) -r requirements.txt
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	$(RUN) $(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (convlab)" >/dev/null
	touch $@

demo: setup
	$(RUN) $(BIN)/python -m autograder demo

test: setup
	$(RUN) $(BIN)/python -m pytest -n $(WORKERS) -q -p no:cacheprovider

test-fast: setup
	$(RUN) $(BIN)/python -m pytest -n $(WORKERS) -q -p no:cacheprovider -m "not slow"

# Regenerate the student release from solutions/, then the example submissions built on it (both committed).
release: setup
	$(RUN) $(BIN)/python -m autograder.release
	$(RUN) $(BIN)/python examples/make_examples.py

# What students get, in dist/: the library's wheel (no solutions, secret or instructor tools) and the release
# notebooks with a student README. Students never need this repository.
student-edition: setup
	$(RUN) $(BIN)/python -m autograder.edition

lock: setup
	$(BIN)/python -m pip freeze --exclude-editable | sed 's/+cpu//' > requirements.lock.tmp && \
	  (sed -n '1,2p' requirements.txt; cat requirements.lock.tmp) > requirements.txt && rm requirements.lock.tmp

clean:
	rm -rf $(VENV) demo-results .pytest_cache dist
