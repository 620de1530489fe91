# Every target bootstraps .venv on first use: torch's CPU wheel first (an unpinned torch
# would pull a multi-GB CUDA build), then the package with every extra the tests touch
# (ray included: tests/test_ray.py starts a real two-node cluster).
PY ?= python3.11
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: demo test lint bench clean sandbox-tools browser

# Debian packages the sandbox (bubblewrap) and the browser tests (chromium) use; installed
# when missing and apt-get can run (root), else a note: the sandbox then says what it lacks.
APT_INSTALL = DEBIAN_FRONTEND=noninteractive apt-get install -y -qq
define apt_need
	@command -v $(1) >/dev/null || { [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null \
		&& { $(APT_INSTALL) $(2) >/dev/null 2>&1 || { apt-get update -qq && $(APT_INSTALL) $(2); }; } \
		|| echo "$(4): $(2) is not installed and cannot be installed here (needs root and apt-get): $(3)" >&2; }
endef

sandbox-tools:
	$(call apt_need,bwrap,bubblewrap,the sandbox will be less isolated,note)

# `make test` needs chromium: with ASTER_REQUIRE_BROWSER=1 the browser and PNG/SVG export
# tests fail, naming what is missing, instead of skipping (tests/conftest.py).
browser:
	$(call apt_need,chromium,chromium,the browser and PNG/SVG export tests will FAIL; install Debian's chromium,ERROR)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV) || python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[llm,notebook,ml,dev,ray]'
	touch $(STAMP)

demo: $(STAMP) sandbox-tools
	$(BIN)/python -m aster_nb run circle_packing --workers 3 --rounds 4 --budget 1600 --agents 8 --seed 0 --out runs/demo

test: $(STAMP) sandbox-tools browser
	ASTER_REQUIRE_BROWSER=1 $(BIN)/python -m pytest -q

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: $(STAMP)
	$(BIN)/python benchmarks/sandbox_overhead.py
	$(BIN)/python benchmarks/archive_scaling.py
	$(BIN)/python benchmarks/archives.py --plot benchmarks/results/archives.png --json benchmarks/results/archives.json
	$(BIN)/python benchmarks/llm_concurrency.py
	$(BIN)/python benchmarks/kernel_latency.py --json benchmarks/results/kernel_latency.json --plot benchmarks/results/kernel_latency.png
	$(BIN)/python benchmarks/protein.py --json benchmarks/results/protein.json

clean:
	rm -rf $(VENV) runs .pytest_cache
