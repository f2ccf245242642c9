# mixnu — `make demo` runs the recipe end to end at toy scale; `make test` lints and runs the tests.
# Both set up .venv by themselves on a fresh clone (torch pinned to the CPU wheel on this disk).

PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
DEMO_OUT ?= demo-out
DEMO_ARGS ?=

.PHONY: all venv test lint pytest demo browser-deps bench clean

all: test

$(BIN)/.installed: pyproject.toml
	@command -v $(PYTHON) >/dev/null || { echo "make: $(PYTHON) not found; set PYTHON=python3.11 (or newer)"; exit 1; }
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

venv: $(BIN)/.installed

# Headless Chromium for the annotation page's browser test (Debian package; never `playwright install`).
browser-deps:
	@command -v chromium >/dev/null || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	  else echo "make: install Debian's chromium (sudo apt-get install chromium) for the browser test"; exit 1; fi; }

lint: venv
	$(BIN)/ruff check src tests bench

pytest: venv browser-deps
	$(BIN)/pytest -q

test: lint pytest

demo: venv
	$(BIN)/mixnu demo --out $(DEMO_OUT) --force $(DEMO_ARGS)

clean:
	rm -rf $(VENV) $(DEMO_OUT) .pytest_cache .ruff_cache
