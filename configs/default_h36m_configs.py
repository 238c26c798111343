"""Default configuration: GFPose U3D on Human3.6M (docs/design.md, 'Network and checkpoints').

Every hyperparameter lives here."""
import ml_collections


def get_default_configs() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.version = 5                     # config layout version (lib/config_utils.py migrates older ones)
    config.seed = 42

    config.data = data = ml_collections.ConfigDict()
    data.root = "data/h36m"                # folder with the three pickles below
    data.train_file = "h36m_train.pkl"
    data.test_file = "h36m_test.pkl"
    data.det_file = "h36m_sh_dt_ft.pkl"     # detected 2D keypoints, rows aligned with the GT pickles
    data.det_format = "sh"                 # their detector's joints (lib/keypoints.py): sh = Stacked Hourglass (its
                                           # spine is another point, its neck/nose made up: not given); h36m = all
    data.num_joints = 17
    data.joint_dim = 3
    data.image_size = 1000.0               # images are treated as 1000 x 1000 for normalisation
    data.scale = 30.0                      # training.data_scale of the paper: normalised coords * scale
    data.use_gt_2d = False                 # condition on ground-truth 2D (True) or detections (False)
    data.train_sample = 1                  # keep every k-th training row
    data.test_sample = 1                   # keep every k-th test row (the paper evaluates with 640)
    # Validation rows (training.select_on = 'val'): held out of the training split for model selection; every
    # k-th training sequence (subject, action, subaction) with k = 1 / val_fraction, or every row of val_subjects.
    data.val_fraction = 0.1
    data.val_subjects = ""                 # e.g. "8": hold out a whole training subject instead
    data.flip = False                      # random horizontal flip during training
    data.rotate = 0.0                      # > 0: turn a share of the training poses about the up axis by up to
                                           # this many degrees, the 2D projected again (lib/augment.py)
    data.bone_scale = 0.0                  # > 0: scale their bones by exp(N(0, this^2)), mirrored bones alike
    data.augment_p = 0.5                   # the share of training samples so changed

    config.model = model = ml_collections.ConfigDict()
    model.name = "ScoreModelFC_Adv"
    model.hidden_dim = 1024
    model.embed_dim = 512
    model.n_blocks = 2
    model.dropout = 0.25
    model.num_groups = 32
    model.ema_rate = 0.9999
    model.ema_halflife = 0.0               # > 0: EMA with a half-life of this share of the run (steps or budget)
    model.sigma_min = 0.01                 # only the VE SDE and the legacy `sigmas` buffer use these
    model.sigma_max = 50.0
    model.num_scales = 1000
    model.beta_min = 0.1
    model.beta_max = 20.0

    config.training = training = ml_collections.ConfigDict()
    training.sde = "subvpsde"
    training.batch_size = 1000             # global batch, split over ranks under torchrun
    training.n_iters = 200_000             # the run's length in optimiser steps (0 with a budget)
    training.budget_minutes = 0.0          # > 0: the run's length in wall-clock minutes instead of n_iters; the
                                           # schedules follow the share of the budget spent (lib/schedule.py)
    training.max_minutes = 0.0             # a hard stop after this wall-clock time (0 = none)
    training.select_on = "val"             # best_model.pth by the monitor on: val (data.val_*) | test (the paper's)
    training.eps = 1e-5                    # t ~ U(eps, 1)
    training.log_every = 100
    training.eval_every = 5000             # steps between evaluations (best checkpoint by P1)
    training.snapshot_every = 5000         # steps between checkpoint.pth writes
    training.amp = False                   # bf16 autocast (only where bf16 is native: CUDA, AVX-512 BF16 / AMX CPUs)
    # Random condition masking (vectorised, each applied with its probability per sample).
    training.mask_whole_p = 0.1            # drop the whole condition
    training.mask_part_p = 0.1             # drop one body part
    training.mask_joint_p = 0.1            # drop one joint
    training.cond_3d_p = 0.1               # condition on the 3D ground truth instead of 2D
    # A schedule for completion (README 'Completion'): from this share of the run on, these rates replace the
    # part, joint and 3D-condition rates above (1.0 = never: the paper's rates throughout)
    training.completion_from = 1.0
    training.completion_part_p = 0.3
    training.completion_joint_p = 0.3
    training.completion_3d_p = 0.3

    # A detector's errors applied to the 2D condition during training (lib/detnoise.py), for data without real
    # detections (CMU, BVH, synthetic) or to harden a model against another detector (README 'Training that expects
    # detections').
    config.detnoise = detnoise = ml_collections.ConfigDict()
    detnoise.table = ""                    # a detector error table (JSON, run.prepare_data detector-errors); "" = off
    detnoise.p = 0.5                       # share of training samples whose 2D condition gets the detector's errors
    detnoise.format = "sh"                 # that detector's joints (lib/keypoints.py): those it does not give as
                                           # Human3.6M's point are masked in those samples, as at test time
    detnoise.tail = 1.0                    # > 1: that many times the table's outliers

    config.optim = optim = ml_collections.ConfigDict()
    optim.lr = 2e-4
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.weight_decay = 0.0
    optim.warmup = 5000
    optim.warmup_frac = 0.0                # > 0: warm-up over this share of the run (steps or budget) instead
    optim.schedule = "constant"            # constant (the paper's: warm-up, then constant) | cosine
    optim.lr_final = 0.0                   # cosine: the final learning rate as a fraction of optim.lr
    optim.grad_clip = 1.0

    config.sampling = sampling = ml_collections.ConfigDict()
    # The paper's samplers: em (its default) and drift (its --pflow) on its grid ('auto' picks it for them).
    # Others: drift_ddim, drift_2m, ddim, dpm2m, ode_euler, ode_heun, ode_rk45, reverse_diffusion, ancestral.
    sampling.method = "em"
    sampling.steps = 1000                  # the paper's N (model.num_scales)
    sampling.eps = 1e-3                    # sampling ends at t = eps
    sampling.schedule = "auto"             # auto (the sampler's own) | paper | uniform | logsnr | quadratic | edm
    sampling.corrector = "none"            # none | langevin
    sampling.snr = 0.16                    # Langevin corrector signal-to-noise ratio
    sampling.corrector_steps = 1
    sampling.noise_removal = True          # stochastic samplers return the last step's mean (the paper's x_mean)
    sampling.rtol = 1e-5                   # adaptive solver tolerances
    sampling.atol = 1e-5
    sampling.eta = 0.0                     # ddim / dpm2m noise: 0 = probability-flow ODE, 1 = reverse SDE
    sampling.bf16 = False                  # bf16 autocast of the score network (only where bf16 is native)
    sampling.compile = False               # torch.compile the score network (CUDA graphs on GPU)
    # Completion (comp2d, comp3d, lift: tasks that impute an observation; README 'Completion'), with any sampler:
    sampling.resample = 0                  # RePaint: back up the noise scale and redo a step this many times ...
    sampling.resample_t = 0.5              # ... at every step starting at t >= this (extra NFE: README)
    sampling.guidance = 0.0                # DPS reconstruction guidance step (0 = off; one extra backward per step)

    # --fast: the validated fast replacements of the paper's samplers (README 'Samplers', run.benchmark)
    config.fast = fast = ml_collections.ConfigDict()
    fast.deterministic = "drift_2m"        # replaces drift (--pflow) with 1000 steps
    fast.deterministic_steps = 20
    fast.deterministic_schedule = "uniform"   # at data scale 30; the budget recipe (scale 5) uses logsnr
    fast.stochastic = "ddim"               # replaces em with 1000 steps (eta 1: the reverse SDE)
    fast.stochastic_steps = 50
    fast.stochastic_schedule = "logsnr"
    fast.stochastic_eta = 1.0
    fast.bf16 = True                       # --fast also turns on sampling.bf16 where bf16 is native

    # python -m run.distill: students of the deterministic sampler in few steps (lib/distill.py)
    config.distill = distill = ml_collections.ConfigDict()
    distill.first_steps = 8                # the first student's steps; its teacher: config.fast's sampler, twice that
    distill.predict = "eps+v"              # the students' output (lib/model.Student): eps (the teacher's head),
                                           # eps+v (it and a new v head, blended by the SNR), v or x; loss weights
                                           # on |D - D*|^2: SNR, SNR + 1, SNR + 1, max(SNR, 1)
    distill.fit_share = 0.1                # share of the minutes a new head first spends learning the teacher's
                                           # data prediction (0 for eps, which is the teacher's head)
    distill.round_growth = 1.0             # round i gets a share of the rest ~ growth^i (1: equal rounds)
    distill.t_start = 1.0                  # the students' first step starts here, from the data-matched Gaussian
    distill.lr = 1e-3                      # Adam, cosine to 0 within each round (a 2 % warm-up)
    distill.batch_size = 512               # student steps per update
    distill.pool = 1024                    # training rows whose teacher trajectories are drawn at a time
    distill.ema_halflife = 0.05            # EMA half-life, share of a round
    distill.students = ""                  # the students a checkpoint carries, e.g. "16,8,4,2,1" (run.distill)
    distill.fast_steps = 0                 # --fast samples with this student (deterministic; and stochastic, below);
                                           # run.distill sets it: the fewest steps within fast_tolerance, else 0
    distill.fast_tolerance = 0.03          # ... of the teacher's fast sampler's P1 on the validation rows
    distill.fast_stochastic = False        # --fast without --pflow also uses it, with the reverse SDE's noise (eta 1)

    config.eval = evaluation = ml_collections.ConfigDict()
    evaluation.batch_size = 1000           # poses x hypotheses per network call
    evaluation.hypo = 1                    # hypotheses per input (S; --hypo)
    evaluation.reduce = "refined"          # the one pose from S hypotheses: mean | median | jpma | refined | reproj
    evaluation.reproj_sigma = 10.0         # 'reproj': the 2D noise (px of the 1000-px frame) its weights assume ...
    evaluation.detector_table = ""         # ... unless the detector's error table (JSON, lib/detnoise.py) is given:
                                           # then its per-joint bias, spread and heavy tail; robust conditioning
                                           # takes its typical errors from it too (lib/robust.py)
    evaluation.reproj_temper = 0.1         # 'reproj': the likelihood to this power (< 1: hypotheses drawn given the
                                           # 2D already carry its evidence once)
    # comp2d / comp3d: how the observed coordinates are used (lib/tasks/observe.py): 'condition' (the paper's: the
    # network is conditioned on them and they are imputed), 'impute' (imputed only: the unconditional prior completes
    # them; README 'Completion') or 'condition-only' (conditioned only, as est is)
    evaluation.completion = "condition"
    evaluation.min_conf = 0.0              # detected joints below this confidence are not given to the network
    # comp2d / comp3d: start the prior from a plausible answer at a middle noise level (README 'Completion'):
    evaluation.warm_start = "none"         # none | nearest (the training pose nearest on the seen joints, from the
                                           # checkpoint's pose bank) | mean (of a few quick hypotheses)
    evaluation.warm_t = 0.4                # ... perturbed to this time, from which the sampler runs
    evaluation.warm_hypotheses = 4         # 'mean': this many quick hypotheses of eval.refine_steps evaluations
    evaluation.refine_t = 0.2              # 'refined': the mean moved by the drift from this time ...
    evaluation.refine_steps = 10           # ... in this many network evaluations per input

    # The training monitor (best-checkpoint selection, lib/train.Monitor): single-hypothesis P1 with a deterministic
    # sampler, as the paper does (its drift, 1000 steps); by default its validated fast form
    config.monitor = monitor = ml_collections.ConfigDict()
    monitor.method = "drift_2m"
    monitor.steps = 20
    monitor.schedule = "auto"
    monitor.max_poses = 2000               # validation poses it scores

    # run.lift / PosePrior.lift: keypoints of any 2D detector to 3D in camera millimetres (lib/lift.py)
    config.lift = lift = ml_collections.ConfigDict()
    lift.min_conf = 0.3                    # joints below this detector confidence are missing (completed)
    lift.min_joints = 6                    # people with fewer usable joints are skipped
    lift.hypotheses = 10                   # S per person, reduced to one pose by eval.reduce (1: the --pflow sampler)
    lift.completion = "condition-only"     # as est: the network is conditioned on the usable joints (README 'Lift
                                           # your own keypoints')
    lift.smooth = False                    # video: a second pass from the neighbouring frames' poses
    lift.smooth_t = 0.3                    # ... starting at this time
    lift.smooth_steps = 10                 # ... and denoised in this many network evaluations
    lift.smooth_window = 9                 # frames over which the root depth of a track is averaged
    # --world (lib/world.py): the floor is a plane fitted to the standing feet of the clip
    lift.floor_ankle_height = 80.0         # mm the ankle joints stand above the floor
    lift.floor_tolerance = 60.0            # mm from the plane within which a foot counts as standing
    lift.floor_prior = 50.0                # mm: how hard the plane's tilt is pulled towards the body's mean up axis
                                           # where the feet span too little to fix it (a person standing still)
    lift.floor_min_frames = 10             # frames with someone in them that a floor needs

    # Robust conditioning of est from detections and of lift (lib/robust.py): left / right swaps undone and
    # keypoints the prior does not believe completed. Off by default: it costs 9 more passes of the sampler for 1-3 %
    # of P1, and only with the detector's table (README 'Robust conditioning and the regression baseline'); the
    # margin and k were chosen on CMU validation rows
    config.robust = robust = ml_collections.ConfigDict()
    robust.enabled = False
    robust.swap_margin = 16.0              # a swap is kept when it lowers the score by this much
    robust.outlier_k = 4.0                 # a joint beyond k typical errors is completed (0: none)
    robust.rounds = 2                      # passes that look for outliers
    robust.flag_share = 0.3                # a person with more of its joints disbelieved is flagged implausible
    return config
