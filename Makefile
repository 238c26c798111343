# Two commands for a fresh machine:
#   make demo   set up .venv, make the synthetic data, train the small model, run all five tasks, lift a video with
#               it and with the shipped prior of real motion (BVH, CSV, world frame), and draw them into docs/
#               (make demo-tasks reruns the tasks and pictures on checkpoint/demo)
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

.PHONY: demo demo-tasks demo-pictures prior prior-ship baseline detected detected-demo benchmark test lint venv clean

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
	$(BIN)/python -m run.lift data/example/coco_keypoints.json --format coco --image-size 1920 1080 \
		--fast --export bvh,csv --world --fps 25 --out $(CKPT)/lift_prior
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
	$(VIS) --input $(CKPT)/lift_prior/poses.npz --num-human 2 --out docs/lift_prior.png
	$(BIN)/python -m run.eval_fc_mp_adv_3d --ckpt-dir $(CKPT) --best --sample 240 --fast --hypo 5 \
		--save trajs --traj-frames 25 --out $(CKPT)/est_traj est
	$(VIS) --input $(CKPT)/est_traj/results.npz --num-human 4 --num-hypo 5 --vis-gt --out docs/est.gif
	$(VIS) --input $(CKPT)/est_traj/results.npz --num-human 4 --num-hypo 5 --vis-gt --out $(CKPT)/est.html

# The shipped prior of real motion (lib/resources/cmu_prior): CMU mocap and the Stacked Hourglass error table from
# CMU_DATA, 30,000 training steps with the detector noise model (about 20 min on 2 CPU cores), measured on the held-out
# CMU test clips (ground-truth 2D and detections simulated with another seed and twice the outliers), then shipped.
CMU_DATA ?= ../shared/data
PRIOR := checkpoint/cmu_prior
PRIOR_TRAIN := python -m run.train_fc_adv_3d --config configs/subvp/cmu_prior.py --name cmu_prior --overwrite \
	--config.detnoise.table=$(CMU_DATA)/sh_detection_errors_h36m_train.json
PRIOR_EVAL := $(BIN)/python -m run.eval_fc_mp_adv_3d --ckpt-dir $(PRIOR) --fast --proto2
PRIOR_DET := --config.data.use_gt_2d=false --config.data.det_file=cmu_sim_dt.pkl

data/cmu/cmu_sim_dt.pkl: | venv
	$(BIN)/python -m run.prepare_data cmu --pack $(CMU_DATA)/cmu_h36m17.npz --out data/cmu --overwrite
	$(BIN)/python -m run.prepare_data detections --table $(CMU_DATA)/sh_detection_errors_h36m_train.json \
		--train data/cmu/cmu_train.pkl --test data/cmu/cmu_test.pkl --out data/cmu/cmu_sim_dt.pkl --seed 7 --tail 2

prior: venv data/cmu/cmu_sim_dt.pkl
	$(BIN)/$(PRIOR_TRAIN)
	$(MAKE) prior-ship

prior-ship: venv data/cmu/cmu_sim_dt.pkl
	$(PRIOR_EVAL) --sample 7 --pflow --json $(PRIOR)/gt_s1.json --out $(PRIOR)/gt_s1 est
	$(PRIOR_EVAL) --sample 7 --pflow $(PRIOR_DET) --json $(PRIOR)/det_s1.json --out $(PRIOR)/det_s1 est
	$(PRIOR_EVAL) --sample 28 --hypo 20 --json $(PRIOR)/gt_s20.json --out $(PRIOR)/gt_s20 est
	$(PRIOR_EVAL) --sample 28 --hypo 20 $(PRIOR_DET) --json $(PRIOR)/det_s20.json --out $(PRIOR)/det_s20 est
	$(BIN)/python -m run.ship_prior --ckpt-dir $(PRIOR) --out lib/resources/cmu_prior --overwrite \
		--cmu-pack $(CMU_DATA)/cmu_h36m17.npz \
		--command "$(PRIOR_TRAIN)" --metrics $(foreach m,gt_s1 det_s1 gt_s20 det_s20,$(m)=$(PRIOR)/$(m).json)

# The regression baseline beside the shipped prior (lib/regression.py): Martinez et al. 2017 trained on the same rows,
# 2D and minutes; and held-out CMU test detections that also fail by whole sequences (time offsets, runs of heavy
# error), from another seed. `make detected` scores both on them, and any other runs named by DETECTED_RUNS (a comma
# list; README 'Robust conditioning and the regression baseline').
BASELINE_TRAIN := python -m run.train_fc_adv_3d --config configs/subvp/cmu_baseline.py --name cmu_baseline \
	--overwrite --config.detnoise.table=$(CMU_DATA)/sh_detection_errors_h36m_train.json

baseline: venv data/cmu/cmu_sim_dt.pkl
	$(BIN)/$(BASELINE_TRAIN)

data/cmu/cmu_sim_dt_fail.pkl: | data/cmu/cmu_sim_dt.pkl
	$(BIN)/python -m run.prepare_data detections --table $(CMU_DATA)/sh_detection_errors_h36m_train.json \
		--train data/cmu/cmu_train.pkl --test data/cmu/cmu_test.pkl --out data/cmu/cmu_sim_dt_fail.pkl --seed 11 \
		--tail 2 --offset-share 0.07 --run-share 0.05 --overwrite

DETECTED_RUNS ?= $(PRIOR)

detected: venv data/cmu/cmu_sim_dt_fail.pkl
	$(BIN)/python -m run.benchmark --sections detected --ckpt-dir $(DETECTED_RUNS) --baseline checkpoint/cmu_baseline \
		--detections cmu_sim_dt_fail.pkl --detector-table $(CMU_DATA)/sh_detection_errors_h36m_train.json --robust \
		--poses 2000 --poses-multi 2000 --json checkpoint/detected.json --markdown checkpoint/detected.md

# The same on the demo's data (after make demo): the regression baseline for the demo's 4 minutes, the synthetic
# detector's error table from the training rows (robust conditioning and reproj use it), and the demo model and any
# runs named by DEMO_DETECTED_RUNS beside the baseline on the synthetic test detections.
DEMO_DETECTED_RUNS ?= $(CKPT)

data/synthetic/synthetic_detector.json: | data/synthetic/synthetic_train.pkl
	$(BIN)/python -m run.prepare_data detector-errors --gt data/synthetic/synthetic_train.pkl \
		--det data/synthetic/synthetic_dt.pkl --out $@ --what "the synthetic detector on the demo's training rows"

detected-demo: venv data/synthetic/synthetic_detector.json
	$(BIN)/python -m run.train_fc_adv_3d --config configs/subvp/synthetic_baseline.py --name demo_baseline --overwrite
	$(BIN)/python -m run.benchmark --sections detected --ckpt-dir $(DEMO_DETECTED_RUNS) \
		--baseline checkpoint/demo_baseline --detections synthetic_dt.pkl --det-format h36m \
		--detector-table data/synthetic/synthetic_detector.json --robust --poses 2000 --poses-multi 2000 \
		--json checkpoint/detected_demo.json --markdown checkpoint/detected_demo.md

# Speed and accuracy against the paper's samplers (and, with PAPER=path/to/GFPose, its own code): ~12 min on CPU.
benchmark: venv
	$(BIN)/python -m run.benchmark $(if $(PAPER),--paper-repo $(PAPER))

lint: venv
	$(BIN)/ruff check .

test: venv
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -q -rs tests

clean:
	rm -rf $(VENV) data/synthetic data/example checkpoint/demo
