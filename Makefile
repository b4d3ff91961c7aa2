# The two set-up commands of the README (make lab, make test). Each makes its own virtual environment (.venv).
PYTHON ?= python3.11
VENV := .venv
BIN := $(VENV)/bin

.PHONY: demo test lint lab bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

$(VENV)/.installed-test: pyproject.toml | $(BIN)/python
	$(BIN)/pip install --quiet -e '.[test,lab,bench]'
	touch $@

## make demo: run the headless demo scenario on the virtual clock
demo: $(VENV)/.installed-test
	$(BIN)/python -m khadem_lab demo

## make test: lint, type-check, the test suite and every notebook (nbval)
test: $(VENV)/.installed-test
	$(BIN)/ruff check khadem_lab tests bench docs
	$(BIN)/mypy
	$(BIN)/pytest tests
	$(BIN)/pytest --nbval --nbval-current-env --nbval-sanitize-with notebooks/nbval_sanitize.cfg -p no:randomly notebooks

## make lab: JupyterLab on the course notebooks (the main job; as root, with --allow-root)
lab: $(VENV)/.installed-test
	$(BIN)/jupyter lab notebooks $$([ "$$(id -u)" = 0 ] && echo --allow-root)

## make bench: benchmarks side by side with their peers (see bench/README.md)
bench: $(VENV)/.installed-test
	$(BIN)/python bench/run.py

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache
