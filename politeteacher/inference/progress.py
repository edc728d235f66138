"""Progress of a predict: a tqdm bar with images/s on a terminal, else a plain line every 10 s."""
from __future__ import annotations

import sys
import time
from typing import Optional

from tqdm import tqdm


class Progress:
    def __init__(self, total: Optional[int], unit: str = "image", bar: Optional[bool] = None, every_s: float = 10.0):
        self.total, self.unit, self.done = total, unit, 0
        self.start = self._last = time.monotonic()
        self.every_s = every_s
        self._bar = None
        if sys.stderr.isatty() if bar is None else bar:
            self._bar = tqdm(total=total, unit=unit, dynamic_ncols=True, leave=True)

    def rate(self) -> float:
        elapsed = time.monotonic() - self.start
        return self.done / elapsed if elapsed > 0 else 0.0

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        elif time.monotonic() - self._last >= self.every_s:
            self._last = time.monotonic()
            of = f"/{self.total}" if self.total else ""
            print(f"predict: {self.done}{of} {self.unit}s, {self.rate():.2f} {self.unit}s/s", file=sys.stderr, flush=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
