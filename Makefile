# Two commands: `make run` (the demo on the embedded SQLite default) and `make test` (the whole suite).
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
PORT ?= 8080
# A strict editable install links every module into a plain folder on sys.path, so mypy
# and pytest both see the prefixed package names (grayrelease_plugins, grayrelease_adapters).
SOURCES := $(shell find grayrelease_core plugins adapters -name '*.py' -o -name 'py.typed' -o -name '*.mako' 2>/dev/null)

.PHONY: run demo test lint typecheck unit bench bench-http bench-scale bench-tick bench-actions bench-judge bench-polls screenshots clean

$(VENV)/.installed: setup.cfg pyproject.toml $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet --config-settings editable_mode=strict -e '.[flask,postgresql,mysql,nacos,test,bench]'
	touch $@

# Running needs only the flask extra (no test or benchmark tools): a cold `make run` is quick.
# A full install that is up to date serves as well.
$(VENV)/.installed-run: setup.cfg pyproject.toml $(SOURCES)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	if [ -f $(VENV)/.installed ] && $(MAKE) -q $(VENV)/.installed; then :; else \
	  $(BIN)/python -m pip install --quiet --upgrade pip && \
	  $(BIN)/python -m pip install --quiet --config-settings editable_mode=strict -e '.[flask]'; fi
	touch $@

run: $(VENV)/.installed-run
	$(BIN)/grayrelease serve --port $(PORT) --load-examples

demo: $(VENV)/.installed
	$(BIN)/python docs/examples/demo.py

lint: $(VENV)/.installed
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: $(VENV)/.installed
	$(BIN)/mypy

unit: $(VENV)/.installed
	$(BIN)/python -m pytest

test: lint typecheck unit

# The console's screenshots in docs/images/ (make test takes them into a scratch folder).
screenshots: $(VENV)/.installed
	GRAYRELEASE_SCREENSHOTS=docs/images $(BIN)/python -m pytest tests/test_console.py

bench: $(VENV)/.installed
	$(BIN)/python benchmarks/resolve_bench.py

bench-http: $(VENV)/.installed
	$(BIN)/python benchmarks/http_bench.py

# 10,000 held Apollo polls on one `grayrelease serve`, beside config reads (raises its file limit).
bench-polls: $(VENV)/.installed
	$(BIN)/python benchmarks/polls_bench.py

# Needs the PostgreSQL server of GRAYRELEASE_BENCH_POSTGRES_URL (default: the loopback one).
bench-scale: $(VENV)/.installed
	$(BIN)/python benchmarks/scale_bench.py

bench-tick: $(VENV)/.installed
	$(BIN)/python benchmarks/tick_bench.py --plans 1000 --database sqlite
	$(BIN)/python benchmarks/tick_bench.py --plans 1000 --database postgresql
	$(BIN)/python benchmarks/tick_bench.py --plans 10000 --database sqlite --rounds 2
	$(BIN)/python benchmarks/tick_bench.py --plans 10000 --database postgresql --rounds 2

# Needs the loopback PostgreSQL (or --database-url): complete and rollback beside pause/resume.
bench-actions: $(VENV)/.installed
	$(BIN)/python benchmarks/action_bench.py --layout joined
	$(BIN)/python benchmarks/action_bench.py --layout claimed

bench-judge: $(VENV)/.installed
	$(BIN)/python benchmarks/judge_bench.py

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .pytest_cache .ruff_cache
