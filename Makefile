# advscale: `make demo` and `make test` do all set-up on a fresh clone (python3 and make only).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of PyTorch; override for a CUDA machine, e.g. `make TORCH_SPEC=torch==2.13.0+cu126 demo`.
TORCH_SPEC ?= torch==2.13.0
PYTEST_ARGS ?=

# timm imports torchvision, and the only torchvision wheels that fit are those built with torch
# 2.14.1 (a multi-GB CUDA build, CPU-usable): the timm tests get a venv of their own.
TIMM_VENV ?= .venv-timm
TIMM_TORCH_SPEC ?= torch==2.14.1 torchvision==0.29.1

.PHONY: venv demo test test-timm lint data bench clean mutation mutation-check

venv: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -m venv $(VENV) 2>/dev/null || { \
	  echo "python3 -m venv failed: installing python3-venv"; \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -q && apt-get install -y -q python3-venv; \
	  else sudo -n apt-get install -y -q python3-venv; fi && $(PYTHON) -m venv $(VENV); }
	$(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[dev]"
	# torchattacks (a test oracle) declares torchvision, which would pull a CUDA torch; it runs without it.
	$(PY) -m pip install -q --no-deps "torchattacks==3.5.1"
	@touch $@

data:
	@bash scripts/get-fashion-mnist.sh

demo: venv data
	$(VENV)/bin/advscale demo --out runs/demo --resume

test: venv
	@bash scripts/get-fashion-mnist.sh || true
	@bash scripts/setup-test-deps.sh || true
	$(PY) -m pytest $(PYTEST_ARGS)
	@$(MAKE) --no-print-directory mutation-check
	@if [ -n "$$CI" ] || [ "$(TEST_TIMM)" = 1 ]; then $(MAKE) --no-print-directory test-timm; \
	else echo "Skipped the timm tests here (run: make test-timm; it installs torch 2.14.1 + torchvision, several GB)."; fi

$(TIMM_VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(TIMM_VENV)
	$(TIMM_VENV)/bin/python -m pip install -q $(TIMM_TORCH_SPEC)
	$(TIMM_VENV)/bin/python -m pip install -q -e ".[timm,digits]" "timm==1.0.31" pytest hypothesis
	@touch $@

# The timm backbone and model-loading paths, in the venv that has timm.
test-timm: $(TIMM_VENV)/.installed
	$(TIMM_VENV)/bin/python -m pytest -q -p no:cacheprovider -k timm tests/transfer tests/models

# A fixed list of one-line bugs that would ship wrong numbers, each against the tests that must
# catch it (a few minutes); fails when fewer than its threshold are caught.
mutation-check: venv
	$(PY) scripts/mutation_check.py

# Mutation testing with cosmic-ray over the modules that compute shipped numbers: every mutant
# (hours on two cores; MUTATION_ARGS="--sample 8 --seed 0" for the sample in
# benchmarks/results/mutation.md).
MUTATION_ARGS ?=
mutation: venv
	$(PY) scripts/mutation.py $(MUTATION_ARGS)

lint: venv
	$(VENV)/bin/ruff check src tests benchmarks
	$(VENV)/bin/ruff format --check src tests benchmarks

bench: venv data
	$(PY) benchmarks/attack_speed.py

clean:
	rm -rf $(VENV) $(TIMM_VENV) runs .pytest_cache
