"""One set of builders shared by every command line and the Python API."""
from __future__ import annotations

from pathlib import Path

import ml_collections
import numpy as np
import torch

from lib.camera import Frames
from lib.checkpoint import check_compatible, clean_state_dict, load_checkpoint
from lib.config_utils import config_from_json
from lib.data import PoseData, load_split, parse_subjects, validation_mask
from lib.ema import ExponentialMovingAverage
from lib.errors import ToolkitError
from lib.model import ScoreFn, ScoreModelFC_Adv, Student
from lib.regression import MartinezLifter
from lib.sampling import SamplerConfig
from lib.sde import SDE, get_sde

MODELS = ("ScoreModelFC_Adv", "MartinezLifter")  # the score network; the regression baseline (lib/regression.py)


def build_model(config: ml_collections.ConfigDict) -> torch.nn.Module:
    m = config.model
    if m.name not in MODELS:
        raise ToolkitError(f"unknown model.name '{m.name}'; the toolkit provides {', '.join(MODELS)}")
    if m.name == "MartinezLifter":
        return MartinezLifter(num_joints=config.data.num_joints, hidden_dim=m.hidden_dim, n_blocks=m.n_blocks,
                              dropout=m.dropout)
    if m.hidden_dim % m.num_groups:
        raise ToolkitError(f"model.hidden_dim ({m.hidden_dim}) must be divisible by model.num_groups ({m.num_groups})")
    return ScoreModelFC_Adv(num_joints=config.data.num_joints, joint_dim=config.data.joint_dim,
                            hidden_dim=m.hidden_dim, embed_dim=m.embed_dim, n_blocks=m.n_blocks,
                            dropout=m.dropout, num_groups=m.num_groups, sigma_min=m.sigma_min,
                            sigma_max=m.sigma_max, num_scales=m.num_scales)


def build_sde(config: ml_collections.ConfigDict) -> SDE:
    m = config.model
    try:
        return get_sde(config.training.sde, m.beta_min, m.beta_max, m.sigma_min, m.sigma_max)
    except ValueError as e:
        raise ToolkitError(str(e)) from e


def bf16_supported(device: torch.device | str) -> bool:
    """Whether bf16 matrix products run natively: a CUDA GPU with bf16, or a CPU with AVX-512 BF16 / AMX-BF16.

    (Elsewhere torch emulates bf16 on the CPU, which is slower than fp32.)
    """
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    caps = getattr(torch.cpu, "get_capabilities", dict)()
    return device.type == "cpu" and bool(caps.get("avx512_bf16") or caps.get("amx_bf16"))


def build_score_fn(model: torch.nn.Module, sde: SDE, config: ml_collections.ConfigDict,
                   students: dict[int, torch.nn.Module] | None = None) -> ScoreFn:
    """The score of a model for sampling, with the config's bf16 autocast and torch.compile choices, and the
    students distilled from it (lib/distill.py) for the 'distilled' sampler.

    sampling.bf16 is used only where bf16 is native (bf16_supported); elsewhere the network stays in fp32.
    """
    device = next(model.parameters()).device
    return ScoreFn(model, sde, bf16=config.sampling.bf16 and bf16_supported(device), compile=config.sampling.compile,
                   students=students, student_grid=config.fast.deterministic_schedule)


def student_steps(config: ml_collections.ConfigDict) -> list[int]:
    """The steps of the students a checkpoint's config says it carries."""
    return [int(s) for s in config.distill.students.split(",") if s.strip()]


def students_from_state(state: dict, config: ml_collections.ConfigDict, device: torch.device | str = "cpu"
                        ) -> dict[int, Student]:
    """The distilled students a checkpoint carries ({steps: Student in eval mode}; none for other files). Their
    weights are the Student's state dict; those of runs before distill.predict, the bare noise network's."""
    out = {}
    for steps, weights in state.get("students", {}).items():
        student = Student(build_model(config), build_sde(config), config.distill.predict)
        if not any(k.startswith("net.") for k in weights):  # an earlier run's: the network alone, from T
            weights = student.state_dict() | {f"net.{k}": v for k, v in weights.items()}
        check_compatible(student.net, {k[4:]: v for k, v in weights.items() if k.startswith("net.")},
                         f"student of {steps} steps")
        student.load_state_dict(weights)
        out[int(steps)] = student.to(device).eval()
    return out


def build_sampler_config(config: ml_collections.ConfigDict, sde: SDE) -> SamplerConfig:
    """The config's sampler, validated."""
    cfg = SamplerConfig.from_config(config.sampling)
    cfg.validate(sde)
    return cfg


COMPLETION_FIELDS = ("resample", "resample_t", "guidance")  # config.sampling fields every sampler keeps


def _completion(config: ml_collections.ConfigDict) -> dict:
    return {k: config.sampling[k] for k in COMPLETION_FIELDS}


def paper_sampler(config: ml_collections.ConfigDict, deterministic: bool) -> SamplerConfig:
    """The paper's sampler: its --pflow (drift) or its default (em), N = model.num_scales on its grid, without our
    completion extras (resampling, guidance)."""
    return SamplerConfig(method="drift" if deterministic else "em", steps=config.model.num_scales,
                         eps=config.sampling.eps, schedule="paper")


def fast_sampler(config: ml_collections.ConfigDict, deterministic: bool) -> SamplerConfig:
    """The validated fast replacement of the paper's sampler (config.fast; README 'Samplers'), or a distilled
    student where the checkpoint carries one (config.distill)."""
    f, d = config.fast, config.distill
    if d.fast_steps in student_steps(config) and (deterministic or d.fast_stochastic):  # a distilled student
        return SamplerConfig(method="distilled", steps=d.fast_steps, eps=config.sampling.eps, schedule="auto",
                             eta=0.0 if deterministic else 1.0, **_completion(config))
    if deterministic:
        return SamplerConfig(method=f.deterministic, steps=f.deterministic_steps, eps=config.sampling.eps,
                             schedule=f.deterministic_schedule, **_completion(config))
    return SamplerConfig(method=f.stochastic, steps=f.stochastic_steps, eps=config.sampling.eps,
                         schedule=f.stochastic_schedule, eta=f.stochastic_eta, **_completion(config))


SAMPLER_FIELDS = ("method", "steps", "schedule", "eta")


def choose_sampler(config: ml_collections.ConfigDict, fast: bool = False, pflow: bool = False,
                   deterministic: bool = False, explicit: tuple[str, ...] = ()) -> SamplerConfig:
    """The sampler for what the user asked: `--pflow` is the paper's deterministic sampler (drift on its grid, the
    configured steps); `--fast` the validated fast replacement of the sampler of that mode (stochastic, or
    deterministic with pflow or for a task that is deterministic by nature, den). `explicit` names the
    sampling fields (method, steps, schedule, eta) the user set; they cannot be combined with fast."""
    if fast and explicit:
        raise ToolkitError(f"--fast picks the sampler itself; drop --fast or the explicit sampling "
                           f"{', '.join(explicit)}")
    if pflow and "method" in explicit:
        raise ToolkitError("--pflow picks the paper's deterministic sampler; drop --pflow or the sampler method")
    deterministic = deterministic or pflow
    if fast:
        return fast_sampler(config, deterministic)
    cfg = SamplerConfig.from_config(config.sampling)
    if deterministic and "method" not in explicit:
        cfg.method = "drift"
        if "schedule" not in explicit:
            cfg.schedule = "auto"  # the paper's grid
    return cfg


def frames_of(config: ml_collections.ConfigDict) -> Frames:
    return Frames(float(config.data.image_size), float(config.data.scale))


def build_optimizer(config: ml_collections.ConfigDict, params) -> torch.optim.Optimizer:
    o = config.optim
    return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, 0.999), eps=o.eps, weight_decay=o.weight_decay)


def load_data(config: ml_collections.ConfigDict, split: str) -> PoseData:
    """The 'train' or 'test' rows (the training rows without the validation rows, see load_train_val)."""
    if split == "train":
        return load_train_val(config)[0]
    d = config.data
    return load_split(d.root, d.test_file, d.det_file, "test", d.test_sample, d.use_gt_2d, d.num_joints, d.det_format)


def load_train_val(config: ml_collections.ConfigDict) -> tuple[PoseData, PoseData | None]:
    """Training rows and the validation rows held out of them for model selection: with training.select_on = 'val'
    data.val_fraction of the training sequences, or every row of data.val_subjects; with 'test' (the paper's) all
    training rows and no validation rows (the monitor then scores the test split)."""
    d = config.data
    rows = load_split(d.root, d.train_file, d.det_file, "train", 1, d.use_gt_2d, d.num_joints, d.det_format)
    if config.training.select_on == "test":
        return rows.subset(slice(None, None, d.train_sample)), None
    held = validation_mask(rows, d.val_fraction, parse_subjects(d.val_subjects))
    if not held.any() or held.all():
        raise ToolkitError(f"data.val_subjects ({d.val_subjects or 'none'}) / data.val_fraction ({d.val_fraction}) "
                           f"hold out {'no' if not held.any() else 'every'} row of {d.root}/{d.train_file}; choose "
                           f"other validation subjects or a fraction, or select on the test rows (--select-on test)")
    return rows.subset(np.flatnonzero(~held)[::d.train_sample]), rows.subset(np.flatnonzero(held))


# The shipped prior of real motion (its README: data, licence, command, numbers): what run.lift and
# PosePrior.from_checkpoint() use when no checkpoint is named
SHIPPED_PRIOR = Path(__file__).parent / "resources" / "cmu_prior"


def checkpoint_path(ckpt_dir: str | Path | None, best: bool) -> Path:
    """The checkpoint file of a run folder (best_model.pth with best, else checkpoint.pth); None: the shipped prior,
    whose folder holds its final checkpoint only."""
    if ckpt_dir is None:
        if best:
            raise ToolkitError("--best needs --ckpt-dir: the shipped prior is one final checkpoint (drop --best)")
        ckpt_dir = SHIPPED_PRIOR
    ckpt_dir = Path(ckpt_dir)
    if not ckpt_dir.is_dir():
        raise ToolkitError(f"checkpoint folder {ckpt_dir} does not exist; train with python -m "
                           f"run.train_fc_adv_3d --config CFG --name NAME (it writes checkpoint/NAME)")
    path = ckpt_dir / ("best_model.pth" if best else "checkpoint.pth")
    if not path.is_file():
        other = "best_model.pth" if not best else "checkpoint.pth"
        hint = f" ({other} is there: {'add' if not best else 'drop'} --best)" if (ckpt_dir / other).is_file() else ""
        raise ToolkitError(f"{path} not found{hint}")
    return path


def stored_config(state: dict, path: str | Path) -> ml_collections.ConfigDict:
    """The config a checkpoint of ours carries (official U3D files carry none: then pass --config)."""
    if "config" not in state:
        raise ToolkitError(f"{path} carries no config (an official file?); pass --config, e.g. "
                           f"configs/subvp/h36m_ncsnpp_deep_continuous.py")
    return config_from_json(state["config"])


NETWORK_FIELDS = ("name", "hidden_dim", "embed_dim", "n_blocks", "num_groups", "num_scales", "beta_min", "beta_max",
                  "sigma_min", "sigma_max")


def check_same_network(config: ml_collections.ConfigDict, stored: ml_collections.ConfigDict, path: str | Path,
                       config_optional: bool = True) -> None:
    """The network (and SDE) a config describes must be the one a checkpoint was trained with: one line names the
    first field that differs (and, where the command can do without --config, says so)."""
    for key in NETWORK_FIELDS:
        if config.model.get(key) != stored.model.get(key):
            raise ToolkitError(f"model.{key} is {config.model.get(key)} here but {path} was trained with "
                               f"{stored.model.get(key)}; use the config it was trained with"
                               + (" (or drop --config: the checkpoint carries its own)" if config_optional else ""))
    if config.training.sde != stored.training.sde:
        raise ToolkitError(f"training.sde is {config.training.sde} here but {path} was trained with "
                           f"{stored.training.sde}")
    for key in ("scale", "image_size"):
        if config.data[key] != stored.data[key]:
            raise ToolkitError(f"data.{key} is {config.data[key]} here but {path} was trained with "
                               f"{stored.data[key]}; the network's input frame cannot change")


def model_from_state(state: dict, config: ml_collections.ConfigDict, path: str | Path,
                     device: torch.device | str = "cpu", use_ema: bool = True) -> ScoreModelFC_Adv:
    """The network of `config` with the checkpoint's weights (EMA by default), in eval mode."""
    model = build_model(config)
    ema = ExponentialMovingAverage(model.parameters(), config.model.ema_rate) if use_ema else None
    load_weights(model, ema, state, path)
    if ema is not None and "ema" in state:
        ema.copy_to(model.parameters())
    return model.to(device).eval()


def load_model(path: str | Path, config: ml_collections.ConfigDict | None = None,
               device: torch.device | str = "cpu", use_ema: bool = True
               ) -> tuple[ScoreModelFC_Adv, ml_collections.ConfigDict]:
    """Load a checkpoint with the given config or the one it carries (EMA weights by default)."""
    state = load_checkpoint(path)
    config = config if config is not None else stored_config(state, path)
    return model_from_state(state, config, path, device, use_ema), config


def load_weights(model: torch.nn.Module, ema: ExponentialMovingAverage | None, state: dict,
                 path: str | Path) -> None:
    """Load model (and EMA, when given and present) weights, with one-line errors on any mismatch."""
    sd = clean_state_dict(state["model_state_dict"])
    check_compatible(model, sd, path)
    model.load_state_dict(sd)
    if ema is not None and "ema" in state:
        try:
            ema.load_state_dict(state["ema"])
        except (KeyError, TypeError, ValueError) as e:
            raise ToolkitError(f"checkpoint {path}: EMA does not match the model ({e})") from e
