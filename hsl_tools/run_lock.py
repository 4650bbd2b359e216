"""One process per run folder. A second `hsl iterate` (or grid worker) on a folder already being
run would interleave its writes with the first's, so a run holds an exclusive lock on
RUN/.lock while it works. The kernel drops the lock when the holder dies, however it dies, so a
killed run never leaves a stale lock to clear by hand."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class FolderInUse(RuntimeError):
    """Another live process holds the folder's lock."""


@contextmanager
def exclusive(folder: Path, wait: bool = False) -> Iterator[None]:
    """Hold FOLDER/.lock for the block; raise FolderInUse, naming the holder's pid, if it is
    held (or with `wait`, wait for it: for files that runs share, as a demo cache)."""
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / ".lock").open("a+", encoding="utf-8") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "unknown"
            raise FolderInUse(f"{folder} is in use by another hsl process (pid {holder}); let "
                              "it finish or stop it, then run again to continue") from None
        f.seek(0)
        f.truncate()
        f.write(f"{os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:  # a holder that ends (not one killed) leaves no pid behind
            f.seek(0)
            f.truncate()


def holder(folder: Path) -> int | None:
    """The pid of the live process holding the folder, else None. Read from the lock file, not
    by trying the lock, which would refuse the holder's own start for that instant. (A killed
    holder's pid stays in the file; a dead pid counts as none.)"""
    try:
        pid = int((folder / ".lock").read_text(encoding="utf-8"))
    except (FileNotFoundError, ValueError):
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:  # alive, another user's
        pass
    return pid
