# Two commands for a fresh machine:
#   make demo   set up .venv, make the synthetic data, train the small model, run all five tasks
#               (make demo-tasks reruns the five tasks on an existing checkpoint/demo)
#   make test   set up .venv with test tools, run ruff and the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CKPT := checkpoint/demo
# The demo samples with 200 Euler-Maruyama steps (the paper uses 1000) to stay within minutes on a CPU.
TASK_ARGS := --ckpt-dir $(CKPT) --best --sample 4 --steps 200
EVAL := $(BIN)/python -m run.eval_fc_mp_adv_3d $(TASK_ARGS)

.PHONY: demo demo-tasks test lint venv clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

venv: $(BIN)/activate

data/synthetic/synthetic_train.pkl: | venv
	$(BIN)/python -m run.prepare_data synthetic --out data/synthetic

demo: venv data/synthetic/synthetic_train.pkl
	$(BIN)/python -m run.train_fc_adv_3d --config configs/subvp/synthetic_small.py --name demo
	$(MAKE) demo-tasks

demo-tasks: venv
	$(EVAL) --hypo 10 --proto2 --json $(CKPT)/est.json est
	$(EVAL) --proto2 --json $(CKPT)/comp2d.json comp2d --randj 2
	$(EVAL) --proto2 --json $(CKPT)/comp3d.json comp3d --jlist right_leg
	$(EVAL) --json $(CKPT)/gen.json gen --num 500
	$(BIN)/python -m run.denoise_fc_adv_3d $(TASK_ARGS) --json $(CKPT)/den.json \
		den --noise-type gaussian --std 20 --t 0.05

lint: venv
	$(BIN)/ruff check .

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) data/synthetic checkpoint/demo
