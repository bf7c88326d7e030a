# Set-up and the everyday commands. `make test` and `make train` create the virtual environment
# on first use, so each is one command on a fresh machine.
VENV ?= .venv
PY := $(VENV)/bin/python
ARGS ?=

.PHONY: setup test test-fast train lint bench search search-table search-baseline positional \
	positional-table window window-table curriculum curriculum-table comparison conversion search-mlp-copy search-copy-batch \
	search-recall-lstm baseline-curriculum \
	copy-past-solved recall-past-solved

setup: $(VENV)/.installed

# Prefer a CPU build of torch that lies on this machine's disk (--no-index --no-deps: only that
# wheel, never a download; its dependencies come with the project install below);
# anywhere else the project's open `torch>=2.2` takes whatever torch the user has or pip picks.
$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --no-index --no-deps torch==2.13.0 2>/dev/null || echo "no local CPU torch 2.13.0; pip chooses torch"
	$(PY) -m pip install -q -e ".[dev]"
	touch $@

test: setup
	$(PY) -m pytest -q $(ARGS)

# Without the tests marked slow (the multi-process DDP sweep): for quick iterations.
test-fast: setup
	$(PY) -m pytest -q -m "not slow" $(ARGS)

train: setup
	$(PY) train.py $(ARGS)

lint: setup
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .

bench: setup
	$(PY) benchmarks/throughput.py $(ARGS)

# The learning-rate search (README "Tuned settings"): Hydra grids, one seed per call, so two
# seeds run side by side: `make search SEED=0 & make search SEED=1`, then `make search-table`.
SEED ?= 0
SEARCH := controller=lstm,mlp seed=$(SEED) evaluation.enabled=false callbacks.figures=null \
	logger=csv trainer.enable_progress_bar=false
# Repeat copy's searches ran both controllers at batch 8, before batch 4 became NTM-MLP's default.
BATCH8 := data.batch_size=8 trainer.val_check_interval=200
search: setup
	$(PY) train.py -m task=copy optimizer.lr=1e-3,2e-3,4e-3 trainer.max_steps=5000 $(SEARCH) \
		hydra.sweep.dir=multirun/search/copy/seed$(SEED)
	$(PY) train.py -m task=associative_recall optimizer.lr=1e-3,2e-3,4e-3 trainer.max_steps=8000 \
		$(SEARCH) hydra.sweep.dir=multirun/search/associative_recall/seed$(SEED)
	$(PY) train.py -m task=repeat_copy optimizer.lr=2e-3,4e-3 trainer.max_steps=10000 $(SEARCH) \
		$(BATCH8) hydra.sweep.dir=multirun/search/repeat_copy/seed$(SEED)

# The LSTM baseline on copy (README "Tuned settings"), one seed per call as above.
search-baseline: setup
	$(PY) train.py -m task=copy model=lstm_baseline optimizer.lr=5e-4,1e-3,2e-3 seed=$(SEED) \
		trainer.max_steps=10000 evaluation.enabled=false callbacks.figures=null logger=csv \
		trainer.enable_progress_bar=false hydra.sweep.dir=multirun/search_baseline/seed$(SEED)

search-table: setup
	$(PY) compare.py multirun/search --by optimizer.lr --out docs/results/search
	$(PY) compare.py multirun/search_baseline --by optimizer.lr --out docs/results/search_baseline

# The Transformer controller's positional encodings on copy (README "The Transformer
# controller"), one seed per call: `make positional SEED=0 & make positional SEED=1`, then SEED=2,
# then `make positional-table`. Full attention, as run before copy's 4-step window became
# the default.
positional: setup
	$(PY) train.py -m task=copy controller=transformer model.controller.positional=none,alibi,sinusoidal \
		model.controller.window=null \
		seed=$(SEED) trainer.max_steps=8000 logger=csv callbacks.figures=null \
		trainer.enable_progress_bar=false hydra.sweep.dir=multirun/positional/seed$(SEED)

positional-table: setup
	$(PY) compare.py multirun/positional --by model.controller.positional --out docs/results/positional

# The Transformer controller's attention window on copy (README "The Transformer controller's
# attention window"): all steps (null) or the last 1-16, ALiBi, cap 64,000. One seed per call.
window: setup
	$(PY) train.py -m task=copy controller=transformer controller.window=null,1,2,4,8,16 \
		seed=$(SEED) trainer.max_steps=8000 logger=csv callbacks.figures=null \
		trainer.enable_progress_bar=false hydra.sweep.dir=multirun/window/seed$(SEED)

window-table: setup
	$(PY) compare.py multirun/window --by model.controller.window --out docs/results/transformer_window

# A curriculum against none on repeat copy (README "Curriculum"): lengths and repeats from 1-2
# up to 1-10 over the first 40,000 sequences; the search's repeat-copy runs at lr 2e-3 with the
# same cap are the runs without. One seed per call, as `make search`.
curriculum: setup
	$(PY) train.py -m task=repeat_copy optimizer.lr=2e-3 trainer.max_steps=10000 $(SEARCH) \
		$(BATCH8) 'data.curriculum={start:{max_length:2,max_repeats:2},sequences:40000}' \
		hydra.sweep.dir=multirun/curriculum/seed$(SEED) 'hydra.sweep.subdir=$${hydra.job.num}_$${model.label}'

curriculum-table: setup
	$(PY) compare.py multirun/curriculum --out docs/results/curriculum

# The full comparison (README "Results"): resumable, two trainings side by side.
comparison: setup
	$(PY) scripts/comparison.py $(ARGS)

# README "Conversion": teachers, students and the agreement table; resumable (ARGS="--out DIR").
conversion: setup
	$(PY) scripts/conversion.py $(ARGS)

# The feed-forward NTM on copy (README "Tuned settings"): Adam's rate x batch size, cap 100,000
# sequences at batch 8 and 400,000 at batch 32. One seed per call, as `make search`.
search-mlp-copy: setup
	$(PY) train.py -m task=copy controller=mlp optimizer.lr=1e-3,4e-3 data.batch_size=8,32 \
		trainer.max_steps=12500 seed=$(SEED) evaluation.enabled=false callbacks.figures=null \
		logger=csv trainer.enable_progress_bar=false hydra.sweep.dir=multirun/search_mlp_copy/seed$(SEED)

# NTM-LSTM on copy: Adam's rate x batch size (README "Tuned settings"), one seed per call.
search-copy-batch: setup
	$(PY) train.py -m task=copy controller=lstm optimizer.lr=1e-3,2e-3,4e-3 data.batch_size=8,16,32 \
		trainer.max_steps=8000 seed=$(SEED) evaluation.enabled=false callbacks.figures=null \
		logger=csv trainer.enable_progress_bar=false hydra.sweep.dir=multirun/search_copy_batch/seed$(SEED)

# NTM-LSTM on copy trained on for 150,000 sequences after solving, seeds 0-4 (README "Training
# past solved"); SLOTS=24 trains with a memory barely longer than the sequences instead.
SLOTS ?= 128
copy-past-solved: setup
	$(PY) train.py -m task=copy controller=lstm model.memory_slots=$(SLOTS) seed=0,1,2,3,4 \
		train_after_solved=150000 callbacks.figures=null logger=csv trainer.enable_progress_bar=false \
		hydra.sweep.dir=multirun/copy_past_solved_slots$(SLOTS) 'hydra.sweep.subdir=seed$${seed}'

# Associative recall trained past solved, seeds 0-2 (README "Training past solved"):
# `make recall-past-solved CONTROLLER=mlp`, or lstm.
CONTROLLER ?= mlp
recall-past-solved: setup
	$(PY) train.py -m task=associative_recall controller=$(CONTROLLER) seed=0,1,2 \
		train_after_solved=150000 callbacks.figures=null logger=csv trainer.enable_progress_bar=false \
		hydra.sweep.dir=multirun/recall_past_solved/$(CONTROLLER) 'hydra.sweep.subdir=seed$${seed}'
	$(PY) compare.py multirun/recall_past_solved/$(CONTROLLER) \
		--out docs/results/recall_past_solved_$(CONTROLLER)

# NTM-LSTM on associative recall: Adam's rate x batch size at one cap in sequences (200,000),
# for reliability (README "Tuned settings"). One seed per call, as `make search`.
search-recall-lstm: setup
	$(PY) train.py -m task=associative_recall controller=lstm optimizer.lr=5e-4,1e-3,2e-3 \
		data.batch_size=8 trainer.max_steps=25000 seed=$(SEED) callbacks.figures=null logger=csv \
		trainer.enable_progress_bar=false hydra.sweep.dir=multirun/search_recall_lstm/seed$(SEED)
	$(PY) train.py -m task=associative_recall controller=lstm optimizer.lr=5e-4,1e-3,2e-3 \
		data.batch_size=32 trainer.max_steps=6250 seed=$(SEED) callbacks.figures=null logger=csv \
		trainer.enable_progress_bar=false hydra.sweep.dir=multirun/search_recall_lstm/seed$(SEED)

# The LSTM baseline on copy with a curriculum on the length (README "Tuned settings"): lengths
# 1-2 up to 1-20 over the first 160,000 sequences, cap 320,000 (the comparison's). One seed per call.
baseline-curriculum: setup
	$(PY) train.py task=copy model=lstm_baseline seed=$(SEED) trainer.max_steps=20000 \
		'data.curriculum={start:{max_length:2},sequences:160000}' callbacks.figures=null logger=csv \
		trainer.enable_progress_bar=false hydra.run.dir=multirun/baseline_curriculum/seed$(SEED)
