"""The layout of a run folder of `hsl iterate`: every name in one is spelled here, and only here
(the loop writes it, a grid shares its start, `hsl grid --status` and `hsl report` read it).

    model0/      the starting model          expert.jsonl  ground-truth demos
    sft/         SFT checkpoint, done        eval-sft/     its evaluation
    iter-001/    agent.jsonl goals.jsonl demos.jsonl ckpt/ [eval/] done
    buffer.jsonl the hindsight buffer D'     metrics.jsonl one line per iteration
    dpo/         agent.jsonl ckpt/ done      eval-dpo/     (with [dpo] steps > 0)
    recipe.json  the resolved recipe, which `hsl report` reads
    grid.log     the run's output when `hsl grid --jobs N` runs it in a worker
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

# the run's evaluations, by folder (recipe.json names each one's method under these keys)
EVAL_SFT, EVAL_FINAL, EVAL_DPO = "eval-sft", "eval-final", "eval-dpo"
# what a run holds once its SFT stage is done, and can be handed to a run that starts alike;
# "sft" last: its `done` marker tells a resumed run the whole stage is there
SHARED_START = ("model0", "expert.jsonl", EVAL_SFT, "sft")
_ITERATION = re.compile(r"iter-(\d{3,})")


class _Entry:
    """A fixed name inside a folder object's `path`: the layout reads as a table."""

    def __init__(self, name: str, doc: str = "") -> None:
        self.name, self.__doc__ = name, doc or None

    def __get__(self, folder: Stage | RunDir, owner: type | None = None) -> Path:
        return folder.path / self.name


@dataclass(frozen=True)
class Stage:
    """A folder of the run whose work ends with its `done` marker (sft/, dpo/, iter-NNN/)."""

    path: Path
    marker = _Entry("done", "written when the stage's work is whole")
    agent = _Entry("agent.jsonl", "the agent's rollouts (an iteration's; DPO's rejected side)")
    ckpt = _Entry("ckpt")

    @property
    def done(self) -> bool:
        return self.marker.exists()

    def mark_done(self) -> None:
        self.marker.write_text("")


@dataclass(frozen=True)
class Iteration(Stage):
    """iter-NNN/: one HSL iteration (collect -> relabel -> mask -> train [-> eval])."""

    number: int
    goals = _Entry("goals.jsonl")
    demos = _Entry("demos.jsonl")
    eval = _Entry("eval", "the evaluation after this iteration (with eval.every)")

    @property
    def eval_name(self) -> str:
        """The evaluation's name as the loop prints it, e.g. "iter-003/eval"."""
        return f"{self.path.name}/{self.eval.name}"


@dataclass(frozen=True)
class RunDir:
    """A run folder: its files by what they are."""

    path: Path
    recipe = _Entry("recipe.json")
    model0 = _Entry("model0", "the starting model")
    expert = _Entry("expert.jsonl", "the ground-truth demos' trajectories")
    buffer = _Entry("buffer.jsonl", "the hindsight buffer D'")
    metrics = _Entry("metrics.jsonl", "one line per iteration")
    grid_log = _Entry("grid.log")

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    @property
    def sft(self) -> Stage:
        """SFT's stage; its folder is the checkpoint itself."""
        return Stage(self.path / "sft")

    @property
    def dpo(self) -> Stage:
        return Stage(self.path / "dpo")

    def evaluation(self, name: str) -> Path:
        """The folder of evaluation `name` (EVAL_SFT, EVAL_FINAL, EVAL_DPO)."""
        return self.path / name

    def iteration(self, number: int) -> Iteration:
        return Iteration(self.path / f"iter-{number:03d}", number)

    def iterations(self) -> list[Iteration]:
        """The iteration folders on disk, in order."""
        found = (_ITERATION.fullmatch(p.name) for p in self.path.glob("iter-*") if p.is_dir())
        return sorted((self.iteration(int(m[1])) for m in found if m), key=lambda i: i.number)

    def evaluations(self, iterations: int) -> list[tuple[int, str, Path]]:
        """(iteration, name, folder) of every evaluation a run of `iterations` may write, in
        the order it writes them (those between iterations only with `eval.every`)."""
        steps = [self.iteration(i) for i in range(1, iterations + 1)]
        return [(0, EVAL_SFT, self.evaluation(EVAL_SFT)),
                *((i.number, i.eval_name, i.eval) for i in steps),
                (iterations, EVAL_FINAL, self.evaluation(EVAL_FINAL)),
                (iterations, EVAL_DPO, self.evaluation(EVAL_DPO))]
