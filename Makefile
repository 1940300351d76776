# The two commands of the README:
#   make lab    set up, then open JupyterLab on notebooks/ (the embedded default stack)
#   make test   set up, then run every test: unit, integration, and the notebooks (nbval)
VENV ?= .venv
PYTHON ?= python3
PROFILE ?= small

.PHONY: setup lab test lint format demo clean

setup:
	@PYTHON=$(PYTHON) VENV=$(VENV) bash scripts/setup.sh

# Jupyter refuses to run as root unless told to (containers and CI machines run as root).
ROOT_FLAG := $(if $(filter 0,$(shell id -u)),--allow-root,)

lab: setup
	$(VENV)/bin/jupyter lab --ip 127.0.0.1 --no-browser --notebook-dir notebooks $(ROOT_FLAG)

test: setup lint
	MAGICAF_NB_PROFILE=$(PROFILE) $(VENV)/bin/pytest tests notebooks \
	  --nbval-lax --nbval-current-env --nbval-cell-timeout 900 -p no:cacheprovider -ra

lint:
	$(VENV)/bin/ruff check magicaf_nb tests scripts benchmarks
	$(VENV)/bin/ruff format --check magicaf_nb tests scripts benchmarks

format:
	$(VENV)/bin/ruff format magicaf_nb tests scripts benchmarks
	$(VENV)/bin/ruff check --fix magicaf_nb tests scripts benchmarks

clean:
	-$(VENV)/bin/magicaf-nb down
	rm -rf $(VENV) build *.egg-info
