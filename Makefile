# vidtldr: every target creates .venv on first use. `make demo` and `make test` are the two
# commands a newcomer needs (README). Override PY to use another interpreter for the venv.
PY ?= python3
VENV ?= .venv
PYTHON := $(VENV)/bin/python
STAMP := $(VENV)/.installed
# The console command the package installs (`vidtldr --help` lists every command).
VIDTLDR := $(VENV)/bin/vidtldr
# CPU wheel by default (README: 'Which torch'); override e.g. TORCH_REQ='torch==2.13.0 --index-url <index>'
TORCH_REQ ?= -r requirements-cpu.txt
# Paper-table targets: restrict with BACKBONES / DATASETS, pass Hydra overrides with ARGS, e.g.
#   make table-finetuned BACKBONES=umt_b DATASETS="msrvtt didemo" ARGS="device=cuda data.batch_size=8"
BACKBONES ?= umt_b umt_l
ACTION_BACKBONES ?= videomae_b videomae_l
DATASETS ?=
ARGS ?=
TABLE_OPTS = --backbones $(BACKBONES) $(if $(strip $(DATASETS)),--datasets $(DATASETS)) $(if $(strip $(ARGS)),-- $(ARGS))

.PHONY: help setup demo test mutation review-mutants smoke flops bench bench-scale bench-eval bench-decode table-finetuned table-zeroshot table-qa table-action table-reducers fig1 tables clean-cache

help:
	@echo "make demo            tiny model on generated clips with vid-TLDR; prints the result table"
	@echo "make test            ruff, then the test suite (includes smoke evaluations of every dataset format)"
	@echo "make mutation        mutation testing of the core modules (MODULES=\"vidtldr/tasks/metrics.py ...\"; results/mutation.md)"
	@echo "make review-mutants  the reviewers' hand-made mutants must each fail the suite (results/review_mutants.md)"
	@echo "make setup           create .venv and install the package (CPU torch by default)"
	@echo "make smoke           tiny-model evaluations of every dataset config (records in runs/smoke)"
	@echo "make flops           GFLOPs table of the published schedules (results/flops.md)"
	@echo "make bench           encoder throughput / peak memory (random weights)"
	@echo "make bench-scale     peak RSS of a tiny evaluation on 100 vs 1000 clips (results/bench_scale.md)"
	@echo "make bench-eval      whole evaluation, pairwise vs grouped ITM engine (results/bench_eval.md)"
	@echo "make bench-decode    decode ms/video per decoder and worker count, frame cache cold/warm (results/bench_decode.md)"
	@echo "make table-finetuned fine-tuned retrieval table (needs UMT checkpoints + datasets)"
	@echo "make table-zeroshot  zero-shot retrieval table (needs pre-trained checkpoints + datasets)"
	@echo "make table-qa        video QA table (needs QA checkpoints + datasets)"
	@echo "make table-action    action recognition with VideoMAE on K400/SSv2 (needs HF checkpoints + datasets)"
	@echo "make table-reducers  every reducer at vid-TLDR's published GFLOPs, fine-tuned retrieval (results/reducers.*)"
	@echo "make fig1            UMT-B: UMT vs ToMe vs vid-TLDR (paper Figure 1)"
	@echo "make tables          rebuild every table in results/ from the run records in runs/"

$(STAMP): pyproject.toml requirements-cpu.txt
	test -x $(PYTHON) || $(PY) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --upgrade pip
	$(PYTHON) -m pip install --quiet $(TORCH_REQ)
	$(PYTHON) -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(VIDTLDR) eval

test: $(STAMP)
	$(PYTHON) -m ruff check vidtldr scripts tests
	$(PYTHON) -m pytest -q

# mutmut on each listed module (default: all targets in scripts/mutation.py), tests relevant to it
# only; last line one JSON object {"killed", "survived", "timeout", "score"}. Minutes per module.
MODULES ?=
MUTATION_ARGS ?=
mutation: $(STAMP)
	$(PYTHON) scripts/mutation.py $(if $(strip $(MODULES)),--modules $(MODULES)) $(MUTATION_ARGS)

# mistakes found by reading the code (a cache-key field dropped, a schedule applied to one block):
# each must make its tests fail (ten, a few minutes). CI runs it with REVIEW_ARGS=--no-write.
REVIEW_ARGS ?=
review-mutants: $(STAMP)
	$(PYTHON) scripts/review_mutants.py $(REVIEW_ARGS)

smoke: $(STAMP)
	$(PYTHON) scripts/smoke.py

flops: $(STAMP)
	$(VIDTLDR) flops table=true trace=true

# A schedule with idle blocks before a merge, measured beside the preset (price of exact fused decisions).
BENCH_GAPPED ?= 'gapped_r=[0,600,0,200]'
# Full-size UMT-B then UMT-L (random weights, 12 frames): each run merges its rows into
# results/bench.json and regenerates results/bench.md. Minutes on a CPU.
bench: $(STAMP)
	$(VIDTLDR) bench model=umt_b dataset=msrvtt $(BENCH_GAPPED)
	$(VIDTLDR) bench model=umt_l dataset=msrvtt repeats=3 $(BENCH_GAPPED)
	$(VIDTLDR) bench model=videomae_b dataset=kinetics400 "reducers=[none,vidtldr]" \
		merge.r=umt_fractions breakdown=false profile=false repeats=3

bench-scale: $(STAMP)
	$(VIDTLDR) bench_scale 'sizes=[100,1000]'

# UMT-B on MSRVTT-format generated clips, random weights: one evaluation per ITM engine, interleaved;
# writes results/bench_eval.md/.json (on a GPU: ARGS="device=cuda precision=fp16" -> bench_eval_cuda.*).
# Synthetic MSRVTT-like (320x240, 15 s) and ActivityNet-like (720p, 150 s) videos: decoders, workers, frame
# cache; writes results/bench_decode.md/.json (a few minutes; BENCH_DECODE_ARGS="--anet-seconds 30" for less).
BENCH_DECODE_ARGS ?=
bench-decode: $(STAMP)
	$(VIDTLDR) bench_decode $(BENCH_DECODE_ARGS)

bench-eval: $(STAMP)
	$(VIDTLDR) bench_eval model=umt_b dataset=msrvtt $(ARGS)

# These check every checkpoint / annotation / video folder first and stop with one message
# listing what is missing and where to get it.
table-finetuned: $(STAMP)
	$(PYTHON) scripts/paper_table.py finetuned $(TABLE_OPTS)

table-zeroshot: $(STAMP)
	$(PYTHON) scripts/paper_table.py zeroshot $(TABLE_OPTS)

table-qa: $(STAMP)
	$(PYTHON) scripts/paper_table.py qa $(TABLE_OPTS)

# VideoMAE-B/L on Kinetics-400 and SSv2 (none / vid-TLDR / ToMe) -> results/action.md/csv/tex; needs the
# fine-tuned Hugging Face folders and both datasets (README, "Action recognition").
table-action: $(STAMP)
	$(PYTHON) scripts/paper_table.py action --backbones $(ACTION_BACKBONES) $(if $(strip $(DATASETS)),--datasets $(DATASETS)) $(if $(strip $(ARGS)),-- $(ARGS))

# `vidtldr compare budget=published` per fine-tuned retrieval dataset and backbone -> results/reducers.md/csv/tex
# (finished comparisons under runs/reducers/ are reused). Inputs are checked first, like the tables above.
table-reducers: $(STAMP)
	$(PYTHON) scripts/reducers_table.py $(TABLE_OPTS)

fig1: $(STAMP)
	$(PYTHON) scripts/paper_table.py fig1 $(if $(strip $(DATASETS)),--datasets $(DATASETS)) $(if $(strip $(ARGS)),-- $(ARGS))

tables: $(STAMP)
	$(VIDTLDR) results

clean-cache:
	rm -rf .cache/vidtldr
