# epollshim: `make demo` and `make test` each do all the set-up they need on a
# fresh Debian machine (as root): system packages, then the package itself.
PYTHON ?= python3
APT_PACKAGES := runc busybox-static containerd conmon podman python3
# The interpreter the shims run (install-launchers --python): auto = Debian's python3.X
# when it is our version (statically linked, PGO+LTO: faster start, less memory), else ours.
SHIM_PYTHON ?= auto
STAMP := .make-dev.stamp
# The launchers (after pip, which rewrites the console scripts), their bytecode and the v2
# daemon's code pack follow the sources (a stale pack only costs start-up time, but
# tests/shell/test_codepack.py checks it is fresh).
PACK_STAMP := .make-packs.stamp
# pip's console scripts run `site` first (~100 ms, ~3 MB per shim here): these
# launchers start python -IS instead, next to the interpreter's scripts.
INSTALL_LAUNCHERS = $(PYTHON) -m epollshim install-launchers --python $(SHIM_PYTHON) \
	"$$($(PYTHON) -c 'import sysconfig; print(sysconfig.get_path("scripts"))')"

.PHONY: help deps dev fmt lint typecheck test test-core demo bench diagram clean

help:  ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | sed 's/:.*## /\t/'

deps:  ## install runc, busybox-static, containerd, conmon and podman from Debian if missing
	@missing=""; \
	for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

$(STAMP): pyproject.toml
	$(PYTHON) -m pip install -q -e '.[dev]'
	@touch $@

$(PACK_STAMP): $(STAMP) $(shell find epollshim -name '*.py')
	$(INSTALL_LAUNCHERS)
	@touch $@

dev: deps $(STAMP) $(PACK_STAMP)  ## deps + the package (editable) with test and lint tools

fmt: $(STAMP)  ## format the code
	ruff format epollshim tests bench
	ruff check --fix epollshim tests bench

lint: $(STAMP)  ## ruff check, ruff format --check, mypy --strict
	ruff check epollshim tests bench
	ruff format --check epollshim tests bench
	mypy

typecheck: $(STAMP)
	mypy

test: dev  ## the whole suite: pure core, real runc, real containerd
	$(PYTHON) -m pytest $(PYTEST_ARGS)

test-core: $(STAMP)  ## only the tests that start no process
	$(PYTHON) -m pytest tests/core tests/v2 $(PYTEST_ARGS)

demo: dev  ## run a real container through epollshim (seed form and containerd)
	$(PYTHON) -m epollshim.demo

bench: dev  ## epollshim vs containerd-shim-runc-v2 and conmon, as ratios
	$(PYTHON) -m pip install -q -e '.[bench]'
	@# pip just rewrote the console scripts: put the lean launchers back
	$(INSTALL_LAUNCHERS)
	$(PYTHON) -m bench

diagram: $(STAMP)  ## the state table as a Mermaid diagram
	$(PYTHON) -m epollshim.core.diagram

clean:
	rm -rf $(STAMP) $(PACK_STAMP) build *.egg-info .pytest_cache .mypy_cache .ruff_cache .hypothesis
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
