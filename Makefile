# One command each: run the server, run the tests, check lint and types.
PYTHON ?= python3
VENV ?= .venv
BIN = $(VENV)/bin

.PHONY: install lowest web run test check bench bench-reference clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $@

install: $(BIN)/.installed

# A second venv with the wire-level dependencies (uvicorn, websockets, uvloop, httptools,
# prometheus-client) at the lowest versions pyproject.toml allows; .ci/run runs the wire and
# handshake tests in it as well as in $(VENV), which has the newest allowed.
LOWEST ?= .venv-lowest
$(LOWEST)/.installed: pyproject.toml .ci/lowest.py
	$(PYTHON) -m venv $(LOWEST)
	$(PYTHON) .ci/lowest.py > $(LOWEST)/constraints.txt
	$(PYTHON) .ci/lowest.py --tools > $(LOWEST)/tools.txt
	$(LOWEST)/bin/python -m pip install -q -e . -r $(LOWEST)/tools.txt -c $(LOWEST)/constraints.txt
	touch $@

lowest: $(LOWEST)/.installed

# The notes editor (Yjs + CodeMirror, and the SDK's notes wiring from clients/js/src) is
# bundled with esbuild; without Node.js the page still runs, showing "notes unavailable".
# The rest of the SDK needs no build: the server serves clients/js/src at /sdk/.
web/dist/notes.bundle.js: package.json package-lock.json $(wildcard web/vendor-src/*.js) $(wildcard clients/js/src/*.js)
	npm ci --no-audit --no-fund
	npm run build

web:
	@if command -v npm >/dev/null; then $(MAKE) -s web/dist/notes.bundle.js; \
	else echo "Node.js/npm not found: the notes editor is not built"; fi

run: install web  ## the server on the embedded defaults (SQLite file, in-process broker)
	$(BIN)/menteo-realtime serve --demo

# One test worker per core (pytest-xdist); each has its own Redis and PostgreSQL database.
TEST_JOBS ?= auto
test: install  ## the whole suite; Redis/PostgreSQL tests skip without them (not on CI)
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist worksteal --durations=30

check: install  ## lint, types and the import layers (contracts in pyproject.toml)
	$(BIN)/ruff check realtime menteo_testkit tests bench
	$(BIN)/ruff format --check realtime menteo_testkit tests bench
	$(BIN)/mypy
	$(BIN)/lint-imports

# The Node.js reference servers of bench/ (socket.io 4, @y/websocket-server, Hocuspocus 3),
# pinned by bench/reference/package-lock.json. bench/suite.py runs the same `npm ci` when
# they are missing.
bench/reference/node_modules/.package-lock.json: bench/reference/package.json bench/reference/package-lock.json
	cd bench/reference && npm ci --no-audit --no-fund

bench-reference:
	@if command -v npm >/dev/null; then $(MAKE) -s bench/reference/node_modules/.package-lock.json; \
	else echo "Node.js/npm not found: the Node reference servers are skipped"; fi

bench: install bench-reference  ## the benchmark suite: docs/benchmarks.md and docs/img/ (about 40 minutes)
	$(BIN)/python -m pip install -q -e ".[bench]"
	$(BIN)/python bench/run_all.py

clean:
	rm -rf $(VENV) $(LOWEST) .pytest_cache .mypy_cache .ruff_cache menteo.db menteo.db-* node_modules bench/reference/node_modules web/dist
