"""Default configuration: GFPose U3D on Human3.6M (docs/design.md, 'Network and checkpoints').

Every hyperparameter lives here, declared once: its default, its check, what it does and, where a command line has a
short flag for it, that flag (lib/checks.Setting; a field without a check takes values of its default's kind).
Validation (lib/config_utils.validate_config) and the commands' short flags (run/common.config_flags) are derived
from these declarations; `--config.section.field=value` overrides any of them.
"""
import ml_collections

from lib.aggregate import AGGREGATORS
from lib.builders import MODELS
from lib.checks import MAX_SEED, OneOf, Setting, number, switch
from lib.keypoints import FORMATS, H36M
from lib.model import PREDICTIONS
from lib.robust import ROBUST_MODES
from lib.sampling import SAMPLERS, SCHEDULES
from lib.sde import SDES
from lib.tasks.base import WARM_STARTS
from lib.tasks.observe import COMPLETIONS

POSITIVE, PROBABILITY = number(0.0, lo_open=True), number(0.0, 1.0)
COUNT, NONNEGATIVE_COUNT = number(1, integer=True), number(0, integer=True)
STEPS = number(1, 100_000, integer=True)  # sampler steps (the paper's 1000; more is a slip of the keyboard)
TIME = number(0.0, 1.0, lo_open=True)     # a diffusion time in (0, 1]
SAMPLER, SCHEDULE = OneOf(*SAMPLERS), OneOf("auto", *SCHEDULES)
H36M_ORDER = OneOf(*(f.name for f in FORMATS.values() if f.tables.get(17) == H36M))  # detectors in H36M order

S = Setting
DECLARED = (
    S("version", 9, COUNT, "config layout version (lib/config_utils.py lists them and migrates older ones)"),
    S("seed", 42, number(0, MAX_SEED, integer=True), "random seed", "--seed"),

    S("data.root", "data/h36m", help="folder with the three pickles below"),
    S("data.train_file", "h36m_train.pkl"),
    S("data.test_file", "h36m_test.pkl"),
    S("data.det_file", "h36m_sh_dt_ft.pkl", help="detected 2D keypoints, rows aligned with the ground-truth pickles"),
    S("data.det_format", "sh", H36M_ORDER, "their detector's joints (lib/keypoints.py): sh = Stacked Hourglass (its "
      "spine is another point, its neck/nose made up: not given); h36m = all"),
    S("data.num_joints", 17, number(17, 17, integer=True)),
    S("data.joint_dim", 3, number(3, 3, integer=True)),
    S("data.image_size", 1000.0, POSITIVE, "images are treated as this many pixels square for normalisation"),
    S("data.scale", 30.0, POSITIVE, "training.data_scale of the paper: normalised coordinates * scale"),
    S("data.use_gt_2d", False, switch, "condition on ground-truth 2D instead of detections", "--gt"),
    S("data.train_sample", 1, COUNT, "keep every k-th training row", "--sample"),
    S("data.test_sample", 1, COUNT, "evaluate every k-th test row (the paper evaluates with 640)", "--sample"),
    # Validation rows (training.select_on = 'val'): held out of the training split for model selection; every k-th
    # training sequence (subject, action, subaction) with k = 1 / val_fraction, or every row of val_subjects.
    S("data.val_fraction", 0.1, number(0.0, 0.5, lo_open=True)),
    S("data.val_subjects", "", help='e.g. "8": hold out a whole training subject instead'),
    S("data.flip", False, switch, "random horizontal flips during training", "--flip"),
    S("data.rotate", 0.0, number(0.0, 180.0), "> 0: turn a share of the training poses about the up axis by up to "
      "this many degrees, the 2D projected again (lib/augment.py)"),
    S("data.bone_scale", 0.0, number(0.0, 0.5), "> 0: scale their bones by exp(N(0, this^2)), mirrored bones alike"),
    S("data.augment_p", 0.5, PROBABILITY, "the share of training samples so changed"),

    S("model.name", "ScoreModelFC_Adv", OneOf(*MODELS), "the score network, or the regression baseline "
      "(lib/regression.py)"),
    S("model.hidden_dim", 1024, COUNT, "a multiple of model.num_groups"),
    S("model.embed_dim", 512, number(4, integer=True)),
    S("model.n_blocks", 2, NONNEGATIVE_COUNT),
    S("model.dropout", 0.25, number(0.0, 1.0, hi_open=True)),
    S("model.num_groups", 32, COUNT),
    S("model.ema_rate", 0.9999, PROBABILITY),
    S("model.ema_halflife", 0.0, number(0.0, 1.0), "> 0: EMA with a half-life of this share of the run (steps or "
      "budget)"),
    S("model.sigma_min", 0.01, POSITIVE, "only the VE SDE and the legacy `sigmas` buffer use these two"),
    S("model.sigma_max", 50.0, POSITIVE),
    S("model.num_scales", 1000, COUNT),
    S("model.beta_min", 0.1, POSITIVE),
    S("model.beta_max", 20.0, POSITIVE),

    S("training.sde", "subvpsde", OneOf(*SDES)),
    S("training.batch_size", 1000, COUNT, "global batch, split over ranks under torchrun"),
    S("training.n_iters", 200_000, NONNEGATIVE_COUNT, "the run's length in optimiser steps (0 with a budget)"),
    S("training.budget_minutes", 0.0, number(0.0), "> 0: the run's length in wall-clock minutes instead of n_iters; "
      "the schedules follow the share of the budget spent (lib/schedule.py)"),
    S("training.max_minutes", 0.0, number(0.0), "a hard stop after this wall-clock time (0 = none)"),
    S("training.select_on", "val", OneOf("val", "test"), "rows best_model.pth is chosen on: val (held-out training "
      "sequences, data.val_*) or test (the paper's)", "--select-on"),
    S("training.eps", 1e-5, number(0.0, 1.0, True, True), "t ~ U(eps, 1)"),
    S("training.log_every", 100, COUNT),
    S("training.eval_every", 5000, NONNEGATIVE_COUNT, "steps between evaluations (best checkpoint by P1)"),
    S("training.snapshot_every", 5000, NONNEGATIVE_COUNT, "steps between checkpoint.pth writes"),
    S("training.amp", False, switch, "bf16 autocast (only where bf16 is native: CUDA, AVX-512 BF16 / AMX CPUs)"),
    # Random condition masking (vectorised, each applied with its probability per sample).
    S("training.mask_whole_p", 0.1, PROBABILITY, "drop the whole condition"),
    S("training.mask_part_p", 0.1, PROBABILITY, "drop one body part"),
    S("training.mask_joint_p", 0.1, PROBABILITY, "drop one joint"),
    S("training.cond_3d_p", 0.1, PROBABILITY, "condition on the 3D ground truth instead of 2D"),
    # A schedule for completion (README 'Completion'): from this share of the run on, these rates replace the part,
    # joint and 3D-condition rates above (1.0 = never: the paper's rates throughout).
    S("training.completion_from", 1.0, PROBABILITY),
    S("training.completion_part_p", 0.3, PROBABILITY),
    S("training.completion_joint_p", 0.3, PROBABILITY),
    S("training.completion_3d_p", 0.3, PROBABILITY),

    # A detector's errors applied to the 2D condition during training (lib/detnoise.py), for data without real
    # detections (CMU, BVH, synthetic) or to harden a model against another detector (README 'Training that expects
    # detections').
    S("detnoise.table", "", help='a detector error table (JSON, run.prepare_data detector-errors); "" = off'),
    S("detnoise.p", 0.5, PROBABILITY, "share of training samples whose 2D condition gets the detector's errors"),
    S("detnoise.format", "sh", H36M_ORDER, "that detector's joints (lib/keypoints.py): those it does not give as "
      "Human3.6M's point are masked in those samples, as at test time"),
    S("detnoise.tail", 1.0, number(1.0), "> 1: that many times the table's outliers"),

    S("optim.lr", 2e-4, POSITIVE),
    S("optim.beta1", 0.9, number(0.0, 1.0, hi_open=True)),
    S("optim.eps", 1e-8, POSITIVE),
    S("optim.weight_decay", 0.0, number(0.0)),
    S("optim.warmup", 5000, NONNEGATIVE_COUNT, "warm-up steps"),
    S("optim.warmup_frac", 0.0, number(0.0, 0.5), "> 0: warm-up over this share of the run (steps or budget) "
      "instead"),
    S("optim.schedule", "constant", OneOf("constant", "cosine"), "constant (the paper's: warm-up, then constant) | "
      "cosine"),
    S("optim.lr_final", 0.0, PROBABILITY, "cosine: the final learning rate as a fraction of optim.lr"),
    S("optim.grad_clip", 1.0, number(0.0)),

    # The paper's samplers: em (its default) and drift (its --pflow) on its grid ('auto' picks it for them).
    # Others: drift_ddim, drift_2m, ddim, dpm2m, ode_euler, ode_heun, ode_rk45, reverse_diffusion, ancestral.
    S("sampling.method", "em", SAMPLER, "sampler", "--sampler"),
    S("sampling.steps", 1000, STEPS, "sampler steps (the paper's N, model.num_scales)", "--steps"),
    S("sampling.eps", 1e-3, number(0.0, 1.0, True, True), "sampling ends at t = eps"),
    S("sampling.schedule", "auto", SCHEDULE, "time grid: auto (the sampler's own) or one of lib/sampling.SCHEDULES",
      "--schedule"),
    S("sampling.corrector", "none", OneOf("none", "langevin")),
    S("sampling.snr", 0.16, POSITIVE, "Langevin corrector signal-to-noise ratio"),
    S("sampling.corrector_steps", 1, number(1, 100, integer=True)),
    S("sampling.noise_removal", True, switch, "stochastic samplers return the last step's mean (the paper's x_mean)"),
    S("sampling.rtol", 1e-5, POSITIVE, "adaptive solver tolerances"),
    S("sampling.atol", 1e-5, POSITIVE),
    S("sampling.eta", 0.0, number(0.0), "ddim / dpm2m noise: 0 = probability-flow ODE, 1 = reverse SDE", "--eta"),
    S("sampling.bf16", False, switch, "bf16 autocast of the score network (only where bf16 is native)"),
    S("sampling.compile", False, switch, "torch.compile the score network (CUDA graphs on GPU)"),
    # Completion (comp2d, comp3d, lift: tasks that impute an observation; README 'Completion'), with any sampler:
    S("sampling.resample", 0, number(0, 100, integer=True), "RePaint: back up the noise scale and redo a step this "
      "many times ..."),
    S("sampling.resample_t", 0.5, PROBABILITY, "... at every step starting at t >= this (extra NFE: README)"),
    S("sampling.guidance", 0.0, number(0.0), "DPS reconstruction guidance step (0 = off; one extra backward per "
      "step)"),

    # --fast: the validated fast replacements of the paper's samplers (README 'Samplers', run.benchmark)
    S("fast.deterministic", "drift_2m", SAMPLER, "replaces drift (--pflow) with 1000 steps"),
    S("fast.deterministic_steps", 20, STEPS),
    S("fast.deterministic_schedule", "uniform", SCHEDULE, "at data scale 30; the budget recipe (scale 5) uses logsnr"),
    S("fast.stochastic", "ddim", SAMPLER, "replaces em with 1000 steps (eta 1: the reverse SDE)"),
    S("fast.stochastic_steps", 50, STEPS),
    S("fast.stochastic_schedule", "logsnr", SCHEDULE),
    S("fast.stochastic_eta", 1.0, number(0.0)),
    S("fast.bf16", True, switch, "--fast also turns on sampling.bf16 where bf16 is native"),

    # python -m run.distill: students of the deterministic sampler in few steps (lib/distill.py)
    S("distill.first_steps", 8, COUNT, "the first student's steps; its teacher: config.fast's sampler, twice that"),
    S("distill.predict", "eps+v", OneOf(*PREDICTIONS), "the students' output (lib/model.Student): eps (the teacher's "
      "head), eps+v (it and a new v head, blended by the SNR), v or x; loss weights on |D - D*|^2: SNR, SNR + 1, "
      "SNR + 1, max(SNR, 1)"),
    S("distill.fit_share", 0.1, number(0.0, 0.5), "share of the minutes a new head first spends learning the "
      "teacher's data prediction (0 for eps, which is the teacher's head)"),
    S("distill.round_growth", 1.0, number(0.25, 4.0), "round i gets a share of the rest ~ growth^i (1: equal rounds)"),
    S("distill.end_share", 0.5, number(0.0, 0.9), "share of each round spent end to end: the student's whole sampler "
      "unrolled and its pose matched to the first teacher's"),
    S("distill.spread_share", 0.0, number(0.0, 0.9), "share of the minutes for the last student's stochastic twin "
      "(eta 1): its samples matched to the teacher's fast stochastic sampler's by the energy score"),
    S("distill.spread_draws", 8, number(2, 64, integer=True), "... samples of each, per condition"),
    S("distill.spread_passes", 4, number(1, 64, integer=True), "... passes over each pool of the teacher's samples, "
      "the twin's draws new in each"),
    S("distill.spread_distance", "mpjpe", OneOf("mpjpe", "pose"), "... the energy score's distance: the mean "
      "per-joint distance (MPJPE, what P1 and the oracle measure) or that of whole poses (Euclidean in 51 numbers)"),
    S("distill.spread_power", 0.5, number(0.0, 1.0, lo_open=True), "... and the power of that distance (below 1: "
      "the near samples weigh more)"),
    S("distill.twin_candidates", 1, number(1, 16, integer=True), "... twins trained, each for an equal share of the "
      "twin's minutes from its own draws; the one with the least oracle P1 on the validation rows is kept"),
    S("distill.twin_hypo", 20, number(2, 200, integer=True), "... hypotheses per validation pose of that oracle"),
    S("distill.twin_t_start", 0.0, number(0.0, 1.0), "... the twin's steps start here, from the data-matched Gaussian "
      "(0: where the student's do, distill.t_start)"),
    S("distill.t_start", 1.0, number(0.1, 1.0), "the students' first step starts here, from the data-matched "
      "Gaussian"),
    S("distill.lr", 1e-3, POSITIVE, "Adam, cosine to 0 within each round (a 2 % warm-up)"),
    S("distill.batch_size", 512, COUNT, "student steps per update"),
    S("distill.pool", 1024, COUNT, "training rows whose teacher trajectories are drawn at a time"),
    S("distill.ema_halflife", 0.05, number(0.0, 1.0, lo_open=True), "EMA half-life, share of a round"),
    S("distill.students", "", help='the students a checkpoint carries, e.g. "16,8,4,2,1" (run.distill)'),
    S("distill.fast_steps", 0, NONNEGATIVE_COUNT, "--fast samples with this student (deterministic; and stochastic, "
      "below); run.distill sets it: the fewest steps within fast_tolerance, else 0"),
    S("distill.fast_tolerance", 0.03, number(0.0), "... of the teacher's fast sampler's P1 on the validation rows"),
    S("distill.fast_stochastic", False, switch, "--fast without --pflow also uses it, with the reverse SDE's noise "
      "(eta 1)"),

    S("eval.batch_size", 1000, COUNT, "poses x hypotheses per network call", "--batch"),
    S("eval.hypo", 1, COUNT, "hypotheses per input (S)", "--hypo"),
    S("eval.reduce", "refined", OneOf(*AGGREGATORS),
      "the one pose made from S hypotheses (README 'One pose from many hypotheses')", "--reduce"),
    S("eval.reproj_sigma", 10.0, POSITIVE, "'reproj': the 2D noise (px of the 1000-px frame) its weights assume "
      "without the detector's table"),
    S("eval.detector_table", "", help="the detector's error table (JSON, lib/detnoise.py): 'reproj' weighs by its "
      "per-joint bias, spread and heavy tail instead of reproj_sigma, and robust conditioning (robust.mode auto) "
      "takes its typical errors from it", flag="--detector-table"),
    S("eval.reproj_temper", 0.1, number(0.0, 1.0, lo_open=True), "'reproj': the likelihood to this power (< 1: "
      "hypotheses drawn given the 2D already carry its evidence once)"),
    S("eval.completion", "condition", OneOf(*COMPLETIONS), "comp2d / comp3d: how the observation is used "
      "(lib/tasks/observe.py; README 'Completion'): condition (the paper's: the network is conditioned on it and it "
      "is imputed), impute (imputed only: the unconditional prior completes it) or condition-only (as est)",
      "--completion"),
    S("eval.min_conf", 0.0, number(0.0), "detected joints below this confidence are not given to the network",
      "--min-conf"),
    # comp2d / comp3d: start the prior from a plausible answer at a middle noise level (README 'Completion'):
    S("eval.warm_start", "none", OneOf(*WARM_STARTS), "none | nearest (the training pose nearest on the seen joints, "
      "from the checkpoint's pose bank) | mean (of a few quick hypotheses)"),
    S("eval.warm_t", 0.4, TIME, "... perturbed to this time, from which the sampler runs"),
    S("eval.warm_hypotheses", 4, number(1, 1000, integer=True), "'mean': this many quick hypotheses of "
      "eval.refine_steps evaluations"),
    S("eval.refine_t", 0.2, TIME, "'refined': the mean moved by the drift from this time ..."),
    S("eval.refine_steps", 10, STEPS, "... in this many network evaluations per input"),

    # The training monitor (best-checkpoint selection, lib/train.Monitor): single-hypothesis P1 with a deterministic
    # sampler, as the paper does (its drift, 1000 steps); by default its validated fast form
    S("monitor.method", "drift_2m", SAMPLER),
    S("monitor.steps", 20, STEPS),
    S("monitor.schedule", "auto", SCHEDULE),
    S("monitor.max_poses", 2000, COUNT, "validation poses it scores"),

    # run.lift / PosePrior.lift: keypoints of any 2D detector to 3D in camera millimetres (lib/lift.py)
    S("lift.min_conf", 0.3, number(0.0), "joints below this detector confidence are missing (completed)",
      "--min-conf"),
    S("lift.min_joints", 6, number(1, 17, integer=True), "people with fewer usable joints are skipped"),
    S("lift.hypotheses", 10, COUNT, "hypotheses per person, reduced to one pose by eval.reduce (1: the deterministic "
      "sampler)", "--hypo"),
    S("lift.completion", "condition-only", OneOf(*COMPLETIONS), "as est: the network is conditioned on the usable "
      "joints (README 'Lift your own keypoints')"),
    S("lift.smooth", False, switch, "video: a second pass from the neighbouring frames' poses", "--smooth"),
    S("lift.smooth_t", 0.3, TIME, "... starting at this time"),
    S("lift.smooth_steps", 10, STEPS, "... and denoised in this many network evaluations"),
    S("lift.smooth_window", 9, COUNT, "frames over which the root depth of a track is averaged"),
    # --world (lib/world.py): the floor is a plane fitted to the standing feet of the clip
    S("lift.floor_ankle_height", 80.0, number(0.0, 500.0), "mm the ankle joints stand above the floor"),
    S("lift.floor_tolerance", 60.0, number(1.0, 1000.0), "mm from the plane within which a foot counts as standing"),
    S("lift.floor_prior", 50.0, number(0.0, 1000.0), "mm: how hard the plane's tilt is pulled towards the body's "
      "mean up axis where the feet span too little to fix it (a person standing still)"),
    S("lift.floor_min_frames", 10, number(2, integer=True), "frames with someone in them that a floor needs"),

    # Robust conditioning of est from detections and of lift (lib/robust.py): left / right swaps undone and keypoints
    # the prior does not believe completed. On where it wins (README 'Robust conditioning and the regression
    # baseline'): with the detector's error table it gains 1-3 % of P1 for 9 more passes of the sampler, with
    # confidences alone it loses; the margin and k were chosen on CMU validation rows
    S("robust.mode", "auto", OneOf(*ROBUST_MODES), "undo left / right swaps and complete keypoints the prior does not "
      "believe, in est from detections and run.lift: auto (where the detector's table, eval.detector_table, is "
      "given), on or off", "--robust"),
    S("robust.swap_margin", 16.0, number(0.0), "a swap is kept when it lowers the score by this much"),
    S("robust.outlier_k", 4.0, number(0.0), "a joint beyond k typical errors is completed (0: none)"),
    S("robust.rounds", 2, number(0, 10, integer=True), "passes that look for outliers"),
    S("robust.flag_share", 0.3, PROBABILITY, "a person with more of its joints disbelieved is flagged implausible"),
)
SETTINGS: dict[str, Setting] = {s.key: s for s in DECLARED}


def get_default_configs() -> ml_collections.ConfigDict:
    """The config of the declarations above, every field at its default."""
    config = ml_collections.ConfigDict()
    for s in DECLARED:
        *sections, name = s.key.split(".")
        node = config
        for section in sections:
            if section not in node:
                node[section] = ml_collections.ConfigDict()
            node = node[section]
        node[name] = s.default
    return config
