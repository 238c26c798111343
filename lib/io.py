"""The one way the toolkit writes files: atomically, so a crash or a full disk never leaves a half file.

Every writer (checkpoints, pickles, results, JSON, pictures) goes through `atomic_write`: the data go to a
hidden temporary file in the target's folder, are flushed and fsynced, and the temporary file is renamed
over the target. On any error the temporary file is removed and the old target is untouched.
"""
from __future__ import annotations

import contextlib
import errno
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from lib.errors import ToolkitError, first_line

TMP_MARK = ".tmp-"


def _temp_name(path: Path) -> Path:
    """A hidden name next to `path` that keeps its suffix (some writers choose the format by it)."""
    return path.with_name(f".{path.stem}{TMP_MARK}{os.getpid()}{path.suffix}")


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path next to `path` for a writer that wants a file name; on success the file is fsynced and
    renamed over `path`, on any error it is removed."""
    path = Path(path)
    make_folder(path.parent)
    tmp = _temp_name(path)
    try:
        yield tmp
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        tmp.replace(path)
    except OSError as e:
        raise ToolkitError(f"cannot write {path}: {_reason(e)}") from e
    finally:
        tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temporary file next to `path` for writing; on success it replaces `path` (see atomic_path)."""
    with atomic_path(path) as tmp, open(tmp, mode) as f:
        yield f


def _reason(e: OSError) -> str:
    if e.errno == errno.ENOSPC:
        return "no space left on the device; free some space and run again"
    return e.strerror or str(e)


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path, "w") as f:
        f.write(text)


def write_json(path: str | Path, payload: Any) -> None:
    write_text(path, json.dumps(payload, indent=2) + "\n")


def write_npz(path: str | Path, **arrays: np.ndarray) -> None:
    with atomic_write(path) as f:
        np.savez_compressed(f, **arrays)


def remove_stale_temps(folder: str | Path) -> list[Path]:
    """Delete temporary files that a killed writer left in `folder` (never those of a live process)."""
    removed = []
    for tmp in Path(folder).glob(f".*{TMP_MARK}*"):
        pid = tmp.name.rsplit(TMP_MARK, 1)[-1].split(".")[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            tmp.unlink(missing_ok=True)
            removed.append(tmp)
    return removed


def pid_alive(pid: int) -> bool:
    """Whether a process with this id is running (on this machine)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def check_writable(path: str | Path, what: str, is_dir: bool = False) -> Path:
    """Make sure `path` (a file, or a folder with is_dir) can be written before any long work starts.

    Creates nothing (the writers make the folders when they write, so a run that fails leaves no empty folder):
    the folder, or the nearest part of it that exists, must be a writable folder. A path of the wrong kind or a
    read-only place is a one-line error.
    """
    path = Path(path)
    folder = path if is_dir else path.parent
    if is_dir and path.exists() and not path.is_dir():
        raise ToolkitError(f"{what} {path} is a file, not a folder; choose a folder")
    if not is_dir and path.is_dir():
        raise ToolkitError(f"{what} {path} is a folder; give a file name")
    existing = folder.absolute()
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise ToolkitError(f"{what} {path}: cannot create folder {folder} ({existing} is a file)")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ToolkitError(f"{what} {path}: folder {existing} is not writable; choose another place")
    if not is_dir and path.exists() and not os.access(path, os.W_OK):
        raise ToolkitError(f"{what} {path} is read-only; choose another file")
    return path


def make_folder(folder: str | Path) -> Path:
    """Create a folder (and its parents) for what is about to be written into it; a one-line error if it cannot."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ToolkitError(f"cannot create folder {folder} ({_reason(e)})") from e
    return folder


def not_found(path: str | Path, what: str = "") -> str:
    """Why `path` cannot be opened: 'WHAT PATH not found', or that it is a symbolic link to nothing (a loop or a
    target that is gone), which Path.exists() also reports as absent."""
    path = Path(path)
    label = f"{what} {path}".strip()
    if path.is_symlink():
        return f"{label} is a symbolic link that leads nowhere (a loop, or its target is gone)"
    return f"{label} not found"


def check_output(path: str | Path, what: str, ours: Callable[[Path], bool]) -> Path:
    """An output file to write: check_writable, and where a file is already there it must be one this tool wrote of
    that kind (ours(path)); a user's own file (notes, another tool's output) is never replaced."""
    path = check_writable(path, what)
    if path.is_file() and not ours(path):
        raise ToolkitError(f"{what} {path} exists and is not a file this tool writes there; choose another name, or "
                           f"move the file away")
    return path


def json_with(*keys: str) -> Callable[[Path], bool]:
    """A test for check_output: a JSON object with these keys."""
    def ours(path: Path) -> bool:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError):
            return False
        return isinstance(data, dict) and all(k in data for k in keys)
    return ours


def npz_with(*keys: str) -> Callable[[Path], bool]:
    """A test for check_output: an .npz archive with these arrays."""
    def ours(path: Path) -> bool:
        try:
            with np.load(path, allow_pickle=False) as z:
                return all(k in z.files for k in keys)
        except (OSError, ValueError, EOFError, AttributeError, TypeError, zipfile.BadZipFile):
            return False
    return ours


def text_starting(prefix: str) -> Callable[[Path], bool]:
    """A test for check_output: a text file that starts with prefix."""
    def ours(path: Path) -> bool:
        try:
            with path.open(encoding="utf-8") as f:
                return f.read(len(prefix)) == prefix
        except (OSError, UnicodeDecodeError):
            return False
    return ours


def last_results_pointer() -> Path:
    """The per-user file that names the results.npz the last evaluation wrote (what a bare run.visualize draws):
    $XDG_CACHE_HOME/gfpose/last_results, by default ~/.cache/gfpose/last_results."""
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "gfpose" / "last_results"


def refuse_existing(paths: list[Path], overwrite: bool) -> None:
    """A one-line error when files the user did not ask to replace are in the way (unless overwrite)."""
    there = [str(p) for p in paths if p.exists()]
    if there and not overwrite:
        raise ToolkitError(f"{', '.join(there)} already exist{'s' if len(there) == 1 else ''}; give --overwrite to "
                           f"replace {'it' if len(there) == 1 else 'them'}, or another --out")


@contextlib.contextmanager
def staging(out: str | Path) -> Iterator[Path]:
    """A fresh hidden folder next to `out` (tempfile.mkdtemp, never a guessable name); on success every file in it
    is moved into `out` (made if needed), on any error it is removed and `out` is untouched."""
    out = Path(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.partial-", dir=out.parent))
    except OSError as e:
        raise ToolkitError(f"cannot write into {out.parent}: {_reason(e)}") from e
    try:
        yield tmp
        out.mkdir(parents=True, exist_ok=True)
        for f in tmp.iterdir():
            f.replace(out / f.name)
    except OSError as e:
        raise ToolkitError(f"cannot write into {out}: {_reason(e)}") from e
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def unused_path(path: Path) -> Path:
    """path, or path with -1, -2, ... before its suffix: the first name no file has (a default output never replaces
    a file the user did not name)."""
    k, out = 0, path
    while out.exists():
        k += 1
        out = path.with_name(f"{path.stem}-{k}{path.suffix}")
    return out


def load_npz(path: str | Path, what: str) -> dict[str, np.ndarray]:
    """Every array of an .npz archive (no pickles), or a one-line error naming `what` was expected."""
    path = Path(path)
    if not path.is_file():
        raise ToolkitError(f"{not_found(path)} (expected {what})")
    try:
        z = np.load(path, allow_pickle=False)
        if not isinstance(z, np.lib.npyio.NpzFile):
            raise ValueError("a single array, not an .npz archive")
        with z:
            return {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        # numpy's own message for a file that is not in its format suggests loading pickles: never pass that on
        reason = "not numpy's .npz format" if "pickle" in str(e) else first_line(e)
        raise ToolkitError(f"cannot read {path} as {what} ({reason})") from e
