# Two commands do everything on a fresh machine:
#   make demo   install, train the default char-RNN on the embedded corpus, print a sample
#   make test   install, run the test suite (what CI runs)
#   make bench  every benchmark, the peers included (HF generate, nanoGPT): benchmarks/results/bench-cpu.*
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
SEQTOOL := $(VENV)/bin/seqtool
STAMP := $(VENV)/.seqtool-installed
# The CPU wheel this project is tested with; installed only when no torch is importable, so a
# user's own (CUDA) torch, visible through --system-site-packages, is never replaced.
TORCH_CPU ?= torch==2.13.0

.PHONY: install demo test lint format bench clean

install: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv --system-site-packages $(VENV)
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q $(TORCH_CPU)
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

demo: install
	@run=runs/demo/$$(date +%Y%m%d-%H%M%S); \
	$(SEQTOOL) train run_dir=$$run && \
	echo "--- a sample from $$run ---" && \
	$(SEQTOOL) decode $$run --prime "def " --max-len 400 --temperature 0.7 --seed 1 && \
	$(SEQTOOL) eval $$run

test: install
	$(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check seqtool tests benchmarks
	$(VENV)/bin/ruff format --check seqtool tests benchmarks

format: install
	$(VENV)/bin/ruff format seqtool tests benchmarks
	$(VENV)/bin/ruff check --fix seqtool tests benchmarks

# every benchmark, one JSON + one Markdown table in benchmarks/results/ (make bench DEVICE=cuda on a GPU)
bench: install
	$(PY) -c "import transformers" 2>/dev/null || $(PY) -m pip install -q -e ".[bench]"
	$(PY) benchmarks/run_all.py --device $(or $(DEVICE),cpu)

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
