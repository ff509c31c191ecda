# movierec — the two commands a new user needs are `make demo` and `make test`; each sets itself up.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
DATA ?= data
ARTIFACT ?= artifacts/ml-100k-u1
PORT ?= 50051
HTTP_PORT ?= 8080
PIP_INSTALL := $(PIP) install -q --disable-pip-version-check -c constraints.txt

.PHONY: help install demo test soak lint typecheck proto proto-check serve web bench report report-cold-start gpu-check clean

help:
	@echo "make demo   - install, fetch ml-100k, train if needed, serve, query over gRPC"
	@echo "make test   - install and run the whole test suite"
	@echo "make serve  - serve the default artifact in the foreground"
	@echo "make web    - serve the default artifact with the web page and HTTP/JSON on http://127.0.0.1:$(HTTP_PORT)/"
	@echo "make bench  - benchmarks (prints figures, writes bench/results/)"
	@echo "make bench-train - training time and peak RSS per preset and stage on synthetic 100k..25m shapes"
	@echo "make report - train every preset on u1 and write the results table and plot"
	@echo "make report-cold-start - new users and new movies vs baselines, 3 training seeds, ~15 min (docs/cold-start.md)"
	@echo "make lint   - ruff, mypy and the import-linter layer contracts"
	@echo "make proto  - regenerate the generated stubs in protos/movierec/v1"

# One stamp per set of inputs: a changed pyproject.toml or constraints.txt reinstalls.
$(VENV)/.installed: pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP_INSTALL) --upgrade "pip>=24"
	$(PIP_INSTALL) -e '.[train,server,dev,ray]'
	touch $@

install: $(VENV)/.installed

$(DATA)/ml-100k/u.data: | install
	$(VENV)/bin/movierec data fetch ml-100k --dest $(DATA)

$(ARTIFACT)/manifest.json: | $(DATA)/ml-100k/u.data
	$(VENV)/bin/movierec train --dataset ml-100k --split u1 --data-dir $(DATA) --out $(ARTIFACT)

demo: $(ARTIFACT)/manifest.json
	$(VENV)/bin/movierec demo --artifact $(ARTIFACT)

serve: $(ARTIFACT)/manifest.json
	$(VENV)/bin/movierec serve --artifact $(ARTIFACT) --port $(PORT)

# The page and the HTTP/JSON API beside gRPC, one process (Ctrl-C stops it).
web: $(ARTIFACT)/manifest.json
	@echo "movierec: open http://127.0.0.1:$(HTTP_PORT)/ (JSON API: http://127.0.0.1:$(HTTP_PORT)/openapi.json; gRPC on $(PORT))"
	$(VENV)/bin/movierec serve --artifact $(ARTIFACT) --port $(PORT) --http-port $(HTTP_PORT)

proto: install
	$(PY) tools/protogen.py

proto-check: install
	$(PY) tools/protogen.py --check

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports

test: install
	$(VENV)/bin/pytest -q

# The hardening tests, longer: 20x the generated requests, 30 s of overload, 100,000 bad requests, 20 kills.
soak: install
	MOVIEREC_FUZZ_SCALE=20 MOVIEREC_LOAD_SECONDS=30 MOVIEREC_BAD_REQUESTS=100000 MOVIEREC_KILL_ROUNDS=20 \
	$(VENV)/bin/pytest -q -s tests/integration/test_fuzz_rpcs.py tests/integration/test_hardening_load.py \
	tests/integration/test_hardening_process.py tests/integration/test_swap.py

bench: install
	$(PY) -m bench.run_all

# BENCH_TRAIN_ARGS="--shapes 100k,1m --presets best,ease" to run a subset; results merge into bench/results/train.*
BENCH_TRAIN_ARGS ?= --shapes 100k,1m,10m,25m --presets best
bench-train: install
	$(PY) -m bench.bench_train $(BENCH_TRAIN_ARGS)

report: install
	$(VENV)/bin/movierec report --data-dir $(DATA) --out reports

# Cold start: held-out users (profile + first ratings) and held-out movies (metadata only), with baselines.
report-cold-start: install | $(DATA)/ml-100k/u.data
	$(VENV)/bin/movierec report --cold-start --data-dir $(DATA) --out reports --doc docs/cold-start.md --threads 1

gpu-check: install
	PY=$(PY) bench/gpu_check.sh

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
