# The two commands a newcomer needs (README):
#   make demo   run the whole bus end to end on a local Apache Kafka broker
#   make test   lint, type-check and run every test, broker included
#
# Both install what they need first: a virtual environment in .venv with
# pinned dependencies (constraints.txt), and on first use the Kafka broker jars
# (fetched by Maven, cached under ~/.cache/safebus).

PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
# Any change to the package's files re-runs the (fast) editable install, which
# keeps the strict-mode link tree in step with new modules (docs/adr/0001).
# setuptools announces every strict editable install with a page-long notice
# ("Editable installation ... auxiliary directory"); that one notice is
# silenced by its message, so any other build warning still shows.
SOURCES := pyproject.toml constraints.txt $(shell find core schemas producers processors consumers deploy app \
             -type f \( -name '*.py' -o -name '*.json' -o -name '*.xml' -o -name '*.toml' -o -name '*.html' -o -name 'py.typed' -o -name '*.sql' \) 2>/dev/null)

.PHONY: demo test lint typecheck unit integration bench bench-secure clean tools

demo: $(VENV)/.installed tools
	$(BIN)/safebus demo

test: $(VENV)/.installed tools
	$(BIN)/ruff check .
	$(BIN)/mypy
	$(BIN)/pytest

unit: $(VENV)/.installed
	$(BIN)/pytest tests/unit tests/architecture

integration: $(VENV)/.installed tools
	$(BIN)/pytest tests/integration

bench: $(VENV)/.installed tools
	$(BIN)/python bench/crypto.py
	$(BIN)/python bench/thin_path.py
	$(BIN)/python bench/merkle.py
	$(BIN)/python bench/simulated_year.py
	$(BIN)/python bench/gateway_soak.py
	$(BIN)/python bench/fuzz.py

# The thin path on the plaintext node, then on a fresh secured 3-node cluster (bench/README.md).
bench-secure: $(VENV)/.installed tools
	$(BIN)/python bench/thin_path.py --secure

# Java 17+ runs the broker, Maven fetches it, kcat (a non-Python Kafka
# client) proves the contracts stand without our code, and Debian's Chromium
# runs the browser tests (Playwright drives it; it never downloads a browser);
# PostgreSQL's server binaries run the audit projection's PostgreSQL test (it
# starts a throwaway cluster of its own). Java and Maven ship with
# this project's machines; on a Debian/Ubuntu host running as root, whatever is
# missing is installed with apt.
tools:
	@missing=""; \
	command -v java >/dev/null || missing="$$missing openjdk-17-jre-headless"; \
	command -v mvn >/dev/null || missing="$$missing maven"; \
	command -v kcat >/dev/null || missing="$$missing kcat"; \
	test -x /usr/bin/chromium || missing="$$missing chromium"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing:$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else echo "safebus needs:$$missing (Java 17+, Maven, kcat, Chromium, PostgreSQL)" >&2; exit 1; fi; \
	fi

$(VENV)/.installed: $(SOURCES)
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	PYTHONWARNINGS='ignore:Editable installation' \
	  $(BIN)/python -m pip install -q -c constraints.txt -e '.[dev]' --config-settings editable_mode=strict
	@touch $@

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache .mypy_cache .ruff_cache
