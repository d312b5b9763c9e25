# The README's two commands are `make demo` and `make test`; each builds .venv first if needed.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat requirements.txt pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: venv bytecode demo test test-long lint requirements bench clean vendor-assets

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml Makefile
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check uv
	$(BIN)/uv pip install --quiet --python $(BIN)/python -r requirements.txt
	$(BIN)/uv pip install --quiet --python $(BIN)/python --no-deps -e .
	$(BIN)/python -m compileall -q -j 0 $$($(BIN)/python -c 'import sysconfig; print(sysconfig.get_path("purelib"))')
	@rm -f $(VENV)/.installed-*
	@touch $@

# Bytecode is compiled ahead (site-packages at install, the project here) because the environment may set
# PYTHONDONTWRITEBYTECODE: every Airflow process would otherwise recompile Airflow, pandas and GX (~12 s each).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q include dags plugins tests

demo: $(STAMP) bytecode
	$(BIN)/healthscore demo

test: $(STAMP) bytecode
	$(BIN)/pytest

test-long: $(STAMP) bytecode
	$(BIN)/pytest -m long

lint: $(STAMP)
	$(BIN)/ruff check dags include plugins airflow tests bench deploy
	$(BIN)/lint-imports --no-cache

# Re-fetch the Data Docs' browser assets from the npm registry into include/healthscore/ui/static/vendor (committed).
vendor-assets: $(STAMP)
	$(BIN)/python -c "from healthscore.ui.vendor import fetch_assets; print(len(fetch_assets()), 'files')"

requirements:
	$(BIN)/uv pip compile requirements.in --python-version 3.11 -o requirements.txt

bench: $(STAMP)
	@for b in bench/bench_*.py; do echo "== $$b"; $(BIN)/python $$b || exit 1; done

clean:
	rm -rf $(VENV) data airflow_home .pytest_cache
