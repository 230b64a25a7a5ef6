# `make demo` and `make test` each create .venv on first use.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-stamp
DEMO_HOME ?= $(CURDIR)/demo-home

.PHONY: venv demo test lint typecheck imports pytest bench soak clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

demo: venv
	rm -rf $(DEMO_HOME)
	WFBATCH_HOME=$(DEMO_HOME) $(BIN)/wfbatch run examples/product-shots.txt examples/ad-variants.json \
		examples/content-calendar.jsonl examples/training-data.csv
	@echo
	@echo "Everything is under $(DEMO_HOME): open output/*/contact-sheet.png for a look at a glance."
	@echo "Put the wfbatch command on your PATH for this shell with:  . $(BIN)/activate"

lint: venv
	$(BIN)/ruff check wfbatch tests bench

typecheck: venv
	$(BIN)/mypy

imports: venv
	$(BIN)/lint-imports

# Four workers on two cores: most tests wait on daemons, simulators and sockets, not the CPU.
pytest: venv
	$(BIN)/pytest -q -n 4

test: lint typecheck imports pytest

bench: venv
	$(BIN)/python -m bench

soak: venv
	WFBATCH_SOAK=1 $(BIN)/pytest -q tests/reliability

clean:
	rm -rf $(VENV) $(DEMO_HOME) .mypy_cache .ruff_cache .pytest_cache
