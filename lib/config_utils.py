"""Configs: loading files, `a.b=value` overrides (applied before anything is built), validation, JSON round trips."""
from __future__ import annotations

import ast
import importlib.util
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ml_collections

from configs.default_h36m_configs import get_default_configs
from lib.aggregate import AGGREGATORS
from lib.errors import ToolkitError
from lib.io import not_found
from lib.keypoints import FORMATS, H36M
from lib.model import PREDICTIONS
from lib.sampling import SAMPLERS, SCHEDULES
from lib.tasks.base import WARM_STARTS
from lib.tasks.observe import COMPLETIONS

# 2: the paper's samplers (em / drift on its grid, schedule 'auto'), ode_* names, config.fast
# 3: validation split (training.select_on), budget runs by elapsed time (n_iters 0)
# 4: what distilled students predict (distill.predict; eps+v by default); earlier ones predicted the noise
# 5: the training monitor's settings in their own section (monitor.*, were eval.train_*)
VERSION = 5


def load_config(path: str | Path) -> ml_collections.ConfigDict:
    """Import a config file that defines get_config(); any failure inside it is a one-line error."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"{not_found(path, 'config file')}; see configs/ (e.g. configs/subvp/synthetic_small.py)")
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    if spec is None or spec.loader is None or path.suffix != ".py":
        raise ToolkitError(f"config file {path} is not a Python file (.py defining get_config())")
    module = importlib.util.module_from_spec(spec)
    try:
        spec.loader.exec_module(module)
    except SyntaxError as e:
        raise ToolkitError(f"config file {path} line {e.lineno}: syntax error ({e.msg})") from e
    except (UnicodeDecodeError, ValueError) as e:  # not UTF-8 text, or null bytes
        raise ToolkitError(f"config file {path} is not readable Python source ({type(e).__name__})") from e
    except Exception as e:  # noqa: BLE001 (a user's file may raise anything)
        raise ToolkitError(f"config file {path}: importing it failed with {type(e).__name__}: {e}") from e
    if not hasattr(module, "get_config"):
        raise ToolkitError(f"config file {path} does not define get_config()")
    try:
        config = module.get_config()
    except ToolkitError:
        raise
    except Exception as e:  # noqa: BLE001 (a user's file may raise anything)
        raise ToolkitError(f"config file {path}: get_config() failed with {type(e).__name__}: {e}") from e
    if not isinstance(config, ml_collections.ConfigDict):
        raise ToolkitError(f"config file {path}: get_config() must return an ml_collections.ConfigDict")
    return config


def _coerce(old: object, text: str, key: str) -> object:
    if isinstance(old, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ToolkitError(f"--config.{key}={text}: expected true or false")
    if isinstance(old, (int, float)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise ToolkitError(f"--config.{key}={text}: expected a number") from e
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ToolkitError(f"--config.{key}={text}: expected a number")
        if isinstance(old, int) and not float(value).is_integer():
            raise ToolkitError(f"--config.{key}={text}: expected a whole number")
        return type(old)(value)
    return text


def parse_override(config: ml_collections.ConfigDict, item: str) -> tuple[str, object]:
    """'a.b=value' -> ('a.b', value coerced to the field's type); unknown fields are an error (no silent typos)."""
    if "=" not in item:
        raise ToolkitError(f"override '{item}' must look like --config.section.field=value")
    key, text = item.split("=", 1)
    node = config
    parts = key.split(".")
    for p in parts[:-1]:
        if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
            raise ToolkitError(f"unknown config section '{p}' in --config.{key}")
        node = node[p]
    if parts[-1] not in node or isinstance(node[parts[-1]], ml_collections.ConfigDict):
        raise ToolkitError(f"unknown config field '{key}'; known fields here: {', '.join(sorted(node.keys()))}")
    return key, _coerce(node[parts[-1]], text, key)


def get_field(config: ml_collections.ConfigDict, key: str) -> Any:
    node = config
    for p in key.split("."):
        node = node[p]
    return node


def set_field(config: ml_collections.ConfigDict, key: str, value: Any) -> None:
    *path, last = key.split(".")
    node = config
    for p in path:
        node = node[p]
    node[last] = value


def with_fields(config: ml_collections.ConfigDict, fields: dict[str, Any]) -> ml_collections.ConfigDict:
    """A copy of the config with some 'a.b' fields set."""
    out = config.copy_and_resolve_references()
    for key, value in fields.items():
        set_field(out, key, value)
    return out


def apply_overrides(config: ml_collections.ConfigDict, overrides: dict[str, Any],
                    fixed: Callable[[str], str | None] | None = None) -> ml_collections.ConfigDict:
    """Set each 'a.b' field; fixed(key) returns why a field cannot take effect here (then it is an error)."""
    for key, value in overrides.items():
        if fixed is not None and value != get_field(config, key) and (why := fixed(key)):
            raise ToolkitError(f"--config.{key}={value} cannot take effect: {why}")
        set_field(config, key, value)
    return config


# ------------------------------------------------------------------------------------------- validation

def _num(lo: float | None = None, hi: float | None = None, lo_open: bool = False, hi_open: bool = False,
         integer: bool = False) -> Callable[[Any], str | None]:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or (integer and not float(v).is_integer()):
            return "a whole number" if integer else "a number"
        if not math.isfinite(v):
            return "finite"
        if lo is not None and (v < lo or (lo_open and v == lo)):
            return f"{'>' if lo_open else '>='} {lo:g}"
        if hi is not None and (v > hi or (hi_open and v == hi)):
            return f"{'<' if hi_open else '<='} {hi:g}"
        return None
    return check


class _OneOf:
    """A check that a value is one of some names (the names are also a command line's choices)."""

    def __init__(self, *names: str):
        self.names = names

    def __call__(self, v: Any) -> str | None:
        return None if v in self.names else f"one of {', '.join(self.names)}"


def _one_of(*names: str) -> _OneOf:
    return _OneOf(*names)


def _switch(v: Any) -> str | None:
    return None if isinstance(v, bool) else "true or false"


@dataclass(frozen=True)
class Setting:
    """How a config field is checked and, where a command line has a short flag for it, the flag and its help (the
    command lines derive their flags from these; the field's default and its comment are in
    configs/default_h36m_configs.py)."""

    check: Callable[[Any], str | None]
    flag: str | None = None
    help: str = ""


MAX_SEED = 2 ** 63 - 1  # seeds of the sampling chunks are taken modulo 2**63 (lib/sharded.chunk_seed)
_POS_INT, _NONNEG_INT, _PROB = _num(1, integer=True), _num(0, integer=True), _num(0.0, 1.0)
_POS = _num(0.0, lo_open=True)
_STEPS = _num(1, 100_000, integer=True)  # sampler steps (the paper's 1000; more is a slip of the keyboard)
_H36M_ORDER = _one_of(*(f.name for f in FORMATS.values() if f.tables.get(17) == H36M))  # detectors in H36M order
# Every checked field; those with a short flag also name it and its help
SETTINGS: dict[str, Setting] = {
    "seed": Setting(_num(0, MAX_SEED, integer=True), "--seed", "random seed"),
    "data.image_size": Setting(_POS),
    "data.scale": Setting(_POS),
    "data.num_joints": Setting(_num(17, 17, integer=True)),
    "data.joint_dim": Setting(_num(3, 3, integer=True)),
    "data.train_sample": Setting(_POS_INT, "--sample", "keep every k-th training row"),
    "data.test_sample": Setting(_POS_INT, "--sample", "evaluate every k-th test row"),
    "data.val_fraction": Setting(_num(0.0, 0.5, lo_open=True)),
    "data.rotate": Setting(_num(0.0, 180.0)),
    "data.bone_scale": Setting(_num(0.0, 0.5)),
    "data.augment_p": Setting(_PROB),
    "data.det_format": Setting(_H36M_ORDER),
    "data.use_gt_2d": Setting(_switch, "--gt", "condition on ground-truth 2D instead of detections"),
    "data.flip": Setting(_switch, "--flip", "random horizontal flips"),
    "model.hidden_dim": Setting(_POS_INT),
    "model.embed_dim": Setting(_num(4, integer=True)),
    "model.n_blocks": Setting(_NONNEG_INT),
    "model.dropout": Setting(_num(0.0, 1.0, hi_open=True)),
    "model.num_groups": Setting(_POS_INT),
    "model.ema_rate": Setting(_PROB),
    "model.num_scales": Setting(_POS_INT),
    "model.beta_min": Setting(_POS),
    "model.beta_max": Setting(_POS),
    "model.sigma_min": Setting(_POS),
    "model.sigma_max": Setting(_POS),
    "model.ema_halflife": Setting(_num(0.0, 1.0)),
    "training.sde": Setting(_one_of("subvpsde", "vpsde", "vesde")),
    "training.batch_size": Setting(_POS_INT),
    "training.n_iters": Setting(_NONNEG_INT),
    "training.max_minutes": Setting(_num(0.0)),
    "training.eps": Setting(_num(0.0, 1.0, True, True)),
    "training.log_every": Setting(_POS_INT),
    "training.eval_every": Setting(_NONNEG_INT),
    "training.snapshot_every": Setting(_NONNEG_INT),
    "training.mask_whole_p": Setting(_PROB),
    "training.mask_part_p": Setting(_PROB),
    "training.mask_joint_p": Setting(_PROB),
    "training.cond_3d_p": Setting(_PROB),
    "training.completion_from": Setting(_PROB),
    "training.completion_part_p": Setting(_PROB),
    "training.completion_joint_p": Setting(_PROB),
    "training.completion_3d_p": Setting(_PROB),
    "training.budget_minutes": Setting(_num(0.0)),
    "training.select_on": Setting(_one_of("val", "test"), "--select-on", "rows best_model.pth is chosen on: val "
                                  "(held-out training sequences) or test (the paper's)"),
    "optim.lr": Setting(_POS),
    "optim.beta1": Setting(_num(0.0, 1.0, hi_open=True)),
    "optim.eps": Setting(_POS),
    "optim.weight_decay": Setting(_num(0.0)),
    "optim.warmup": Setting(_NONNEG_INT),
    "optim.grad_clip": Setting(_num(0.0)),
    "optim.warmup_frac": Setting(_num(0.0, 0.5)),
    "optim.schedule": Setting(_one_of("constant", "cosine")),
    "optim.lr_final": Setting(_PROB),
    "detnoise.p": Setting(_PROB),
    "detnoise.tail": Setting(_num(1.0)),
    "detnoise.format": Setting(_H36M_ORDER),
    "sampling.steps": Setting(_STEPS, "--steps", "sampler steps"),
    "sampling.eps": Setting(_num(0.0, 1.0, True, True)),
    "sampling.snr": Setting(_POS),
    "sampling.corrector_steps": Setting(_num(1, 100, integer=True)),
    "sampling.rtol": Setting(_POS),
    "sampling.atol": Setting(_POS),
    "sampling.eta": Setting(_num(0.0), "--eta", "ddim / dpm2m noise: 0 = ODE, 1 = SDE"),
    "sampling.resample": Setting(_num(0, 100, integer=True)),
    "sampling.resample_t": Setting(_PROB),
    "sampling.guidance": Setting(_num(0.0)),
    "sampling.method": Setting(_one_of(*SAMPLERS), "--sampler", "sampler"),
    "sampling.schedule": Setting(_one_of("auto", *SCHEDULES), "--schedule", "time grid"),
    "fast.deterministic_steps": Setting(_STEPS),
    "fast.stochastic_steps": Setting(_STEPS),
    "fast.stochastic_eta": Setting(_num(0.0)),
    "distill.first_steps": Setting(_POS_INT),
    "distill.lr": Setting(_POS),
    "distill.batch_size": Setting(_POS_INT),
    "distill.pool": Setting(_POS_INT),
    "distill.ema_halflife": Setting(_num(0.0, 1.0, lo_open=True)),
    "distill.fast_steps": Setting(_NONNEG_INT),
    "distill.fast_tolerance": Setting(_num(0.0)),
    "distill.predict": Setting(_one_of(*PREDICTIONS)),
    "distill.fit_share": Setting(_num(0.0, 0.5)),
    "distill.round_growth": Setting(_num(0.25, 4.0)),
    "distill.t_start": Setting(_num(0.1, 1.0)),
    "eval.batch_size": Setting(_POS_INT, "--batch", "poses x hypotheses per network call"),
    "eval.hypo": Setting(_POS_INT, "--hypo", "hypotheses per input (S)"),
    "eval.reduce": Setting(_one_of(*AGGREGATORS), "--reduce", "the one pose made from S hypotheses (see README "
                            "'One pose from many hypotheses')"),
    "eval.completion": Setting(_one_of(*COMPLETIONS), "--completion", "comp2d / comp3d: how the observation is used "
                                "(lib/tasks/observe.py; README 'Completion')"),
    "eval.min_conf": Setting(_num(0.0), "--min-conf", "detected joints below this confidence are not given"),
    "eval.reproj_sigma": Setting(_POS),
    "eval.reproj_temper": Setting(_num(0.0, 1.0, lo_open=True)),
    "eval.warm_start": Setting(_one_of(*WARM_STARTS)),
    "eval.warm_t": Setting(_num(0.0, 1.0, lo_open=True)),
    "eval.warm_hypotheses": Setting(_num(1, 1000, integer=True)),
    "eval.refine_t": Setting(_num(0.0, 1.0, lo_open=True)),
    "eval.refine_steps": Setting(_STEPS),
    "monitor.steps": Setting(_STEPS),
    "monitor.max_poses": Setting(_POS_INT),
    "monitor.method": Setting(_one_of(*SAMPLERS)),
    "monitor.schedule": Setting(_one_of("auto", *SCHEDULES)),
    "lift.completion": Setting(_one_of(*COMPLETIONS)),
    "lift.min_conf": Setting(_num(0.0), "--min-conf", "joints below this confidence are completed"),
    "lift.min_joints": Setting(_num(1, 17, integer=True)),
    "lift.hypotheses": Setting(_POS_INT, "--hypo", "hypotheses per person (1: the deterministic sampler)"),
    "lift.smooth_t": Setting(_num(0.0, 1.0, lo_open=True)),
    "lift.smooth_steps": Setting(_STEPS),
    "lift.smooth_window": Setting(_POS_INT),
    "lift.floor_ankle_height": Setting(_num(0.0, 500.0)),
    "lift.floor_tolerance": Setting(_num(1.0, 1000.0)),
    "lift.floor_prior": Setting(_num(0.0, 1000.0)),
    "lift.floor_min_frames": Setting(_num(2, integer=True)),
    "lift.smooth": Setting(_switch, "--smooth", "video: second pass from the neighbouring frames' poses"),
    "robust.swap_margin": Setting(_num(0.0)),
    "robust.outlier_k": Setting(_num(0.0)),
    "robust.rounds": Setting(_num(0, 10, integer=True)),
    "robust.flag_share": Setting(_PROB),
    "robust.enabled": Setting(_switch, "--robust", "undo left / right swaps and complete keypoints the prior does not "
                              "believe (config.robust): est from detections, and run.lift"),
}


def validate_config(config: ml_collections.ConfigDict) -> None:
    """Check every known field's type and range once, before anything is built; one line names the field."""
    for key, setting in SETTINGS.items():
        try:
            value = get_field(config, key)
        except (KeyError, AttributeError):
            continue
        if (need := setting.check(value)) is not None:
            raise ToolkitError(f"config field {key} = {value!r} must be {need}")
    training = config.training
    if (training.n_iters > 0) == (training.budget_minutes > 0):
        raise ToolkitError(f"training.n_iters ({training.n_iters}) and training.budget_minutes "
                           f"({training.budget_minutes:g}) both {'set' if training.n_iters else 'leave open'} the "
                           f"length of the run; give one of them and set the other to 0")
    m = config.model
    if m.hidden_dim % m.num_groups:
        raise ToolkitError(f"model.hidden_dim ({m.hidden_dim}) must be divisible by model.num_groups ({m.num_groups})")
    if m.beta_min >= m.beta_max or m.sigma_min >= m.sigma_max:
        raise ToolkitError("model.beta_min < model.beta_max and model.sigma_min < model.sigma_max are required")
    d = config.distill
    if d.predict == "eps" and d.fit_share > 0:
        raise ToolkitError(f"distill.fit_share ({d.fit_share:g}) cannot take effect with distill.predict=eps (a "
                           f"student of the teacher's own head starts as the teacher); set it to 0")


# ----------------------------------------------------------------------------------------- JSON, versions

def config_to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


_RENAMED = {"pflow_euler": "ode_euler", "heun": "ode_heun", "pflow_rk45": "ode_rk45"}


def _migrate(stored: dict) -> dict:
    """Configs of earlier versions. Before 2: old sampler names, and 'uniform' was the default grid of em then.
    Before 3: runs selected best_model.pth on the test rows, and a budget run stored the step count it fitted.
    Before 4: distilled students predicted the noise. Before 5: the monitor's settings were eval.train_*."""
    version = stored.get("version", 1)
    if version < 2:
        sampling = stored.get("sampling", {})
        if sampling.get("method") in _RENAMED:
            sampling["method"] = _RENAMED[sampling["method"]]
        if sampling.get("schedule") == "uniform":
            sampling["schedule"] = "auto"
        stored.pop("eval", None)  # the old monitor settings (EM / probability-flow ODE) are replaced by the defaults
    if version < 3:
        training = stored.setdefault("training", {})
        training["select_on"] = "test"
        if training.get("budget_minutes", 0) > 0:
            training["n_iters"] = 0
    if version < 4 and stored.get("distill", {}).get("students"):
        stored["distill"] |= {"predict": "eps", "fit_share": 0.0}
    if version < 5:
        evaluation = stored.get("eval", {})
        moved = {k: evaluation.pop(f"train_{k}") for k in ("method", "steps", "schedule", "max_poses")
                 if f"train_{k}" in evaluation}
        if moved:
            stored["monitor"] = stored.get("monitor", {}) | moved
    stored["version"] = VERSION
    return stored


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """A stored config; fields added to the toolkit after it was written take their defaults."""

    def merge(base: dict, stored: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in stored.items()}}

    return ml_collections.ConfigDict(merge(get_default_configs().to_dict(), _migrate(json.loads(text))))
