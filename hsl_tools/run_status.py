"""Where a recipe run stands, read from its files alone: safe beside the process that runs
it, so a grid that spans hours (or sessions) can be checked at any time."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

from hsl_tools.evaluate import SUMMARY, evaluated, read_summary
from hsl_tools.present import success_line
from hsl_tools.recipe import Recipe, finished
from hsl_tools.run_dir import EVAL_FINAL, EVAL_SFT, RunDir
from hsl_tools.run_lock import holder
from hsl_tools.train.loop import LOG

# stages in which a live process holds the run; between them (e.g. "SFT done" while a grid
# trains the other SFTs) none need be
WORKING = ("SFT", "SFT evaluation", "HSL", "final evaluation", "DPO", "DPO evaluation")


@dataclass
class RunStatus:
    stage: str  # "done", "not started", "SFT", "SFT evaluation", "HSL", ...
    progress: str  # e.g. "212/450 steps, ~25 min left", "7/20 iterations, ~9 min left"
    evaluation: str  # the newest finished evaluation and its success rates, or ""


def _steps(log: Path, total: int) -> str:
    """"212/450 steps, ~25 min left" from a train.jsonl (the median of its last 20 step times,
    so a step that spans a pause, e.g. a grid stopped with SIGSTOP, does not count); "" before
    the first step."""
    text = log.read_text(encoding="utf-8") if log.exists() else ""
    lines = text[:text.rfind("\n") + 1].splitlines()  # not a line being written right now
    if not lines:
        return ""
    recent = [json.loads(line) for line in lines[-20:]]
    step = recent[-1]["step"]
    seconds = sorted(r.get("seconds", 0.0) for r in recent)
    left = (total - step) * seconds[len(seconds) // 2]
    return f"{step}/{total} steps, ~{left / 60:.0f} min left"


def _iterations(run: RunDir, done: int, total: int) -> str:
    """"7/20 iterations, ~12 min left": the time from the median gap between the last few
    iterations' `done` markers (a median, so a pause between sessions does not count)."""
    marks = [run.evaluation(EVAL_SFT) / SUMMARY,
             *(run.iteration(i).marker for i in range(1, done + 1))]
    times = [m.stat().st_mtime for m in marks[-6:]]
    gaps = sorted(b - a for a, b in pairwise(times))
    text = f"{done}/{total} iterations"
    if not gaps:
        return text
    return text + f", ~{(total - done) * gaps[len(gaps) // 2] / 60:.0f} min left"


def newest_evaluation(recipe: Recipe) -> str:
    """The run's latest finished evaluation, in the order the run writes them."""
    written = [(name, s) for _, name, folder in recipe.folder.evaluations(recipe.hsl.iterations)
               if (s := read_summary(folder)) is not None]
    return f"{written[-1][0]}: {success_line(written[-1][1])}" if written else ""


def run_status(recipe: Recipe) -> RunStatus:
    """The stage a run is in (the first one not finished) and how far it got in it."""
    run, s, h, d = recipe.folder, recipe.sft, recipe.hsl, recipe.dpo
    evaluation = newest_evaluation(recipe)

    def status(stage: str, progress: str = "") -> RunStatus:
        if stage in WORKING and holder(run.path) is None:  # e.g. a grid stopped mid-way
            progress = f"{progress}, not running" if progress else "not running"
        return RunStatus(stage, progress, evaluation)

    if finished(recipe):
        return status("done")
    if not run.sft.done:
        if not run.sft.path.exists():
            return status("not started")
        total = s.steps or math.ceil(s.epochs * s.demos / s.batch_size)
        return status("SFT", _steps(run.sft.path / LOG, total))
    if not evaluated(run.evaluation(EVAL_SFT)):
        return status("SFT evaluation")
    if h.iterations and not run.iteration(1).path.exists():
        return status("SFT done")  # a grid trains every SFT before it starts any HSL
    done = sum(run.iteration(i).done for i in range(1, h.iterations + 1))
    if done < h.iterations:
        return status("HSL", _iterations(run, done, h.iterations))
    if h.iterations and not evaluated(run.evaluation(EVAL_FINAL)):
        return status("final evaluation")
    if not run.dpo.path.exists():
        return status("HSL done" if h.iterations else "SFT done")
    if not run.dpo.done:
        return status("DPO", _steps(run.dpo.ckpt / LOG, d.steps) or "rollouts")
    return status("DPO evaluation")
