"""Checkpoints: official U3D format plus our config, written atomically, read with weights_only=True.

File layout (``best_model.pth``): {'model_state_dict', 'ema': {'decay', 'num_updates',
'shadow_params'}, 'epoch', 'step'}; ``checkpoint.pth`` adds 'optimizer_state_dict'. We add 'config'
(JSON text) and 'best_metric'; official files without them load too.
"""
from __future__ import annotations

import contextlib
import pickle
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lib.errors import ToolkitError
from lib.io import atomic_write, not_found

# The reference stored the warm-up learning rate as a numpy float; allow exactly those globals.
_LEGACY_GLOBALS = [np.dtype, type(np.dtype(np.float64)), type(np.dtype(np.float32))]
for _mod in ("numpy._core.multiarray", "numpy.core.multiarray"):
    with contextlib.suppress(ImportError, AttributeError):
        _LEGACY_GLOBALS.append(__import__(_mod, fromlist=["scalar"]).scalar)


def save_checkpoint(state: dict[str, Any], path: str | Path) -> None:
    """Write atomically (lib/io.py): a crash or a full disk leaves the previous file intact."""
    with atomic_write(path) as f:
        torch.save(state, f)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load with ``weights_only=True``; old official files are read by allow-listing numpy scalars."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"{not_found(path, 'checkpoint')}; train one with python -m run.train_fc_adv_3d "
                           f"--config CFG --name NAME, or pass the folder that holds it")
    try:
        # torch warns about a raw pickle (not a zip checkpoint) before failing on it; the error below says it all
        with torch.serialization.safe_globals(_LEGACY_GLOBALS), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Detected pickle protocol", category=UserWarning)
            state = torch.load(path, map_location=map_location, weights_only=True)
    except (RuntimeError, EOFError, pickle.UnpicklingError, zipfile.BadZipFile, OSError) as e:
        if "unsupported global" in str(e).lower():  # a class or function: code could run on unpickling
            raise ToolkitError(f"refusing to load checkpoint {path}: it holds Python objects other than tensors "
                               f"and plain data, which could run code; load only files you trust by converting "
                               f"them to a state dict") from e
        raise ToolkitError(f"checkpoint {path} is truncated, corrupt or not a checkpoint ({type(e).__name__}); "
                           f"restore it or retrain") from e
    if not isinstance(state, dict) or "model_state_dict" not in state:
        raise ToolkitError(f"checkpoint {path} has no 'model_state_dict'; it is not a GFPose checkpoint")
    return state


def clean_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Strip the 'module.' prefix DataParallel/DDP adds."""
    return {k.removeprefix("module."): v for k, v in state_dict.items()}


def check_compatible(model: torch.nn.Module, state_dict: dict[str, torch.Tensor], path: str | Path) -> None:
    """Raise a one-line error that lists missing, unexpected and mis-shaped keys."""
    own = model.state_dict()
    missing = [k for k in own if k not in state_dict]
    unexpected = [k for k in state_dict if k not in own]
    shapes = [f"{k} {tuple(state_dict[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if k in state_dict and state_dict[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        for name, items in (("missing", missing), ("unexpected", unexpected), ("shape (file vs config)", shapes)):
            if items:
                shown = ", ".join(items[:6]) + (f" (+{len(items) - 6} more)" if len(items) > 6 else "")
                parts.append(f"{name}: {shown}")
        raise ToolkitError(f"checkpoint {path} does not match the config ({'; '.join(parts)}); "
                           f"use the config it was trained with (model.hidden_dim, model.n_blocks, ...)")
