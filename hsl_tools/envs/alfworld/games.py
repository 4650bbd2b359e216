"""Where the ALFWorld games are: `$ALFWORLD_DATA`, its splits, and the task ids within them.

A task id is a game's folder relative to its split ("pick_two_obj_and_place-Pillow-None-Sofa-
219/trial_T20190907_163327_486300"), the form ETO's game-file lists use. Folders without a
`game.tw-pddl` (movable-receptacle and sliced tasks, which ALFWorld's text games leave out) are
not tasks.
"""

from __future__ import annotations

import hashlib
import os
from functools import cache
from pathlib import Path

from hsl_tools.envs.alfworld_family import SPLIT_FOLDERS
from hsl_tools.envs.base import EnvError

GAME_FILE = "game.tw-pddl"


class DataMissing(EnvError):
    """The ALFWorld game files are not where `$ALFWORLD_DATA` says."""


def data_root() -> Path:
    """The `json_2.1.1` folder under `$ALFWORLD_DATA`, or a one-line error saying how to get it."""
    value = os.environ.get("ALFWORLD_DATA")
    if not value:
        raise DataMissing("ALFWORLD_DATA is not set: run `alfworld-download` and export "
                          "ALFWORLD_DATA=<the folder it filled> (it holds json_2.1.1/)")
    root = Path(value).expanduser() / "json_2.1.1"
    if not root.is_dir():
        raise DataMissing(f"ALFWORLD_DATA={value} holds no json_2.1.1/ folder: run "
                          f"`alfworld-download` or point ALFWORLD_DATA at its output")
    return root


@cache
def task_ids(split: str) -> tuple[str, ...]:
    """Every game of a split in a fixed shuffled order (by a hash of the id), so that `-n N`
    always means the same N games, of every task type (sorted names group them by type)."""
    folder = data_root() / SPLIT_FOLDERS[split]
    if not folder.is_dir():
        raise DataMissing(f"{folder} is missing: this ALFWORLD_DATA lacks the {split!r} split "
                          f"(`alfworld-download` fetches all of them)")
    ids = (str(p.parent.relative_to(folder)) for p in folder.glob(f"*/*/{GAME_FILE}"))
    return tuple(sorted(ids, key=lambda t: hashlib.sha256(t.encode()).hexdigest()))


def _path(split: str, task_id: str) -> Path:
    return data_root() / SPLIT_FOLDERS[split] / task_id / GAME_FILE


def game_file(split: str, task_id: str) -> Path:
    path = _path(split, task_id)
    if not path.is_file():
        raise ValueError(f"no ALFWorld game {task_id!r} in split {split!r} ({path} is missing)")
    return path


def split_of(task_id: str) -> str:
    """The split that holds a game, given only its id (imported dumps name no split)."""
    for split in SPLIT_FOLDERS:
        if _path(split, task_id).is_file():
            return split
    raise ValueError(f"no ALFWorld game {task_id!r} in any split under {data_root()}")
