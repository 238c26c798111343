"""Configs: loading files, `a.b=value` overrides (applied before anything is built), validation, JSON round trips."""
from __future__ import annotations

import ast
import importlib.util
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import ml_collections

from configs.default_h36m_configs import SETTINGS, get_default_configs
from lib.errors import ToolkitError
from lib.io import not_found

# 2: the paper's samplers (em / drift on its grid, schedule 'auto'), ode_* names, config.fast
# 3: validation split (training.select_on), budget runs by elapsed time (n_iters 0)
# 4: what distilled students predict (distill.predict; eps+v by default); earlier ones predicted the noise
# 5: the training monitor's settings in their own section (monitor.*, were eval.train_*)
# 6: distillation rounds end end to end (distill.end_share); earlier students were distilled without it (end_share 0)
# 7: robust conditioning by robust.mode (auto / on / off); it was a switch (robust.enabled)
# 8: a stochastic twin's pools of teacher samples serve distill.spread_passes passes; earlier twins were trained with 1
# 9: stochastic twins are trained with the energy score of mean joint distances to the power 0.5
#    (distill.spread_distance, distill.spread_power); earlier ones with that of whole poses, to the power 1
VERSION = SETTINGS["version"].default  # the layout of today's config


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

def validate_config(config: ml_collections.ConfigDict) -> None:
    """Check every declared field (configs/default_h36m_configs.py) once, before anything is built; one line names
    the field."""
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
    if d.fit_share + d.spread_share >= 1.0:
        raise ToolkitError(f"distill.fit_share ({d.fit_share:g}) and distill.spread_share ({d.spread_share:g}) leave "
                           f"no minutes for the students' rounds; keep their sum below 1")
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
    Before 4: distilled students predicted the noise, with the defaults of then (a run without students, a
    teacher, distils with today's). Before 5: the monitor's settings were eval.train_*. Before 6:
    students were distilled without an end-to-end phase. Before 7: robust conditioning was a switch, off unless
    turned on; now robust.mode, whose default turns it on where the detector's table is given. Before 8: a stochastic
    twin used each pool of the teacher's samples once."""
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
    elif version < 4:  # a teacher: its distill section was that version's defaults (lr 3e-4), and takes today's
        stored.pop("distill", None)
    if version < 5:
        evaluation = stored.get("eval", {})
        moved = {k: evaluation.pop(f"train_{k}") for k in ("method", "steps", "schedule", "max_poses")
                 if f"train_{k}" in evaluation}
        if moved:
            stored["monitor"] = stored.get("monitor", {}) | moved
    if version < 6 and stored.get("distill", {}).get("students"):
        stored["distill"]["end_share"] = 0.0
    if version < 7 and "enabled" in stored.get("robust", {}):
        stored["robust"]["mode"] = "on" if stored["robust"].pop("enabled") else "auto"
    if version < 8 and stored.get("distill", {}).get("students"):
        stored["distill"]["spread_passes"] = 1
    if version < 9 and stored.get("distill", {}).get("students"):
        stored["distill"].setdefault("spread_distance", "pose")
        stored["distill"].setdefault("spread_power", 1.0)
    stored["version"] = VERSION
    return stored


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """A stored config; fields added to the toolkit after it was written take their defaults."""

    def merge(base: dict, stored: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in stored.items()}}

    return ml_collections.ConfigDict(merge(get_default_configs().to_dict(), _migrate(json.loads(text))))
