"""What the command line prints: every table and summary line in one place, so the library
returns data and the CLI stays a table of commands."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich import box
from rich.table import Table

from hsl_tools.envs.base import EnvError
from hsl_tools.errors import one_line

if TYPE_CHECKING:
    from hsl_tools.relabel.stages import StageStats
    from hsl_tools.run_status import RunStatus


def success_line(summary: dict) -> str:
    """A summary in one line: "seen 7.8%, unseen 3.1%"."""
    return ", ".join(f"{split} {cells['all']['success']:.1%}" for split, cells in summary.items())


def summary_table(summary: dict[str, dict[str, dict[str, float]]], title: str,
                  scored: bool = False) -> Table:
    """Rows: goal types (then all); columns: success per split, with episode counts, and with
    `scored` (an environment whose rewards give partial credit) the score, 100 x mean
    reward."""
    table = Table(title=title)
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
    table = Table(title=title)
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
    table = Table(title=title)
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
