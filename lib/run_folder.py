"""Run folders that are never shared by two live runs and never lose a finished run by accident.

The lock is an `fcntl` lock on RUN/.lock, taken before anything else (data loading included): two starts at the same
instant cannot both hold it, and a killed run's lock goes with its process. `--overwrite` moves the old run's files
aside (RUN/.replaced-*) and deletes them only once the new run has written its first checkpoint; a run that fails
before that puts them back. So an old best_model.pth never sits beside a new run. Only the files training writes
(TRAINING_FILES) are replaced: evaluation results, lifts and a user's own files in the folder stay.
"""
from __future__ import annotations

import fcntl
import logging
import os
import shutil
import signal
import tempfile
from pathlib import Path

from lib import dist
from lib.errors import ToolkitError
from lib.io import remove_stale_temps

log = logging.getLogger("gfpose")

LOCK = ".lock"
ASIDE = ".replaced-"
RESULTS = ("checkpoint.pth", "best_model.pth")
# What training writes into a run folder (lib/train.py); --overwrite replaces these and leaves anything else there
# (a user's notes, evaluation results, lifts) where it is
TRAINING_FILES = RESULTS + ("config.json", "log.txt", "monitor.json", "learning_curve.png", "tb")


class RunFolder:
    """Rank 0 holds the folder's lock for the life of the run (`with RunFolder(...)`)."""

    def __init__(self, workdir: Path, resume: bool, overwrite: bool):
        self.workdir, self.resume, self.overwrite = workdir, resume, overwrite
        self._fd: int | None = None
        self.aside: Path | None = None
        self.created: Path | None = None

    def __enter__(self) -> RunFolder:
        if dist.is_main():
            self._lock()
            try:
                self._check()
                remove_stale_temps(self.workdir)
                if self.overwrite and not self.resume:
                    self._move_aside()
            except BaseException:
                self._unlock()
                raise
        dist.barrier()
        return self

    def _lock(self) -> None:
        top = self.workdir.absolute()  # the outermost folder this run creates (--ckpt-root too, when new)
        while not top.parent.exists() and top != top.parent:
            top = top.parent
        try:
            self.created = None if self.workdir.exists() else top
            self.workdir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.workdir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as e:
            raise ToolkitError(f"cannot use run folder {self.workdir}: {e.strerror or e}; choose another "
                               f"--ckpt-root or --name") from e
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError as e:
            os.close(fd)
            raise ToolkitError(f"run folder {self.workdir} is in use by a live run; wait for it or choose another "
                               f"--name") from e
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        self._fd = fd

    def _check(self) -> None:
        done = [f for f in RESULTS if (self.workdir / f).exists()]
        if done and not (self.resume or self.overwrite):
            raise ToolkitError(f"run folder {self.workdir} already holds {' and '.join(done)}; resume it with "
                               f"--restore-dir {self.workdir}, replace it with --overwrite, or choose another --name")
        if self.resume and not (self.workdir / "checkpoint.pth").is_file():
            raise ToolkitError(f"--restore-dir {self.workdir} holds no checkpoint.pth; give the folder of an earlier "
                               f"run (checkpoint/NAME)")

    def _move_aside(self) -> None:
        """The old run's training files go into a unique hidden folder inside the run folder until the new run has
        saved; other files stay where they are."""
        old = [self.workdir / name for name in TRAINING_FILES if (self.workdir / name).exists()]
        if not old:
            return
        self.aside = Path(tempfile.mkdtemp(prefix=ASIDE, dir=self.workdir))
        for p in old:
            p.rename(self.aside / p.name)

    def saved(self) -> None:
        """The new run wrote a checkpoint: the replaced run can go."""
        if self.aside is not None:
            shutil.rmtree(self.aside, ignore_errors=True)
            self.aside = None

    def _restore(self) -> None:
        """The new run failed before saving: its partial files go, the replaced run comes back."""
        for p in (self.workdir / name for name in TRAINING_FILES):
            if p.is_dir():
                shutil.rmtree(p, ignore_errors=True)
            else:
                p.unlink(missing_ok=True)
        for p in self.aside.iterdir():
            p.rename(self.workdir / p.name)
        self.aside.rmdir()
        self.aside = None

    def _unlock(self) -> None:
        """Release the lock (the file stays: removing it could let two later starts lock two different files)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def __exit__(self, *exc) -> None:
        if dist.is_main():
            if self.aside is not None:
                self._restore()
            self._unlock()
            if self.created is not None and [p.name for p in self.workdir.iterdir()] == [LOCK]:  # nothing written
                shutil.rmtree(self.created, ignore_errors=True)


class StopSignals:
    """SIGINT and SIGTERM (what schedulers send) ask the loop to stop at the next step boundary; a second one
    stops at once."""

    def __enter__(self) -> StopSignals:
        self.received: int | None = None
        self._old = {s: signal.signal(s, self._handle) for s in (signal.SIGINT, signal.SIGTERM)}
        return self

    def _handle(self, signum: int, frame) -> None:
        if self.received is not None:
            raise KeyboardInterrupt
        self.received = signum

    def __exit__(self, *exc) -> None:
        for s, handler in self._old.items():
            signal.signal(s, handler)


def setup_logging(workdir: Path | None) -> None:
    """Rank 0 logs to the console and to workdir/log.txt; other ranks only warn."""
    log.handlers.clear()
    log.propagate = False
    log.setLevel(logging.INFO if dist.is_main() else logging.WARNING)
    fmt = logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S")
    handlers = [logging.StreamHandler()]
    if workdir is not None and dist.is_main():
        handlers.append(logging.FileHandler(workdir / "log.txt"))
    for h in handlers:
        h.setFormatter(fmt)
        log.addHandler(h)
