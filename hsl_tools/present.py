"""What the command line prints: every table and summary line in one place, so the library
returns data and the CLI stays a table of commands."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.console import RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from hsl_tools.envs.base import EnvError
from hsl_tools.errors import one_line

if TYPE_CHECKING:
    from hsl_tools.records import Demo
    from hsl_tools.relabel.stages import StageStats
    from hsl_tools.run_dir import RunDir
    from hsl_tools.run_status import RunStatus


def titled(title: str) -> Table:
    """A table whose title stays on one line: a narrow table (one outcome column) would
    otherwise wrap its title to its own width."""
    return Table(title=title, min_width=len(title) + 4)


def success_line(summary: dict) -> str:
    """A summary in one line: "seen 7.8%, unseen 3.1%"."""
    return ", ".join(f"{split} {cells['all']['success']:.1%}" for split, cells in summary.items())


def summary_table(summary: dict[str, dict[str, dict[str, float]]], title: str,
                  scored: bool = False) -> Table:
    """Rows: goal types (then all); columns: success per split, with episode counts, and with
    `scored` (an environment whose rewards give partial credit) the score, 100 x mean
    reward."""
    table = titled(title)
    table.add_column("goal type")
    splits = list(summary)
    for split in splits:
        if scored:
            table.add_column(f"{split} score", justify="right")
        table.add_column(f"{split} success", justify="right")
        table.add_column(f"{split} steps", justify="right")
    groups = sorted({g for s in splits for g in summary[s]} - {"all"}) + ["all"]
    for group in groups:
        row = [group]
        for split in splits:
            cell = summary[split].get(group)
            if scored:
                row.append(f"{100 * cell['mean_reward']:.1f}" if cell else "")
            row += ([f"{cell['success']:.1%} of {cell['episodes']:.0f}",
                     f"{cell['mean_steps']:.1f}"] if cell else ["", ""])
        table.add_row(*row, style="bold" if group == "all" else None)
    return table


def percent(rate: float | None) -> str:
    """A rate as a percentage, or a dash where it is undefined."""
    return "—" if rate is None else f"{rate:.1%}"


def check_table(report: dict, title: str) -> Table:
    table = titled(title)
    for column in ("goal type", "named", "true", "precision", "recall", "S(k) exact"):
        table.add_column(column, justify="left" if column == "goal type" else "right")
    rows = list(report["per_type"].items()) + [("all", report["overall"])]
    for kind, r in rows:
        table.add_row(kind, str(r["tp"] + r["fp"]), str(r["tp"] + r["fn"]),
                      percent(r["precision"]), percent(r["recall"]), percent(r["step_exact"]),
                      style="bold" if kind == "all" else None)
    if report.get("measures"):
        table.caption = "mean over the goals named: " + ", ".join(
            f"{name} {value:.3g}" for name, value in report["measures"].items())
    return table


def stage_lines(stats: StageStats, out: Path, what: str, failures: Path) -> list[str]:
    """What a relabel or mask stage did, in a few lines: counts, where failures went, goals
    kept unverified and why."""
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.per_type.items()))
    lines = [f"wrote {stats.outputs} new {what} to {out} from {stats.inputs} inputs "
             f"({stats.resumed} resumed, {stats.empty} with none, {stats.failures} failed, "
             f"{stats.rejected} refuted by the environment, {stats.seconds:.1f} s)"
             f"{': ' + kinds if kinds else ''}"]
    if stats.failures or stats.rejected:
        lines.append(f"failures and refuted goals, with the reasons: {failures}")
    lines += [f"{n} goals kept unverified (the environment cannot check them): "
              f"{one_line(EnvError(why))}" for why, n in stats.unverified.items()]
    return lines


def success_table(evals: dict[str, Any], title: str) -> Table:
    """Success per split (columns) of each evaluation of a run (rows)."""
    table = titled(title)
    splits = sorted({s for summary in evals.values() for s in summary})
    table.add_column("checkpoint")
    for split in splits:
        table.add_column(split, justify="right")
    for name, summary in evals.items():
        table.add_row(name, *(f"{summary[s]['all']['success']:.1%} of "
                              f"{summary[s]['all']['episodes']:.0f}" if s in summary else ""
                              for s in splits))
    return table


def status_table(runs: dict[str, RunStatus]) -> Table:
    """Where each run of a grid stands; 80 columns hold a row on two lines."""
    table = Table(box=box.SIMPLE_HEAD, show_edge=False)
    table.add_column("run", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("progress")
    table.add_column("newest evaluation")
    for name, s in runs.items():
        table.add_row(name, s.stage, s.progress, s.evaluation)
    done = sum(s.stage == "done" for s in runs.values())
    table.caption = f"{done} of {len(runs)} run(s) done"
    return table


def outcome_table(outcomes: dict[str, Counter[str]], title: str) -> Table:
    """Evaluation episodes by what they came to (the environment's oracle), one row per
    method: a failure that achieved something is HSL's raw material."""
    from hsl_tools.report.runs import outcome_kinds

    kinds = outcome_kinds(outcomes.values())
    table = titled(title)
    table.add_column("evaluation")
    for kind in kinds:
        table.add_column(kind, justify="right")
    for name, counts in outcomes.items():
        total = sum(counts.values()) or 1
        table.add_row(name, *(f"{counts[k]} ({counts[k] / total:.0%})" for k in kinds))
    return table


def yield_table(lines: list[dict[str, Any]]) -> Table:
    """Each HSL iteration's rollouts and what the relabeler made of them."""
    table = titled("HSL iterations: the agent's rollouts, relabeled")
    for column in ("iteration", "episodes", "won", "relabeled demos", "buffer", "loss"):
        table.add_column(column, justify="right")
    for m in lines:
        table.add_row(str(m["iteration"]), str(m["trajectories"]), f"{m['success']:.0%}",
                      str(m["new_demos"]), str(m["buffer"]), f"{m['loss']:.3f}")
    return table


def demo_panel(demo: Demo) -> Panel:
    """A hindsight demo as the agent is trained on it: the relabeled goal, then each action,
    those the masker found needed in bold (they carry the loss), the rest struck out."""
    body = Text()
    body.append(f"goal (relabeled): {demo.instruction}\n", style="bold")
    for i, step in enumerate(demo.steps, 1):
        body.append(f"{i:>3} > {step.action}", style="bold green" if step.relevant
                    else "strike dim")
        body.append("\n" if step.relevant else "   (masked: no loss)\n")
    return Panel(body, title=f"{demo.id} · {demo.n_relevant} of {demo.n_actions} actions "
                             "needed", title_align="left")


def run_story(run: RunDir, methods: dict[str, str]) -> list[RenderableType]:
    """What HSL changed in a finished run, beyond success: what each evaluation's episodes
    came to, what the relabeler made of each iteration's rollouts, and one relabeled demo
    as the agent is trained on it (`methods`: the run's evaluations by folder)."""
    from hsl_tools.evaluate import EPISODES
    from hsl_tools.records import Demo, read_records
    from hsl_tools.report.runs import outcomes_of

    shown: list[RenderableType] = []
    outcomes = {method: outcomes_of(run.evaluation(name) / EPISODES)
                for name, method in methods.items() if (run.evaluation(name) / EPISODES).exists()}
    if outcomes:
        shown.append(outcome_table(outcomes, "what the evaluation episodes came to (oracle)"))
    if run.metrics.exists():
        lines = [json.loads(x) for x in run.metrics.read_text(encoding="utf-8").splitlines()]
        shown.append(yield_table(lines))
    demos = [d for it in run.iterations()[-1:] if it.demos.exists()
             for d in read_records(it.demos, Demo)]
    if demos:
        shown.append(demo_panel(min(demos, key=lambda d: d.n_relevant == d.n_actions)))
    return shown
