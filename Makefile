# The few verbs a newcomer needs. Everything runs inside .venv (created on first use).
PY      ?= python3
VENV    ?= .venv
BIN      = $(VENV)/bin
DEMO_DAY = data/dbn/XNAS.ITCH-2025-10-22.dbn.zst
LAKE    ?= data/parquet

.PHONY: setup run demo ingest serve test test-all test-questdb bench lint clean

$(BIN)/activate: pyproject.toml
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[dev]'
	touch $(BIN)/activate

setup: $(BIN)/activate

$(DEMO_DAY): | setup
	mkdir -p $(dir $(DEMO_DAY))
	$(BIN)/python -m engine.synth $(DEMO_DAY) --records 2000000 --date 2025-10-22 --seed 7

demo: $(DEMO_DAY)

ingest: $(DEMO_DAY)
	$(BIN)/python -m engine.ingest $(DEMO_DAY) --parquet $(LAKE)

# The main job on the embedded default: generate a demo day, ingest it into the lake, serve it on :8080.
run: ingest
	@echo "chart: http://127.0.0.1:8080/"
	DATAPAIR_STORE=lake DATAPAIR_LAKE=$(LAKE) $(BIN)/python -m service --port 8080

test: setup
	$(BIN)/python -m pytest -q

test-all: setup
	$(BIN)/python -m pytest -q -m ''

bench: setup
	$(BIN)/python bench/bench_synth.py
	$(BIN)/python bench/bench_decode.py
	$(BIN)/python bench/bench_ingest_parquet.py
	$(BIN)/python bench/bench_query.py
	$(BIN)/python bench/bench_service.py
	$(BIN)/python bench/bench_book.py
	$(BIN)/python bench/bench_cluster.py
	$(BIN)/python bench/bench_chart.py            # prints "skipped" and exits 0 without a system Chromium
	$(BIN)/python bench/bench_ingest_questdb.py   # prints "not reachable" and exits 0 without QUESTDB_URL
	$(BIN)/python bench/bench_export.py           # the same

# Real-server tests only: need a QuestDB 9.4+ at QUESTDB_URL (default http://localhost:9000); `make test`
# runs them too whenever that server answers.
test-questdb: setup
	QUESTDB_URL=$${QUESTDB_URL:-http://localhost:9000} $(BIN)/python -m pytest -q -m questdb

lint: setup
	$(BIN)/ruff check engine service tests bench
	$(BIN)/mypy

clean:
	rm -rf data/parquet .pytest_cache
