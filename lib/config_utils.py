"""Loading configs from files, `x.y=value` overrides, and JSON round trips."""
from __future__ import annotations

import ast
import importlib.util
import json
from pathlib import Path

import ml_collections

from configs.default_h36m_configs import get_default_configs
from lib.errors import ToolkitError


def load_config(path: str | Path) -> ml_collections.ConfigDict:
    """Import a config file that defines get_config()."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"config file {path} not found; see configs/ (e.g. configs/subvp/synthetic_small.py)")
    spec = importlib.util.spec_from_file_location(f"_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ToolkitError(f"config file {path} does not define get_config()")
    return module.get_config()


def _coerce(old: object, text: str, key: str) -> object:
    if isinstance(old, bool):
        if text.lower() in ("true", "1", "yes"):
            return True
        if text.lower() in ("false", "0", "no"):
            return False
        raise ToolkitError(f"override {key}={text}: expected true or false")
    if isinstance(old, (int, float)):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError) as e:
            raise ToolkitError(f"override {key}={text}: expected a number") from e
        if not isinstance(value, (int, float)) or isinstance(value, bool):
            raise ToolkitError(f"override {key}={text}: expected a number")
        if isinstance(old, int) and not float(value).is_integer():
            raise ToolkitError(f"override {key}={text}: expected a whole number")
        return type(old)(value)
    return text


def apply_overrides(config: ml_collections.ConfigDict, overrides: list[str]) -> ml_collections.ConfigDict:
    """Apply 'a.b=value' strings; unknown fields are an error (no silent typos)."""
    for item in overrides:
        if "=" not in item:
            raise ToolkitError(f"override '{item}' must look like --config.section.field=value")
        key, text = item.split("=", 1)
        node = config
        parts = key.split(".")
        for p in parts[:-1]:
            if p not in node or not isinstance(node[p], ml_collections.ConfigDict):
                raise ToolkitError(f"unknown config section '{p}' in override {key}")
            node = node[p]
        if parts[-1] not in node:
            raise ToolkitError(f"unknown config field '{key}'; known fields here: {', '.join(sorted(node.keys()))}")
        node[parts[-1]] = _coerce(node[parts[-1]], text, key)
    return config


def config_to_json(config: ml_collections.ConfigDict) -> str:
    return json.dumps(config.to_dict(), indent=2, sort_keys=True)


def config_from_json(text: str) -> ml_collections.ConfigDict:
    """A stored config; fields added to the toolkit after it was written take their defaults."""

    def merge(base: dict, stored: dict) -> dict:
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in stored.items()}}

    return ml_collections.ConfigDict(merge(get_default_configs().to_dict(), json.loads(text)))
