"""Default configuration: GFPose U3D on Human3.6M (DESIGN.md section 4). Every hyperparameter lives here."""
import ml_collections


def get_default_configs() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 42

    config.data = data = ml_collections.ConfigDict()
    data.root = "data/h36m"                # folder with the three pickles below
    data.train_file = "h36m_train.pkl"
    data.test_file = "h36m_test.pkl"
    data.det_file = "h36m_sh_dt_ft.pkl"     # detected 2D keypoints, rows aligned with the GT pickles
    data.num_joints = 17
    data.joint_dim = 3
    data.image_size = 1000.0               # images are treated as 1000 x 1000 for normalisation
    data.scale = 30.0                      # training.data_scale of the paper: normalised coords * scale
    data.use_gt_2d = False                 # condition on ground-truth 2D (True) or detections (False)
    data.train_sample = 1                  # keep every k-th training row
    data.test_sample = 1                   # keep every k-th test row (the paper evaluates with 640)
    data.flip = False                      # random horizontal flip during training

    config.model = model = ml_collections.ConfigDict()
    model.name = "ScoreModelFC_Adv"
    model.hidden_dim = 1024
    model.embed_dim = 512
    model.n_blocks = 2
    model.dropout = 0.25
    model.num_groups = 32
    model.ema_rate = 0.9999
    model.sigma_min = 0.01                 # only the VE SDE and the legacy `sigmas` buffer use these
    model.sigma_max = 50.0
    model.num_scales = 1000
    model.beta_min = 0.1
    model.beta_max = 20.0

    config.training = training = ml_collections.ConfigDict()
    training.sde = "subvpsde"
    training.batch_size = 1000             # global batch, split over ranks under torchrun
    training.n_iters = 200_000             # stop after this many optimiser steps
    training.max_minutes = 0.0             # stop after this wall-clock time (0 = no limit)
    training.eps = 1e-5                    # t ~ U(eps, 1)
    training.log_every = 100
    training.eval_every = 5000             # steps between evaluations (best checkpoint by P1)
    training.snapshot_every = 5000         # steps between checkpoint.pth writes
    training.amp = False                   # bf16 autocast on CUDA
    # Random condition masking (vectorised, each applied with its probability per sample).
    training.mask_whole_p = 0.1            # drop the whole condition
    training.mask_part_p = 0.1             # drop one body part
    training.mask_joint_p = 0.1            # drop one joint
    training.cond_3d_p = 0.1               # condition on the 3D ground truth instead of 2D

    config.optim = optim = ml_collections.ConfigDict()
    optim.lr = 2e-4
    optim.beta1 = 0.9
    optim.eps = 1e-8
    optim.weight_decay = 0.0
    optim.warmup = 5000
    optim.grad_clip = 1.0

    config.sampling = sampling = ml_collections.ConfigDict()
    # em | reverse_diffusion | ancestral | pflow_euler | pflow_rk45 | heun | ddim | dpm2m
    sampling.method = "em"                 # the paper's sampler (1000 steps)
    sampling.steps = 1000
    sampling.eps = 1e-3                    # sampling ends at t = eps
    sampling.corrector = "none"            # none | langevin
    sampling.snr = 0.16                    # Langevin corrector signal-to-noise ratio
    sampling.corrector_steps = 1
    sampling.noise_removal = True          # final denoising step (Tweedie) for stochastic samplers
    sampling.schedule = "uniform"          # time grid: uniform | logsnr | quadratic | edm
    sampling.rtol = 1e-5                   # adaptive solver tolerances
    sampling.atol = 1e-5
    sampling.eta = 0.0                     # ddim / dpm2m noise: 0 = probability-flow ODE, 1 = reverse SDE
    sampling.bf16 = False                  # bf16 autocast of the score network (GPU; checked by run.benchmark)
    sampling.compile = False               # torch.compile the score network (CUDA graphs on GPU)

    config.eval = evaluation = ml_collections.ConfigDict()
    evaluation.batch_size = 1000           # poses x hypotheses per network call
    evaluation.hypo = 1
    evaluation.train_method = "pflow_euler"  # sampler used by the evaluation during training
    evaluation.train_steps = 100
    evaluation.train_max_poses = 2000      # test poses used by that evaluation
    return config
