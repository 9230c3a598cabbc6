# pgheal: `make demo` shows it heal a migration; `make test` runs the suite.
# Both install what they need and are idempotent.

PG_MAJOR   ?= 15
DEB_PKGS   := postgresql-$(PG_MAJOR) postgresql-plpython3-$(PG_MAJOR) \
              postgresql-$(PG_MAJOR)-cron postgresql-contrib python3-venv sqitch
PYTHON     ?= python3
VENV       := .venv
BIN        := $(VENV)/bin
STAMP      := $(VENV)/.installed

.PHONY: demo test bench bench-network conformance lint deps server-deps clean

demo: server-deps
	$(BIN)/pgheal demo

test: server-deps
	$(BIN)/ruff check installer plpython tests bench
	$(BIN)/pytest

bench: server-deps
	$(BIN)/python bench/bench.py

# The learning network: one hub and 8 members, each its own throwaway cluster.
bench-network: server-deps
	$(BIN)/python bench/network.py 8

# PostgreSQL's contrib regression scripts, healed (outside make test: it fetches the
# server's Debian source package once, into .cache/).
conformance: server-deps
	$(BIN)/python -m tests.conformance.run

lint: $(STAMP)
	$(BIN)/ruff check installer plpython tests bench
	$(BIN)/ruff format --check installer plpython tests bench

# Debian packages: installed when root and missing; otherwise say what to run.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	    if [ "$$(id -u)" = 0 ]; then \
	        echo "installing Debian packages:$$missing"; \
	        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	    else \
	        echo "missing Debian packages; run:"; echo "  sudo apt-get install -y$$missing"; exit 1; \
	    fi; \
	fi

$(STAMP): pyproject.toml | deps
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -e '.[test]'
	touch $@

server-deps: deps $(STAMP)
	$(BIN)/pgheal server-deps

clean:
	rm -rf $(VENV) *.egg-info .pytest_cache .ruff_cache .cache
