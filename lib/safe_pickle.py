"""Restricted unpickler: numpy arrays, dicts, lists, tuples, numbers and strings only."""
from __future__ import annotations

import io
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from lib.errors import ToolkitError, first_line
from lib.io import atomic_write

_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
    ("builtins", "set"), ("builtins", "frozenset"), ("builtins", "complex"),
    ("collections", "OrderedDict"), ("_codecs", "encode"),
}


class _RestrictedUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        if module == "numpy.dtypes" and name.endswith("DType"):  # numpy >= 1.25 dtype classes
            return getattr(np.dtypes, name)
        raise pickle.UnpicklingError(f"refusing to unpickle {module}.{name} (only numpy arrays and plain data)")


def load_pickle(path: str | Path) -> Any:
    """Read a pickle that may only hold numpy arrays and plain Python data."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _RestrictedUnpickler(io.BufferedReader(f)).load()
    except OSError as e:
        raise ToolkitError(f"cannot read pickle {path}: {e.strerror or first_line(e)}") from e
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError, KeyError,
            TypeError, MemoryError, RecursionError) as e:
        raise ToolkitError(f"cannot read pickle {path}: not a readable pickle ({type(e).__name__}: "
                           f"{first_line(e, 100)})") from e


def loads_restricted(data: bytes, where: str) -> Any:
    """Unpickle bytes that may only hold numpy arrays and plain Python data (e.g. an npz object entry)."""
    try:
        return _RestrictedUnpickler(io.BytesIO(data)).load()
    except (pickle.UnpicklingError, EOFError, ValueError, AttributeError, ImportError, IndexError, KeyError,
            TypeError, MemoryError, RecursionError) as e:
        raise ToolkitError(f"cannot read pickled data in {where}: {type(e).__name__}: {first_line(e, 100)}") from e


def save_pickle(obj: Any, path: str | Path) -> None:
    """Write a pickle atomically (lib/io.py)."""
    with atomic_write(path) as f:
        pickle.dump(obj, f, protocol=4)
