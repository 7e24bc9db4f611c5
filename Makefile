# `make test` and `make demo` work on a fresh machine: they create .venv themselves.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: test demo bench lint clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

$(VENV)/.dev: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev]'
	touch $@

$(VENV)/.bench: pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[dev,bench]'
	touch $@

test: $(VENV)/.dev
	$(PY) -m pytest -q
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict bridge

lint: $(VENV)/.dev
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy --strict bridge

demo: $(VENV)/.dev
	$(PY) examples/popular_words.py
	@echo "== the uptime monitor: open the status page it prints; Ctrl-C stops it and prints the summary"
	$(PY) examples/uptime_monitor --port 0

bench: $(VENV)/.bench
	@for script in bench/[!_]*.py; do \
		echo "== $$script"; \
		$(PY) -m bench.$$(basename $$script .py) || exit 1; \
	done

clean:
	rm -rf $(VENV) build *.egg-info
