"""Where a recipe run stands, read from its files alone: safe beside the process that runs
it, so a grid that spans hours (or sessions) can be checked at any time."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from hsl_tools.iterate import Recipe, finished


@dataclass
class RunStatus:
    stage: str  # "done", "not started", "SFT", "SFT evaluation", "HSL", ...
    progress: str  # e.g. "212/450 steps", "7/20 iterations"; "" where there is no count
    evaluation: str  # the newest finished evaluation and its success rates, or ""


def _last_step(log: Path) -> int:
    """The step of a train.jsonl's last line (0 when there is none yet)."""
    if not log.exists():
        return 0
    lines = log.read_text(encoding="utf-8").splitlines()
    return json.loads(lines[-1])["step"] if lines else 0


def _rates(folder: Path) -> str:
    summary = json.loads((folder / "summary.json").read_text(encoding="utf-8"))["summary"]
    return ", ".join(f"{split} {s['all']['success']:.1%}" for split, s in summary.items())


def newest_evaluation(recipe: Recipe) -> str:
    """The run's latest finished evaluation, in the order the run writes them."""
    run = Path(recipe.run.dir)
    folders = ["eval-sft", *(f"iter-{i:03d}/eval" for i in range(1, recipe.hsl.iterations + 1)),
               "eval-final", "eval-dpo"]
    written = [f for f in folders if (run / f / "summary.json").exists()]
    return f"{written[-1]}: {_rates(run / written[-1])}" if written else ""


def run_status(recipe: Recipe) -> RunStatus:
    """The stage a run is in (the first one not finished) and how far it got in it."""
    run, s, h, d = Path(recipe.run.dir), recipe.sft, recipe.hsl, recipe.dpo
    evaluation = newest_evaluation(recipe)

    def status(stage: str, progress: str = "") -> RunStatus:
        return RunStatus(stage, progress, evaluation)

    if finished(recipe):
        return status("done")
    if not (run / "sft" / "done").exists():
        if not (run / "sft").exists():
            return status("not started")
        total = s.steps or math.ceil(s.epochs * s.demos / s.batch_size)
        return status("SFT", f"{_last_step(run / 'sft' / 'train.jsonl')}/{total} steps")
    if not (run / "eval-sft" / "summary.json").exists():
        return status("SFT evaluation")
    done = sum((run / f"iter-{i:03d}" / "done").exists() for i in range(1, h.iterations + 1))
    if done < h.iterations:
        return status("HSL", f"{done}/{h.iterations} iterations")
    if h.iterations and not (run / "eval-final" / "summary.json").exists():
        return status("final evaluation")
    if not (run / "dpo" / "done").exists():
        steps = _last_step(run / "dpo" / "ckpt" / "train.jsonl")
        return status("DPO", f"{steps}/{d.steps} steps" if steps else "rollouts")
    return status("DPO evaluation")
