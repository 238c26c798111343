# Two commands for a fresh machine:
#   make demo   set up .venv, make the synthetic data, train the small model, run all five tasks and a lift, and
#               draw them into docs/ (make demo-tasks reruns the tasks and pictures on checkpoint/demo)
#   make test   set up .venv with test tools, run ruff and the test suite
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
CKPT := checkpoint/demo
# The demo samples with the validated fast samplers (--fast: ddim with eta 1 and 50 steps in place of the paper's
# 1000-step Euler-Maruyama, drift_2m with 20 steps in place of its 1000-step --pflow, bf16 where the CPU has it);
# every table names the sampler it used. Drop --fast for the paper's own samplers.
TASK_ARGS := --ckpt-dir $(CKPT) --best --sample 4 --fast
EVAL := $(BIN)/python -m run.eval_fc_mp_adv_3d $(TASK_ARGS)
VIS := $(BIN)/python -m run.visualize

.PHONY: demo demo-tasks demo-pictures benchmark test lint venv clean

$(BIN)/activate: requirements.txt requirements-dev.txt
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $(BIN)/activate

venv: $(BIN)/activate

data/synthetic/synthetic_train.pkl: | venv
	$(BIN)/python -m run.prepare_data synthetic --out data/synthetic

demo: venv data/synthetic/synthetic_train.pkl
	$(BIN)/python -m run.train_fc_adv_3d --config configs/subvp/synthetic_small.py --name demo --overwrite
	$(MAKE) demo-tasks

data/example/coco_keypoints.json: | venv
	$(BIN)/python -m run.prepare_data example --out data/example

demo-tasks: venv data/example/coco_keypoints.json
	$(EVAL) --hypo 10 --proto2 --json $(CKPT)/est.json --out $(CKPT)/est est
	$(EVAL) --hypo 10 --proto2 --json $(CKPT)/comp2d.json --out $(CKPT)/comp2d comp2d --randj 2
	$(EVAL) --pflow --proto2 --json $(CKPT)/comp3d.json --out $(CKPT)/comp3d comp3d --jlist right_leg
	$(EVAL) --json $(CKPT)/gen.json --out $(CKPT)/gen gen --num 500
	$(BIN)/python -m run.denoise_fc_adv_3d $(TASK_ARGS) --json $(CKPT)/den.json --out $(CKPT)/den \
		den --noise-type gaussian --std 5 --t 0.05
	$(BIN)/python -m run.lift data/example/coco_keypoints.json --format coco --image-size 1920 1080 \
		--ckpt-dir $(CKPT) --best --fast --out $(CKPT)/lift
	$(MAKE) demo-pictures

# Pictures of the tasks for the README; the GIF and the HTML viewer come from a small run with trajectories.
demo-pictures: venv
	mkdir -p docs
	$(VIS) --input $(CKPT)/est/results.npz --num-human 4 --num-hypo 5 --vis-gt --out docs/est.png
	$(VIS) --input $(CKPT)/est/results.npz --num-human 4 --num-hypo 10 --vis-gt --aggregate refined \
		--out docs/est_refined.png
	$(VIS) --input $(CKPT)/comp2d/results.npz --num-human 4 --vis-gt --out docs/comp2d.png
	$(VIS) --input $(CKPT)/comp3d/results.npz --num-human 4 --vis-gt --out docs/comp3d.png
	$(VIS) --input $(CKPT)/gen/results.npz --num-human 8 --out docs/gen.png
	$(VIS) --input $(CKPT)/den/results.npz --num-human 4 --vis-gt --out docs/den.png
	$(VIS) --input $(CKPT)/lift/poses.npz --num-human 2 --out docs/lift.png
	$(BIN)/python -m run.eval_fc_mp_adv_3d --ckpt-dir $(CKPT) --best --sample 240 --fast --hypo 5 \
		--save trajs --traj-frames 25 --out $(CKPT)/est_traj est
	$(VIS) --input $(CKPT)/est_traj/results.npz --num-human 4 --num-hypo 5 --vis-gt --out docs/est.gif
	$(VIS) --input $(CKPT)/est_traj/results.npz --num-human 4 --num-hypo 5 --vis-gt --out $(CKPT)/est.html

# Speed and accuracy against the paper's samplers (and, with PAPER=path/to/GFPose, its own code): ~12 min on CPU.
benchmark: venv
	$(BIN)/python -m run.benchmark $(if $(PAPER),--paper-repo $(PAPER))

lint: venv
	$(BIN)/ruff check .

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q tests

clean:
	rm -rf $(VENV) data/synthetic data/example checkpoint/demo
