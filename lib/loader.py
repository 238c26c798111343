"""One loader: a checkpoint becomes the prior (network, SDE, config, skeleton statistics, pose bank, students).

Every command line and the API load through `load_prior`; training's resume checks its folder with
`resume_checkpoint` and then only restores weights and optimizer (lib/train.TrainState.restore). The settings a
checkpoint fixes are listed here once (`NETWORK`, `TRAINING`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_collections
import torch

from lib.builders import build_model, build_sde
from lib.checkpoint import check_compatible, clean_state_dict, load_checkpoint
from lib.config_utils import apply_overrides, config_from_json, get_field, load_config, validate_config
from lib.ema import ExponentialMovingAverage
from lib.errors import ToolkitError
from lib.model import Student
from lib.sde import SDE

# The shipped prior of real motion (its README: data, licence, command, numbers): what run.lift and
# PosePrior.from_checkpoint() use when no checkpoint is named
SHIPPED_PRIOR = Path(__file__).parent / "resources" / "cmu_prior"

# The settings a checkpoint fixes: its network, SDE and input frame (a --config given beside it must agree) ...
NETWORK = ("model.name", "model.hidden_dim", "model.embed_dim", "model.n_blocks", "model.num_groups",
           "model.num_scales", "model.beta_min", "model.beta_max", "model.sigma_min", "model.sigma_max",
           "training.sde", "data.scale", "data.image_size", "data.num_joints", "data.joint_dim")
# ... and how it was trained: no command after training can change these sections, except where a file of the
# training lies on this machine (run.distill reads the detector's table again; "" leaves its errors out)
TRAINING = ("model.", "training.", "optim.", "detnoise.")
MOVABLE = ("detnoise.table",)


def fixed_by_checkpoint(key: str) -> bool:
    """Whether a config field ('a.b') belongs to a trained checkpoint (an override of it cannot take effect)."""
    return key in NETWORK or (key.startswith(TRAINING) and key not in MOVABLE)


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


def check_same_network(config: ml_collections.ConfigDict, stored: ml_collections.ConfigDict, path: str | Path,
                       config_optional: bool = True) -> None:
    """The network, SDE and input frame a config describes must be the checkpoint's: one line names the first field
    that differs (and, where the command can do without --config, says so)."""
    for key in NETWORK:
        if get_field(config, key) != get_field(stored, key):
            raise ToolkitError(f"{key} is {get_field(config, key)} here but {path} was trained with "
                               f"{get_field(stored, key)}; use the config it was trained with"
                               + (" (or drop --config: the checkpoint carries its own)" if config_optional else ""))


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


def model_from_state(state: dict, config: ml_collections.ConfigDict, path: str | Path,
                     device: torch.device | str = "cpu", use_ema: bool = True) -> torch.nn.Module:
    """The network of `config` with the checkpoint's weights (EMA by default), in eval mode."""
    model = build_model(config)
    ema = ExponentialMovingAverage(model.parameters(), config.model.ema_rate) if use_ema else None
    load_weights(model, ema, state, path)
    if ema is not None and "ema" in state:
        ema.copy_to(model.parameters())
    return model.to(device).eval()


def students_from_state(state: dict, config: ml_collections.ConfigDict, device: torch.device | str = "cpu"
                        ) -> dict[int, Student]:
    """The distilled students a checkpoint carries ({steps: Student in eval mode}; none for other files). Their
    weights are the Student's state dict (with its stochastic twin's, 'stochastic.*', where it has one); those of runs
    before distill.predict, the bare noise network's."""
    out = {}
    for steps, weights in state.get("students", {}).items():
        student = Student(build_model(config), build_sde(config), config.distill.predict)
        if any(k.startswith("stochastic.") for k in weights):
            student.stochastic = Student(build_model(config), build_sde(config), config.distill.predict)
        if not any(k.startswith("net.") for k in weights):  # an earlier run's: the network alone, from T
            weights = student.state_dict() | {f"net.{k}": v for k, v in weights.items()}
        check_compatible(student.net, {k[4:]: v for k, v in weights.items() if k.startswith("net.")},
                         f"student of {steps} steps")
        student.load_state_dict(weights)
        out[int(steps)] = student.to(device).eval()
    return out


@dataclass
class LoadedPrior:
    """What a checkpoint gives: the network and everything sampling with it needs."""

    model: torch.nn.Module
    sde: SDE
    config: ml_collections.ConfigDict
    checkpoint: Path                           # the file it came from
    state: dict                                # the file's content (distillation writes it again)
    pose_stats: dict | None = None             # the training skeleton and cameras (lifting)
    pose_bank: torch.Tensor | None = None      # [R, J, 3] normalised training poses (warm starts)
    students: dict[int, Student] | None = None  # {steps: Student} distilled from it (lib/distill.py)


def load_prior(ckpt: str | Path | None = None, best: bool = False,
               config: str | Path | ml_collections.ConfigDict | None = None,
               overrides: dict[str, Any] | Callable[[ml_collections.ConfigDict], dict[str, Any]] | None = None,
               device: torch.device | str = "cpu") -> LoadedPrior:
    """Load a run folder (checkpoint.pth, or best_model.pth with best), a .pth file, or (None) the shipped prior.

    The config is the one the checkpoint carries, or `config` for official files without one (a config given beside
    one of ours must describe its network). `overrides` ({'a.b': value}) are applied before anything is built; one
    of a setting the checkpoint fixes is an error naming it (a function of the config may give them: the command
    lines parse their values against the config's types). The config is validated before the network is built.
    """
    is_file = ckpt is not None and (Path(ckpt).is_file() or Path(ckpt).suffix == ".pth")
    path = Path(ckpt) if is_file else checkpoint_path(ckpt, best)
    state = load_checkpoint(path)
    from_file = config is not None
    if config is None:
        config = stored_config(state, path)
    elif not isinstance(config, ml_collections.ConfigDict):
        config = load_config(config)
    overrides = overrides(config) if callable(overrides) else overrides or {}
    apply_overrides(config, overrides, None if from_file else _why_fixed(path))
    if from_file and "config" in state:  # the paper passes --config to every command: it must match the network
        check_same_network(config, stored_config(state, path), path)
    validate_config(config)
    return LoadedPrior(model_from_state(state, config, path, device), build_sde(config), config, path, state,
                       state.get("pose_stats"), state.get("pose_bank"), students_from_state(state, config, device))


def _why_fixed(path: Path) -> Callable[[str], str | None]:
    """Why an override cannot take effect on a checkpoint's own config (None: it can)."""
    def why(key: str) -> str | None:
        if fixed_by_checkpoint(key):
            return f"the network and its training come from {path}; {key} belongs to training"
        return None
    return why


def resume_checkpoint(restore_dir: str | Path, config: ml_collections.ConfigDict) -> Path:
    """The checkpoint.pth of --restore-dir, checked before anything is written: it exists, and (where it carries a
    config) its network is the config's."""
    path = Path(restore_dir) / "checkpoint.pth"
    if not path.is_file():
        raise ToolkitError(f"--restore-dir {restore_dir} holds no checkpoint.pth; give the folder of an earlier run")
    state = load_checkpoint(path)
    if "config" in state:
        check_same_network(config, stored_config(state, path), path, config_optional=False)
    return path
