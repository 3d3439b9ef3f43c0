# vocoflow: `make demo` runs the main job, `make test` runs the test suite.
# Both create the virtual environment (.venv) and install everything on first use.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# torchaudio from PyPI must match the torch build; these two are known to import together.
TORCH_SPEC ?= torch==2.14.1 torchaudio==2.11.1
STAMP := $(VENV)/.vocoflow-installed
JOBS ?= 2

.PHONY: install demo toy-demo test bench clean-venv

$(STAMP): pyproject.toml Makefile
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e '.[dev]'
	$(PY) -c "import torch, torchaudio, vocoflow; print('vocoflow', vocoflow.__version__, 'torch', torch.__version__, 'torchaudio', torchaudio.__version__)"
	touch $(STAMP)

install: $(STAMP)

# the main job: the bundled speech recipe, all stages, CPU configuration
demo: $(STAMP)
	. $(VENV)/bin/activate && egs/asterisk_en/voc1/run.sh

toy-demo: $(STAMP)
	$(VENV)/bin/vocoflow demo --out demo_out

test: $(STAMP)
	OMP_NUM_THREADS=1 $(PY) -m pytest -q -n $(JOBS) -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/bench_layers.py --threads 2

clean-venv:
	rm -rf $(VENV)
