"""Progress of long work: a tqdm bar on a terminal, else a line on stderr every `every` seconds (a log file gets a
few lines, not a flood of carriage returns)."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


def progress(items: Iterable[T], total: int, desc: str, enabled: bool = True, every: float = 30.0,
             clock: Callable[[], float] = time.monotonic) -> Iterator[T]:
    """Yield items, showing how far through `total` they are (clock: seconds, for the lines' spacing)."""
    if not enabled:
        yield from items
        return
    if sys.stderr.isatty():
        yield from tqdm(items, total=total, desc=desc, leave=False)
        return
    start = last = clock()
    for k, item in enumerate(items):
        yield item
        now = clock()
        if now - last >= every and k + 1 < total:
            last = now
            print(f"{desc}: {k + 1}/{total} ({100 * (k + 1) / total:.0f} %, {now - start:.0f} s)", file=sys.stderr,
                  flush=True)
