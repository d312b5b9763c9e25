# The README's two commands are `make demo` and `make test`; each builds .venv first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml | cksum | cut -d' ' -f1)

.PHONY: venv demo test test-long lint requirements bench clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	@rm -f $(VENV)/.installed-*
	@touch $@

demo: $(STAMP)
	$(BIN)/healthscore demo

test: $(STAMP)
	$(BIN)/pytest

test-long: $(STAMP)
	$(BIN)/pytest -m long

lint: $(STAMP)
	$(BIN)/ruff check dags include plugins tests bench

requirements:
	$(BIN)/uv pip compile requirements.in --python-version 3.11 -o requirements.txt

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data airflow_home .pytest_cache
