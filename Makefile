# regmig: `make demo` shows it working end to end; `make test` runs the whole suite.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin

.PHONY: install test-deps test demo bench bench-window bench-instructions docs clean

# The virtualenv is rebuilt when pyproject.toml changes.
$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[test]"
	touch $@

install: $(VENV)/.installed

# Real servers and tools the integration tests start: Debian's registry and skopeo.
test-deps: install
	bash tests/install-tools.sh

test: test-deps
	$(BIN)/python -m pytest

demo: install
	$(BIN)/python -m migrate.demo

# SERVER=moto runs the same benchmark on moto's server instead of Ceph RGW.
SERVER ?= rgw
bench: test-deps
	bash bench/install-peers.sh
	$(BIN)/python bench/sync_bench.py --server $(SERVER) --links 20000 --blobs 20 --blob-size 5MiB \
		--delta-tools regmig,regmig-listing,regmig-full,aws --large-blobs 8 --large-blob-size 64MiB \
		--memory-objects 1000000 --memory-tools regmig,aws
	$(BIN)/python bench/scale_bench.py --server $(SERVER) --objects 20000,80000 --repeat 3 --large-blobs 6 \
		--large-blob-size 64MiB

# The read-only window (final pass + proof) against the documented recipe at three tree sizes:
# about 80 minutes here, most of it filling the bucket with a million objects. CACHE=cold drops
# the page cache before every timed phase (root), CACHE=warm reads the whole tree before each.
SIZES ?= 100000,300000,1000000
CACHE ?= as-left
bench-window: test-deps
	bash bench/install-peers.sh
	$(BIN)/python bench/window_bench.py --server $(SERVER) --sizes $(SIZES) --cache $(CACHE)

# regmig's client work per object in instructions (valgrind's callgrind) at 1, 2 and 4 processes:
# what two cores shared with the server do not inflate. About 12 minutes here.
bench-instructions: test-deps
	bash bench/install-peers.sh
	$(BIN)/python bench/scale_instructions.py --again 4:8000

docs: install
	$(BIN)/python -m migrate.clidoc > docs/cli.md

clean:
	rm -rf $(VENV) demo-work bench/results .pytest_cache
