# Two entry points: `make demo` and `make test`. Each creates .venv on first use.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: demo test lint docs bench clean

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade "pip>=24"
	$(PY) -m pip install --quiet -c constraints.txt -e ".[test,docs]"
	touch $(STAMP)

# The demo runs the package as a user installs it: not editable, with only the `demo` extra
# (moto), in its own venv (recreated when the dependencies change, the package reinstalled when
# its sources do); `python -P` keeps the checkout off sys.path so that it cannot shadow it.
DEMO_VENV := .venv-demo

$(DEMO_VENV)/.deps: pyproject.toml constraints.txt
	rm -rf $(DEMO_VENV)
	$(PYTHON) -m venv $(DEMO_VENV)
	touch $@

$(DEMO_VENV)/.installed: $(DEMO_VENV)/.deps $(shell find archiver replayer -name '*.py')
	rm -rf build
	$(DEMO_VENV)/bin/python -m pip install --quiet -c constraints.txt ".[demo]"
	touch $@

demo: $(DEMO_VENV)/.installed
	$(DEMO_VENV)/bin/python -P demo.py

# The suite, then the wheel as a user installs it (tests/installed: built from an sdist,
# installed without extras into a fresh venv, run outside the checkout against moto).
test: $(STAMP) lint docs
	$(PY) -m pytest -q -n 2 --dist loadfile --ignore=tests/installed
	$(PY) -m pytest -q -p no:xdist tests/installed

lint: $(STAMP)
	$(VENV)/bin/ruff check archiver replayer tests bench demo.py docs/hooks
	$(VENV)/bin/ruff format --check archiver replayer tests bench demo.py docs/hooks
	$(VENV)/bin/mypy
	$(PY) -m tests.import_contract

# The site (mkdocs.yml) into site/; --strict: a broken link, anchor or nav entry fails the build
# (not with --quiet, which hides the warnings --strict counts). The variable silences Material's
# notice about MkDocs 2.
docs: $(STAMP)
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict --site-dir site

bench: $(STAMP)
	$(PY) -m bench.bench_codec
	$(PY) -m bench.bench_fold
	$(PY) -m bench.bench_restore_write
	$(PY) -m bench.bench_check
	$(PY) -m bench.bench_incremental
	$(PY) -m bench.bench_forget
	$(PY) -m bench.bench_forget --compacted

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache demo-archive site
	rm -rf $(DEMO_VENV) build dist
