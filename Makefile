# mixnu — `make demo` runs the recipe end to end at toy scale; `make test` lints and runs the tests.
# Both set up .venv by themselves on a fresh clone (torch pinned to the CPU wheel on this disk) and
# run on the data built into the package (MIXNU_DATA / MIXNU_SHARED point elsewhere when set).

# The first of python3.13, python3.12, python3.11 that runs (a pyenv shim of an inactive version does
# not); `make PYTHON=/path/to/python3.x` overrides.
ifeq ($(origin PYTHON),undefined)
PYTHON := $(firstword $(foreach p,python3.13 python3.12 python3.11,$(shell $(p) -c 'import sys; assert sys.version_info >= (3, 11)' >/dev/null 2>&1 && echo $(p))))
endif
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= demo-out
DEMO_ARGS ?=

.PHONY: all venv test lint pytest demo browser-deps bench clean

all: test

$(BIN)/.installed: pyproject.toml
	@test -n "$(PYTHON)" || { echo "make: no python3.13, python3.12 or python3.11 on PATH; install one or set PYTHON=/path/to/python3.11+"; exit 1; }
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; set PYTHON=python3.11 (or newer)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

# Headless Chromium for the annotation page's browser test, with a Korean font (fonts-noto-cjk) so
# the page's screenshot shows Korean, not empty boxes. Uses the system's chromium when present; as root
# on Debian/Ubuntu it installs the packages with apt. Elsewhere: install chromium and a CJK font with
# your package manager, or (an option for machines without a system chromium) run
# `.venv/bin/playwright install chromium`; the test then uses Playwright's own build.
browser-deps:
	@if command -v chromium >/dev/null && fc-list :lang=ko 2>/dev/null | grep -q .; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-noto-cjk >/dev/null; \
	elif ! command -v chromium >/dev/null; then \
	  echo "make: the browser test needs chromium and a Korean font: sudo apt-get install chromium fonts-noto-cjk"; \
	  echo "      (or, without a system chromium: .venv/bin/playwright install chromium)"; exit 1; \
	else echo "make: warning: no Korean font (fonts-noto-cjk); the annotation screenshot will show boxes"; fi

lint: venv
	$(BIN)/ruff check src tests bench scripts
	$(BIN)/lint-imports

pytest: venv browser-deps
	$(BIN)/pytest -q

test: lint pytest

demo: venv
	$(BIN)/mixnu demo --out $(DEMO_OUT) --force $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache .import_linter_cache
