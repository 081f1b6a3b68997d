# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
DEMO   := demo

export PREFECT_SERVER_ANALYTICS_ENABLED := false
export DO_NOT_TRACK := 1

.PHONY: install demo test lint bench bench-peers clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	rm -rf $(DEMO)
	$(BIN)/backfill init $(DEMO)
	$(BIN)/backfill validate --project $(DEMO)
	$(BIN)/backfill plan --project $(DEMO)
	$(BIN)/backfill apply --project $(DEMO) --yes
	$(BIN)/backfill instances tutorial --date 2026-07-14 --project $(DEMO)
	$(BIN)/backfill show dws_all --limit 8 --project $(DEMO)
	$(BIN)/backfill status --project $(DEMO)
	$(BIN)/backfill apply --project $(DEMO) --yes

test: $(STAMP)
	$(BIN)/ruff check backfill tests bench
	$(BIN)/mypy backfill tests bench
	$(BIN)/python -m pytest -q -n 2

bench: $(STAMP)
	$(BIN)/python bench/plan_scale.py
	$(BIN)/python bench/execute_overhead.py
	$(BIN)/python bench/apply_scale.py
	$(BIN)/python bench/status_scale.py
	$(BIN)/python bench/prefect_start.py

# SQLMesh and dbt-duckdb side by side (installs them under .peers/ the first time; several minutes)
bench-peers: $(STAMP)
	$(BIN)/python bench/peers.py

clean:
	rm -rf $(VENV) $(DEMO) .pytest_cache .mypy_cache .ruff_cache
