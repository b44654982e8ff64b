# The two commands of the README are `make demo` and `make test`; both install what is missing.
SHELL := /bin/bash
VENV := .venv/bin

.PHONY: install demo cosmoflow-demo test lint

install:
	bash backends/install.sh

demo: install
	bash jobs/demo.sh

cosmoflow-demo: install
	bash jobs/cosmoflow_demo.sh

test: install
	$(VENV)/ruff check .
	$(VENV)/python -m pytest

lint: install
	$(VENV)/ruff check .
