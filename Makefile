# Every target bootstraps .venv on first use: torch's CPU wheel first (an unpinned torch
# would pull a multi-GB CUDA build), then the package with every extra the tests touch.
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[llm,notebook,ml,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m aster_nb run circle_packing --workers 3 --rounds 4 --budget 1600 --agents 8 --seed 0 --out runs/demo

test: $(STAMP)
	$(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/sandbox_overhead.py
	$(BIN)/python benchmarks/archive_scaling.py
	$(BIN)/python benchmarks/archives.py --plot benchmarks/results/archives.png --json benchmarks/results/archives.json
	$(BIN)/python benchmarks/llm_concurrency.py
	$(BIN)/python benchmarks/kernel_latency.py --json benchmarks/results/kernel_latency.json --plot benchmarks/results/kernel_latency.png

clean:
	rm -rf $(VENV) runs .pytest_cache
