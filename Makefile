# Two commands on a fresh machine (see README.md):
#   make demo   install into .venv, then run the workflow on the embedded demo
#   make test   install into .venv, then run the test suite (make test-demo: the demo's checks)
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CORES ?= all

.PHONY: install demo test test-demo lint report clean-results

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	# torch first and pinned: pip then takes the CPU build instead of a multi-GB CUDA build.
	$(BIN)/python -m pip install --quiet torch==2.13.0
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/snakemake --cores $(CORES)

# Unit tests, the mini workflow end to end, and the SLURM tests when a cluster is up.
test: install
	$(BIN)/python -m pytest -m "not demo" --durations=15

# The whole demo in a temporary directory, then checks of its tables, figures and report.
test-demo: install
	$(BIN)/python -m pytest -m demo

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/snakefmt --check .
	$(BIN)/snakemake --lint

report: install
	$(BIN)/snakemake --cores $(CORES) --report results/report.html

clean-results:
	rm -rf results .snakemake
