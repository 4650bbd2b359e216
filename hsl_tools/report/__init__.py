"""`hsl report`: tables and plots from finished runs, in the shape of the paper's figures.

Reads only what runs leave on disk (recipe.json, eval-*/summary.json, iter-*/...) or an
earlier report's runs.json, groups evaluations by (method, number of ground-truth demos) and
gives mean ± std over seeds:

    success.png          success vs ground-truth demos per method (paper Figure 3)
    ablations.png        every method at the smallest budget side by side (Figure 4)
    goal_types.png       goal types of ground-truth vs relabeled demos; success per type (Figure 5)
    relabel_accuracy.png relabel precision / recall per goal type against the oracle (Figure 6)
    iterations.png       success over HSL iterations
    report.md            the same numbers as Markdown tables, each method's wins against what
                         it is tested against (Fisher's exact test), what failed evaluation
                         episodes achieved instead (the oracle's goals: the raw material of HSL),
                         and the HSL rollouts by ten iterations (thousands of episodes: a less
                         noisy view of learning than 64-episode evaluations)
    runs.json            what each run adds to the report (a few kB a run): a later report
                         reads it in place of the run folders, pooled with others
"""

from __future__ import annotations

from pathlib import Path

from hsl_tools.records import write_json
from hsl_tools.report.markdown import markdown
from hsl_tools.report.plots import plots
from hsl_tools.report.runs import RunArchive, pool, read_records_of


def write_report(sources: list[Path], out: Path, oracle: bool = True) -> list[Path]:
    """report.md, the PNG figures and runs.json (the run records, which a later report can
    read in place of the run folders) in `out`; returns the files written."""
    if not sources:
        raise ValueError("no run folders given")
    records = read_records_of(sources, oracle)
    data = pool(records)
    if not data.points:
        raise ValueError("none of the runs has a finished evaluation yet")
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(markdown(data), encoding="utf-8")
    archive = RunArchive(runs=records).model_dump(mode="json", by_alias=True)
    write_json(out / "runs.json", archive)
    return [out / "report.md", *plots(data, out), out / "runs.json"]


def update_report(runs: list[Path], out: Path, oracle: bool = True) -> list[Path]:
    """`write_report` of `runs` pooled with the runs OUT/runs.json already holds (a run read
    again replaces its record): a grid run a seed or a cell at a time, on machines that do
    not keep its folders, adds to one report instead of replacing it."""
    earlier = [out / "runs.json"] if (out / "runs.json").is_file() else []
    return write_report([*earlier, *runs], out, oracle)
