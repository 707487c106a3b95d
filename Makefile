# The course's commands. Each creates .venv when it is missing and installs the locked versions into it;
# a fresh machine needs only python3 (3.11, 3.12 or 3.13) and make; test-colab also needs a Python 3.13.
#   make course   execute every solution notebook (default scale) and write build/course/report.md
#   make test     the tests: unit tests, exercise/solution sync, hygiene, every notebook at the tiny scale
#   make test-colab  the same tests on Colab's published runtime (Python 3.13, tests/colab_runtime.txt), installed as on Colab
#   make lab      JupyterLab on the course
#   make bench    our multi-task models against DeepCTR's, float32 and mixed_bfloat16: throughput, memory, AUC
#   make gpu-check  every solution at the full scale on a GPU: wall time and device per notebook
# Another Python: make test PYTHON=python3.12 VENV=.venv-3.12

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
UV_TOOL := .tools/bin/uv
UV := $(shell command -v uv 2>/dev/null || echo $(UV_TOOL))
JOBS ?= 2
export TF_CPP_MIN_LOG_LEVEL ?= 2
export PYTHONHASHSEED ?= 0

.PHONY: course test test-colab lab bench gpu-check exercises solutions check-exercises install clean

install: $(VENV)/.installed

$(UV_TOOL):
	$(PYTHON) -m venv .tools
	.tools/bin/python -m pip install -q --disable-pip-version-check "uv>=0.5"

$(VENV)/.installed: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(VENV) $(UV) sync --frozen --extra notebooks --extra test --python $(PYTHON)
	touch $@

course: install
	$(PY) -m utils.runner course $(if $(SCALE),--scale $(SCALE))

test: install
	$(PY) -m utils.exercises --check
	$(PY) -m utils.runner prepare-tests --scale tiny --out build/nbtest
	$(PY) -m pytest -n $(JOBS) --dist loadfile --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 tests build/nbtest

# Colab's runtime: its published versions (tests/colab_runtime.txt, also the course's declared floors) on its
# Python, the course installed as the setup cell installs it (--no-deps -e, plus the notebooks' colab_pip extras
# within those versions). The exercise sync check is left to `make test`: it does not depend on the stack.
# Python 3.13: python3.13 on the PATH, else pyenv's newest 3.13, else whatever uv finds or fetches for "3.13".
IS_313 := import sys; assert sys.version_info[:2] == (3, 13); print(sys.executable)
COLAB_PYTHON ?= $(shell python3.13 -c '$(IS_313)' 2>/dev/null || \
	PYENV_VERSION=$$(pyenv versions --bare 2>/dev/null | grep '^3\.13' | tail -n 1) python -c '$(IS_313)' 2>/dev/null || \
	echo 3.13)
COLAB_VENV ?= .venv-colab
$(COLAB_VENV)/.installed: tests/colab_runtime.txt pyproject.toml | $(UV) install
	rm -rf $(COLAB_VENV)
	$(UV) venv -q --python $(COLAB_PYTHON) $(COLAB_VENV)
	VIRTUAL_ENV=$(COLAB_VENV) $(UV) pip install -q -r tests/colab_runtime.txt
	VIRTUAL_ENV=$(COLAB_VENV) $(UV) pip install -q --no-deps -e .
	VIRTUAL_ENV=$(COLAB_VENV) $(UV) pip install -q -c tests/colab_runtime.txt $$($(PY) -m utils.colab extras) \
		"pytest>=8.0" "pytest-xdist>=3.5" "nbval>=0.11" ipykernel ipywidgets nbformat nbclient tqdm
	touch $@

test-colab: $(COLAB_VENV)/.installed
	$(COLAB_VENV)/bin/python -m utils.runner prepare-tests --scale tiny --out build/nbtest-colab
	$(COLAB_VENV)/bin/python -m pytest -n $(JOBS) --dist loadfile --nbval-lax --nbval-current-env \
		--nbval-cell-timeout=600 tests build/nbtest-colab

lab: install
	$(VENV)/bin/jupyter lab

# Our Shared-Bottom, MMoE, PLE and ESMM against DeepCTR's on the same data, in a separate environment
# (.venv-bench) so that DeepCTR never enters the course's own.
BENCH_VENV ?= .venv-bench
$(BENCH_VENV)/.installed: pyproject.toml uv.lock | $(UV)
	UV_PROJECT_ENVIRONMENT=$(BENCH_VENV) $(UV) sync --frozen --extra bench --python $(PYTHON)
	touch $@

bench: $(BENCH_VENV)/.installed
	$(BENCH_VENV)/bin/python -m utils.bench $(BENCH_ARGS)

# On a machine with a GPU: every solution at the full scale, with its wall time and device (build/gpu-check/).
gpu-check: install
	$(PY) -m utils.gpu_check $(GPU_CHECK_ARGS)

# Maintainers: regenerate notebooks/ (and the buttons and setup cells) from solutions/.
exercises: install
	$(PY) -m utils.exercises

# Maintainers: re-execute the solutions in place at their default scale, then regenerate notebooks/.
solutions: install
	$(PY) -m utils.runner refresh
	$(PY) -m utils.exercises

clean:
	rm -rf build .pytest_cache
