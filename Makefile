# vmwarden — the two set-up commands are `make demo` and `make test`; both install what they need.
VENV ?= .venv
PY := $(VENV)/bin/python
export PATH := $(abspath $(VENV))/bin:$(PATH)

.PHONY: deps demo test lint format bench bench-full libvirtd clean

deps:
	@bash scripts/install-deps.sh

demo: deps
	$(VENV)/bin/vmwarden demo

libvirtd: deps
	@bash scripts/start-libvirtd.sh

test: deps libvirtd
	bash scripts/build-debian-image.sh
	bash scripts/build-agent-image.sh
	bash scripts/build-lineage-other.sh
	bash scripts/build-vcsim.sh
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/ruff format --check src tests bench
	pg_url="$$(bash scripts/start-postgres.sh)" && VMWARDEN_TEST_PG_URL="$$pg_url" $(PY) -m pytest -q

lint: deps
	$(VENV)/bin/ruff check src tests
	$(VENV)/bin/ruff format --check src tests

format: deps
	$(VENV)/bin/ruff format src tests
	$(VENV)/bin/ruff check --fix src tests

bench: deps
	$(PY) -m bench

bench-full: deps
	$(PY) -m bench --full

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache src/*.egg-info
