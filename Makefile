# vidtldr: every target creates .venv on first use. `make demo` and `make test` are the two
# commands a newcomer needs (README). Override PY to use another interpreter for the venv.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# CPU wheel by default; GPU users: make setup TORCH_REQ='torch==2.13.0 --index-url <your CUDA index>'
TORCH_REQ ?= -r requirements-cpu.txt

.PHONY: setup demo test smoke flops bench table-finetuned table-zeroshot table-qa fig1 tables clean-cache

$(STAMP): pyproject.toml requirements-cpu.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet $(TORCH_REQ)
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(PYTHON) -m vidtldr.eval

test: $(STAMP)
	$(PYTHON) -m pytest -q

smoke: $(STAMP)
	$(PYTHON) scripts/smoke.py

flops: $(STAMP)
	$(PYTHON) -m vidtldr.flops table=true

bench: $(STAMP)
	$(PYTHON) -m vidtldr.bench

table-finetuned: $(STAMP)
	$(PYTHON) scripts/paper_table.py finetuned

table-zeroshot: $(STAMP)
	$(PYTHON) scripts/paper_table.py zeroshot

table-qa: $(STAMP)
	$(PYTHON) scripts/paper_table.py qa

fig1: $(STAMP)
	$(PYTHON) scripts/paper_table.py fig1

tables: $(STAMP)
	$(PYTHON) -m vidtldr.results

clean-cache:
	rm -rf .cache/vidtldr
