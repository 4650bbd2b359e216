"""One progress display for every long stage: a rich bar on a terminal, and plain lines
(stage, count, rate, time left) in a log or under `nohup`, where a bar draws nothing."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Protocol

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)


class Bar(Protocol):
    def advance(self, n: int = 1) -> None:
        """`n` items done by this run."""
        ...

    def skip(self, n: int) -> None:
        """`n` items already done (resumed): counted, but not in the rate."""
        ...


class RichBar:
    """A handle to advance one task of a rich progress display."""

    def __init__(self, progress: Progress, task: int) -> None:
        self._progress, self._task = progress, task

    def advance(self, n: int = 1) -> None:
        self._progress.advance(self._task, n)

    def skip(self, n: int) -> None:
        self._progress.advance(self._task, n)


class LineBar:
    """A line on stderr at most every `every` seconds, and one at the end."""

    def __init__(self, description: str, total: int, every: float) -> None:
        self.description, self.total, self.every = description, total, every
        self.done = self.skipped = 0
        self.started = self.last = time.monotonic()

    def skip(self, n: int) -> None:
        self.done += n
        self.skipped += n

    def advance(self, n: int = 1) -> None:
        self.done += n
        now = time.monotonic()
        if now - self.last >= self.every or self.done >= self.total:
            self.last = now
            self.line(now)

    def line(self, now: float) -> None:
        elapsed = now - self.started
        rate = (self.done - self.skipped) / elapsed if elapsed > 0 else 0.0
        left = f", {_clock((self.total - self.done) / rate)} left" if rate > 0 else ""
        print(f"{self.description}: {self.done}/{self.total}, {rate:.2f}/s, "
              f"{_clock(elapsed)} elapsed{left}", file=sys.stderr, flush=True)


def _clock(seconds: float) -> str:
    minutes, s = divmod(int(seconds), 60)
    hours, m = divmod(minutes, 60)
    return f"{hours}:{m:02d}:{s:02d}" if hours else f"{m}:{s:02d}"


@contextmanager
def progress_bar(description: str, total: int) -> Iterator[Bar]:
    """A bar with count, elapsed and remaining time on a terminal (removed when done);
    elsewhere a line every `$HSL_PROGRESS_EVERY` seconds (default 30)."""
    if not sys.stderr.isatty():
        yield LineBar(description, total, float(os.environ.get("HSL_PROGRESS_EVERY", "30")))
        return
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), transient=True) as progress:
        yield RichBar(progress, progress.add_task(description, total=total))
