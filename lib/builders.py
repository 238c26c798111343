"""Builders from a config, shared by every command line and the Python API: the network, the SDE, the score
function, the optimizer and the network's frame."""
from __future__ import annotations

import ml_collections
import torch

from lib.camera import Frames
from lib.errors import ToolkitError
from lib.model import ScoreFn, ScoreModelFC_Adv
from lib.regression import MartinezLifter
from lib.sde import SDE, get_sde

MODELS = ("ScoreModelFC_Adv", "MartinezLifter")  # the score network; the regression baseline (lib/regression.py)


def build_model(config: ml_collections.ConfigDict) -> torch.nn.Module:
    """The network of a validated config (lib/config_utils.validate_config)."""
    m = config.model
    if m.name not in MODELS:
        raise ToolkitError(f"unknown model.name '{m.name}'; the toolkit provides {', '.join(MODELS)}")
    if m.name == "MartinezLifter":
        return MartinezLifter(num_joints=config.data.num_joints, hidden_dim=m.hidden_dim, n_blocks=m.n_blocks,
                              dropout=m.dropout)
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


def build_score_fn(model: torch.nn.Module, sde: SDE, config: ml_collections.ConfigDict,
                   students: dict[int, torch.nn.Module] | None = None) -> ScoreFn:
    """The score of a model for sampling, with the config's torch.compile choice, and the students distilled from it
    (lib/distill.py) for the 'distilled' sampler. (Its precision is each sampler's, lib/resolve.py.)"""
    return ScoreFn(model, sde, compile=config.sampling.compile, students=students,
                   student_grid=config.fast.deterministic_schedule)


def frames_of(config: ml_collections.ConfigDict) -> Frames:
    return Frames(float(config.data.image_size), float(config.data.scale))


def build_optimizer(config: ml_collections.ConfigDict, params) -> torch.optim.Optimizer:
    o = config.optim
    return torch.optim.Adam(params, lr=o.lr, betas=(o.beta1, 0.999), eps=o.eps, weight_decay=o.weight_decay)
