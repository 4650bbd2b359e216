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

import math
import statistics
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hsl_tools.envs.base import Environments, env_class
from hsl_tools.evaluate import EPISODES, read_summary
from hsl_tools.present import percent
from hsl_tools.records import (
    Demo,
    GoalRecord,
    RecordError,
    Trajectory,
    first_error,
    read_json,
    read_records,
    write_json,
)
from hsl_tools.relabel.check import check, rates
from hsl_tools.run_dir import EVAL_DPO, EVAL_FINAL, EVAL_SFT, Iteration, RunDir

SPLIT_ORDER = ("seen", "unseen", "test", "dev")  # splits found are shown in this order
SHORT = {"pick_and_place": "place", "look_at_obj_in_light": "look", "pick_clean_then_place":
         "clean", "pick_heat_then_place": "heat", "pick_cool_then_place": "cool",
         "pick_two_obj_and_place": "two"}


def _short(kinds: list[str]) -> list[str]:
    return [SHORT.get(k, k[:12]) for k in kinds]


class Point(BaseModel):
    """One evaluation of one run, and its episodes by outcome (the environment's `outcome`;
    oracle only)."""

    method: str
    demos: int
    seed: int
    run: str
    summary: dict[str, dict[str, dict[str, float]]]
    outcomes: Counter[str] = Counter()
    env: str = "household"

    def success(self, split: str, group: str = "all") -> float | None:
        cell = self.summary.get(split, {}).get(group)
        return None if cell is None else cell["success"]

    def score(self, split: str, group: str = "all") -> float | None:
        """100 x mean reward (WebShop's score), as a share like `success`."""
        cell = self.summary.get(split, {}).get(group)
        return None if cell is None else cell["mean_reward"]


class RunRecord(BaseModel):
    """What one run adds to a report. A report keeps these in its folder (runs.json), so a
    later report can pool runs whose folders are gone or on other machines."""

    dir: str  # the run's folder as its recipe names it: the same run wherever it is read
    points: list[Point] = []
    # (method label, iteration, success by split): the evaluations along the HSL iterations
    curve: list[tuple[str, int, dict[str, float]]] = []
    # (method label, final minus this run's own SFT by split)
    gains: list[tuple[str, dict[str, float]]] = []
    gt_types: Counter[str] = Counter()
    relabeled_types: Counter[str] = Counter()
    relabel_counts: dict[str, Counter[str]] = {}
    # (method label, first iteration of a block of ten, rollout counts; see `_add_rollouts`)
    rollouts: list[tuple[str, int, Counter[str]]] = []


class RunArchive(BaseModel):
    """runs.json: a report's run records by the run's folder (`RunRecord.dir`)."""

    schema_: Literal["hsl.report-runs/1"] = Field("hsl.report-runs/1", alias="schema")
    runs: dict[str, RunRecord]


@dataclass
class RunData:
    """The runs of a report pooled: what the tables and figures show."""

    points: list[Point] = field(default_factory=list)
    # ("method, N demos", iteration) -> successes by split, over runs and seeds
    curve: dict[tuple[str, int], dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    # ("method, N demos") -> final minus the same run's SFT, by split (paired: one SFT each)
    gains: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    gt_types: Counter[str] = field(default_factory=Counter)
    relabeled_types: Counter[str] = field(default_factory=Counter)
    relabel_counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # ("method, N demos") -> evaluation episodes by outcome (the environment's), all splits
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # ("method, N demos", first iteration of a block of ten) -> rollout counts (`_add_rollouts`)
    rollouts: dict[tuple[str, int], Counter[str]] = field(
        default_factory=lambda: defaultdict(Counter))

    @property
    def splits(self) -> tuple[str, ...]:
        """The evaluation splits the runs measured, seen and unseen (or test) first."""
        found = {s for p in self.points for s in p.summary}
        return tuple(sorted(found, key=lambda s: (SPLIT_ORDER + (s,)).index(s)))

    @property
    def graded(self) -> bool:
        """Whether some run's environment gives partial credit (then its score is shown)."""
        return any(env_class(env).graded for env in {p.env for p in self.points})


def outcome_kinds(counts: Iterable[Counter[str]]) -> list[str]:
    """The outcomes the environment named, won first and nothing last, the rest in the order
    they first appear (ALFWorld's: won, same object, other goal, nothing)."""
    seen = list(dict.fromkeys(k for c in counts for k in c))
    return sorted(seen, key=lambda k: (k != "won", k == "nothing"))


def load_runs(sources: list[Path], oracle: bool = True) -> RunData:
    """Everything the report shows, from run folders and earlier reports' runs.json files
    (a run read again, from either, replaces its earlier record). A method at one budget and
    seed counts once: runs that share an SFT stage all carry its evaluation. Runs that differ
    in settings the method name does not show need `run.label`. `oracle` replays trajectories
    for relabel accuracy and evaluation outcomes."""
    return pool(read_records_of(sources, oracle))


def read_records_of(sources: list[Path], oracle: bool = True) -> dict[str, RunRecord]:
    """Run records by run folder, read from run folders or runs.json files, in order."""
    records: dict[str, RunRecord] = {}
    for source in sources:
        found = read_archive(source).runs.values() if source.is_file() else [read_run(
            source, oracle)]
        for record in found:
            records.pop(record.dir, None)  # a later reading replaces it, and takes its place
            records[record.dir] = record
    return records


def read_archive(path: Path) -> RunArchive:
    """An earlier report's runs.json, with a one-line error naming the file and field."""
    try:
        return RunArchive.model_validate(read_json(path))
    except ValidationError as e:
        raise ValueError(f"{path}: {first_error(e, 'document')} (not a runs.json of hsl "
                         "report?)") from None


class _Part(BaseModel):
    model_config = ConfigDict(extra="allow")


class _Run(_Part):
    dir: str
    seed: int
    env: str = "household"


class _Sft(_Part):
    demos: int


class _Hsl(_Part):
    iterations: int


class RunRecipe(_Part):
    """What the report reads of a run's recipe.json (the rest is kept, unread)."""

    run: _Run
    sft: _Sft
    hsl: _Hsl
    methods: dict[str, str]


def read_run(run: Path, oracle: bool = True) -> RunRecord:
    """What one run folder adds to a report (unfinished evaluations are skipped)."""
    folder = RunDir(run)
    if not folder.recipe.exists():
        raise ValueError(f"{run}: no {folder.recipe.name} (not a run folder of hsl iterate)")
    try:
        recipe = RunRecipe.model_validate(read_json(folder.recipe))
    except ValidationError as e:
        raise RecordError(f"{folder.recipe}: {first_error(e, 'document')} (not a recipe of hsl "
                          "iterate?)") from None
    demos, seed, iterations = recipe.sft.demos, recipe.run.seed, recipe.hsl.iterations
    methods = recipe.methods
    record = RunRecord(dir=recipe.run.dir)
    for name, method in methods.items():
        if (summary := read_summary(folder.evaluation(name))) is not None:
            point = Point(method=method, demos=demos, seed=seed, run=run.name, summary=summary,
                          env=recipe.run.env)
            episodes = folder.evaluation(name) / EPISODES
            if oracle and episodes.exists():
                _add_outcomes(point.outcomes, episodes)
            record.points.append(point)
    final = methods.get(EVAL_FINAL)
    label = f"{final}, {demos} demos"
    if final:
        _add_curve(record, folder, label, iterations)
    if folder.expert.exists():
        record.gt_types.update(env_class(t.env).goal_type(t.instruction)
                               for t in read_records(folder.expert, Trajectory))
    for it in folder.iterations():
        if final and it.done and it.agent.exists():
            counts: Counter[str] = Counter(last=it.number)
            _add_rollouts(counts, it)
            first = (it.number - 1) // ROLLOUT_BLOCK * ROLLOUT_BLOCK + 1
            record.rollouts.append((label, first, counts))
        if it.demos.exists():
            record.relabeled_types.update(env_class(d.env or "household").goal_type(d.instruction)
                                          for d in read_records(it.demos, Demo))
        if oracle and it.goals.exists():
            report = check(read_records(it.agent, Trajectory),
                           read_records(it.goals, GoalRecord))
            for kind, c in report["per_type"].items():
                record.relabel_counts.setdefault(kind, Counter()).update(
                    {k: c[k] for k in ("tp", "fp", "fn")})
    return record


def pool(records: dict[str, RunRecord]) -> RunData:
    """The records of many runs as one report's data; a (method, demos, seed) evaluation
    that several runs carry (a shared SFT) counts once, from the first."""
    data = RunData()
    seen: set[tuple[str, int, int]] = set()
    for record in records.values():
        for point in record.points:
            if (point.method, point.demos, point.seed) not in seen:
                seen.add((point.method, point.demos, point.seed))
                data.points.append(point)
                if point.outcomes:
                    data.outcomes[f"{point.method}, {point.demos} demos"].update(point.outcomes)
        for method, i, by_split in record.curve:
            for split, value in by_split.items():
                data.curve[(method, i)][split].append(value)
        for method, by_split in record.gains:
            for split, value in by_split.items():
                data.gains[method][split].append(value)
        data.gt_types.update(record.gt_types)
        data.relabeled_types.update(record.relabeled_types)
        for kind, counts in record.relabel_counts.items():
            data.relabel_counts[kind].update(counts)
        for method, first, counts in record.rollouts:
            block = data.rollouts[(method, first)]
            block.update({k: v for k, v in counts.items() if k != "last"})
            block["last"] = max(block["last"], counts["last"])
    return data


def _add_outcomes(counts: Counter[str], episodes: Path) -> None:
    """Evaluation episodes by outcome, as their environment tells it from its oracle."""
    with Environments() as envs:
        for t in read_records(episodes, Trajectory):
            counts[envs[t.env].outcome(t)] += 1


ROLLOUT_BLOCK = 10  # iterations per row of the rollout table


def _add_rollouts(counts: Counter[str], iteration: Iteration) -> None:
    """Count a finished iteration's training rollouts: episodes, wins, steps, steps that had
    no effect, and goals the relabeler named (what HSL turns into demos)."""
    for t in read_records(iteration.agent, Trajectory):
        counts.update(episodes=1, won=int(t.success), steps=len(t.steps),
                      nothing=sum(s.observation.strip() == env_class(t.env).no_effect
                                  for s in t.steps))
    if iteration.goals.exists():
        counts["goals"] += sum(1 for _ in read_records(iteration.goals, GoalRecord))


def _add_curve(record: RunRecord, run: RunDir, method: str, iterations: int) -> None:
    for i, name, folder in run.evaluations(iterations):
        if name != EVAL_DPO and (summary := read_summary(folder)):
            record.curve.append((method, i, {split: cells["all"]["success"]
                                             for split, cells in summary.items()}))
    sft = read_summary(run.evaluation(EVAL_SFT))
    final = read_summary(run.evaluation(EVAL_FINAL))
    if sft and final:
        record.gains.append((method, {split: final[split]["all"]["success"] -
                                      sft[split]["all"]["success"]
                                      for split in final if split in sft}))


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def _fmt(values: list[float], sign: bool = False) -> str:
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{100 * m:{'+' if sign else ''}.1f} ± {100 * s:.1f} (n={len(values)})"


def grouped(points: list[Point]) -> dict[tuple[str, int], list[Point]]:
    groups: dict[tuple[str, int], list[Point]] = defaultdict(list)
    for p in points:
        groups[(p.method, p.demos)].append(p)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])))


def _values(points: list[Point], split: str, group: str = "all", score: bool = False
            ) -> list[float]:
    return [v for p in points if (v := (p.score if score else p.success)(split, group))
            is not None]


def _pair(point: Point, splits: tuple[str, ...]) -> str:
    """One evaluation's success on each split, as "seen / unseen", in %."""
    rates = [point.success(split) for split in splits]
    return " / ".join("–" if r is None else f"{100 * r:.1f}" for r in rates)


def _by_budget(label: str) -> tuple[int, str]:
    """Sort key of a "method, N demos" label: by budget, then method."""
    method, _, demos = label.rpartition(", ")
    return int(demos.split()[0]), method


def wins(points: list[Point], splits: tuple[str, ...]) -> tuple[int, int]:
    """(episodes won, episodes) over the points' evaluations of `splits`, seeds pooled."""
    cells = [p.summary[s]["all"] for p in points for s in splits if s in p.summary]
    return (round(sum(c["success"] * c["episodes"] for c in cells)),
            round(sum(c["episodes"] for c in cells)))


def fisher_exact(a: int, n: int, b: int, m: int) -> float:
    """Two-sided p of Fisher's exact test for a wins of n against b wins of m: the chance,
    if both won at one rate, of a split of the a + b wins at most as likely as this one."""
    total = a + b

    def chance(x: int) -> float:
        return math.comb(n, x) * math.comb(m, total - x) / math.comb(n + m, total)

    observed = chance(a) * (1 + 1e-9)  # tables as likely as this one, up to rounding
    return min(1.0, sum(c for x in range(max(0, total - m), min(n, total) + 1)
                        if (c := chance(x)) <= observed))


def references(method: str) -> tuple[str, ...]:
    """What a method is compared with at its own budget: SFT, which it starts from; the same
    extra steps on ground truth alone; full HSL, for its ablations; DPO, for DPO after HSL."""
    if method == "SFT":
        return ()
    if method.startswith("DPO"):
        return ("SFT",) if method == "DPO" else ("DPO",)
    if method == "SFT (same steps)":
        return ("SFT",)
    if method == "SFT+HSL":
        return ("SFT", "SFT (same steps)")
    return ("SFT", "SFT (same steps)", "SFT+HSL")


def comparisons(groups: dict[tuple[str, int], list[Point]], splits: tuple[str, ...]
                ) -> list[str]:
    """Table rows: each method's wins against each reference at its budget (and SFT+HSL's
    against SFT on the most demos), per split and both pooled, with Fisher's p (seeds pooled:
    this tests the noise of the success rate, not the spread between seeds). Only the seeds
    both sides ran count, named where one side has more: seeds differ by more than methods."""
    rows = []
    top = max((d for m, d in groups if m == "SFT"), default=0)
    for (m, d), ps in groups.items():
        against = [(r, d) for r in references(m)]
        if m == "SFT+HSL" and d < top:  # the paper's "a quarter of the demos + HSL" claim
            against.append(("SFT", top))
        for ref, ref_demos in (key for key in against if key in groups):
            refs = groups[(ref, ref_demos)]
            seeds = {p.seed for p in ps} & {p.seed for p in refs}
            mine, theirs = ([p for p in side if p.seed in seeds] for side in (ps, refs))
            if not seeds:
                continue
            cells = []
            for among in [(s,) for s in splits] + [splits] * (len(splits) > 1):
                (a, n), (b, k) = wins(mine, among), wins(theirs, among)
                cells.append(f"{a}/{n} vs {b}/{k}, p = {fisher_exact(a, n, b, k):.2f}"
                             if n and k else "–")
            name = ref if ref_demos == d else f"{ref}, {ref_demos} demos"
            if len(mine) < len(ps) or len(theirs) < len(refs):
                name += f" (seed{'s' * (len(seeds) > 1)} {', '.join(map(str, sorted(seeds)))})"
            rows.append(f"| {m}, {d} demos | {name} | " + " | ".join(cells) + " |")
    return rows


def markdown(data: RunData) -> str:
    """The report's tables."""
    groups, splits = grouped(data.points), data.splits
    # (heading, score?) per column: with partial credit (WebShop), the score before success
    columns = [(f"{s} score", True) for s in splits if data.graded] + \
        [(s if not data.graded else f"{s} success", False) for s in splits]
    columns.sort(key=lambda c: splits.index(c[0].split()[0]))
    lines = ["# Results", "", "Success rate in % (mean ± std over seeds)" + (
             "; score: 100 x mean reward" if data.graded else "") + ".", "",
             "## Success by method and number of ground-truth demos", "",
             "| method | demos | " + " | ".join(c for c, _ in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    lines += [f"| {m} | {d} | " + " | ".join(
        _fmt(_values(ps, c.split()[0], score=score)) for c, score in columns) + " |"
        for (m, d), ps in groups.items()]
    seeds = sorted({p.seed for p in data.points})
    if len(seeds) > 1:  # the spread behind each ± above, seed by seed
        lines += ["", f"## Success by seed ({' / '.join(splits)})", "",
                  "| method | demos | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "|---|---:|" + "---:|" * len(seeds)]
        for (m, d), ps in groups.items():
            by_seed = {p.seed: p for p in ps}
            cells = [_pair(by_seed[s], splits) if s in by_seed else "–" for s in seeds]
            lines.append(f"| {m} | {d} | " + " | ".join(cells) + " |")
    types = sorted({g for p in data.points for s in p.summary.values() for g in s} - {"all"})
    if types:
        lines += ["", f"## Success on {splits[-1]} by goal type", "",
                  "| method | demos | " + " | ".join(types) + " |",
                  "|---|---:|" + "---:|" * len(types)]
        for (m, d), ps in groups.items():
            cells = [_fmt(_values(ps, splits[-1], t)).split(" (")[0] for t in types]
            lines.append(f"| {m} | {d} | " + " | ".join(cells) + " |")
    if data.gt_types or data.relabeled_types:
        gt, rl = sum(data.gt_types.values()) or 1, sum(data.relabeled_types.values()) or 1
        lines += ["", "## Goal types of the demos", "",
                  "| goal type | ground truth | relabeled |", "|---|---:|---:|"]
        for t in sorted(set(data.gt_types) | set(data.relabeled_types)):
            lines.append(f"| {t} | {100 * data.gt_types[t] / gt:.1f} % | "
                         f"{100 * data.relabeled_types[t] / rl:.1f} % |")
    if data.relabel_counts:
        lines += ["", "## Relabel accuracy as the environment judges it", "",
                  "| goal type | named | true | precision | recall |", "|---|---:|---:|---:|---:|"]
        for kind, c in sorted(data.relabel_counts.items()):
            r = rates(c)
            lines.append(f"| {kind} | {c['tp'] + c['fp']} | {c['tp'] + c['fn']} | "
                         f"{percent(r['precision'])} | {percent(r['recall'])} |")
    if data.outcomes:
        kinds = outcome_kinds(data.outcomes.values())
        lines += ["", "## What evaluation episodes achieved (the environment's account; "
                  "splits pooled)", "",
                  "Failed episodes that achieved a goal are what HSL relabels: the agent did "
                  "something, not what it was asked.", "",
                  "| method, demos | episodes | " + " | ".join(
                      k if k == "won" else f"failed: {k}" for k in kinds) + " |",
                  "|---|---:|" + "---:|" * len(kinds)]
        for m, c in sorted(data.outcomes.items(), key=lambda kv: _by_budget(kv[0])):
            n = sum(c.values())
            lines.append(f"| {m} | {n} | " + " | ".join(f"{100 * c[k] / n:.1f} %"
                                                        for k in kinds) + " |")
    if data.gains:
        lines += ["", "## Change from each run's own SFT, in points (paired)", "",
                  "| method, demos | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
        for m, by_split in sorted(data.gains.items(), key=lambda kv: _by_budget(kv[0])):
            lines.append(f"| {m} | " + " | ".join(_fmt(by_split[s], sign=True) for s in splits)
                         + " |")
    if rows := comparisons(groups, splits):
        lines += ["", "## Wins against what each method starts from or is tested against", "",
                  "Episodes won, pooled over the seeds both sides ran (named where one ran "
                  "more), with the two-sided p of Fisher's exact test (the chance of a gap at "
                  "least this unlikely if both won at one rate).", "",
                  "| method, demos | against | " + " | ".join(splits) + " |" + (
                      " all splits |" if len(splits) > 1 else ""),
                  "|---|---|" + "---:|" * (len(splits) + (len(splits) > 1)), *rows]
    if data.rollouts:
        lines += ["", f"## HSL training rollouts by {ROLLOUT_BLOCK} iterations (runs pooled)", "",
                  "| method, demos | iterations | episodes | won | goals named per episode | "
                  "steps answered \"Nothing happens.\" |", "|---|---|---:|---:|---:|---:|"]
        for (m, first), c in sorted(data.rollouts.items(),
                                    key=lambda kv: (_by_budget(kv[0][0]), kv[0][1])):
            lines.append(f"| {m} | {first}–{c['last']} | {c['episodes']} | "
                         f"{100 * c['won'] / c['episodes']:.1f} % | "
                         f"{c['goals'] / c['episodes']:.2f} | "
                         f"{100 * c['nothing'] / max(1, c['steps']):.1f} % |")
    if data.curve:
        lines += ["", "## Success over HSL iterations (0 = after SFT)", "",
                  "| method, demos | iteration | " + " | ".join(splits) + " |",
                  "|---|---:|" + "---:|" * len(splits)]
        for (m, i), by_split in sorted(data.curve.items(),
                                       key=lambda kv: (_by_budget(kv[0][0]), kv[0][1])):
            lines.append(f"| {m} | {i} | " + " | ".join(_fmt(by_split[s]) for s in splits)
                         + " |")
    return "\n".join(lines) + "\n"


def plots(data: RunData, out: Path) -> list[Path]:
    """The report's figures as PNG files in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    written = []

    def save(fig: Any, name: str) -> None:
        fig.tight_layout()
        fig.savefig(out / name, dpi=110)
        plt.close(fig)
        written.append(out / name)

    groups, splits = grouped(data.points), data.splits
    methods = sorted({m for m, _ in groups})
    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4), sharey=True,
                             squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        for m in methods:
            xs = sorted(d for mm, d in groups if mm == m)
            stats = [mean_std(_values(groups[(m, d)], split) or [0.0]) for d in xs]
            ax.errorbar(xs, [100 * a for a, _ in stats], yerr=[100 * b for _, b in stats],
                        marker="o", capsize=3, label=m)
        ax.set(title=split, xlabel="ground-truth demos", ylabel="success %")
    axes[0][0].legend(fontsize=8)
    save(fig, "success.png")

    smallest = min((d for _, d in groups), default=0)
    at_smallest = [(m, ps) for (m, d), ps in groups.items() if d == smallest]
    fig, ax = plt.subplots(figsize=(10, 4))
    width = 0.4
    for k, split in enumerate(splits):
        stats = [mean_std(_values(ps, split) or [0.0]) for _, ps in at_smallest]
        ax.bar([i + k * width for i in range(len(at_smallest))], [100 * a for a, _ in stats],
               width, yerr=[100 * b for _, b in stats], capsize=3, label=split)
    ax.set_xticks([i + width / 2 for i in range(len(at_smallest))],
                  [m for m, _ in at_smallest], rotation=20, fontsize=8)
    ax.set(title=f"methods at {smallest} ground-truth demos", ylabel="success %")
    ax.legend()
    save(fig, "ablations.png")

    types = sorted(set(data.gt_types) | set(data.relabeled_types))
    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for k, (name, counter) in enumerate((("ground truth", data.gt_types),
                                         ("relabeled", data.relabeled_types))):
        total = sum(counter.values()) or 1
        left.bar([i + k * width for i in range(len(types))],
                 [100 * counter[t] / total for t in types], width, label=name)
    left.set_xticks([i + width / 2 for i in range(len(types))], _short(types))
    left.set(title="goal types of the demos", ylabel="% of demos")
    left.legend()
    outcome_types = sorted({g for p in data.points for s in p.summary.values() for g in s}
                           - {"all"})
    step = 0.8 / max(1, len(methods))
    for k, m in enumerate(methods):
        ps = [p for (mm, _), group in groups.items() if mm == m for p in group]
        right.bar([i + k * step for i in range(len(outcome_types))],
                  [100 * statistics.fmean(_values(ps, splits[-1], t) or [0.0])
                   for t in outcome_types], step, label=m)
    right.set_xticks([i + step * (len(methods) - 1) / 2 for i in range(len(outcome_types))],
                     _short(outcome_types))
    right.set(title=f"success on {splits[-1]} by goal type (all budgets)", ylabel="success %")
    right.legend(fontsize=7)
    save(fig, "goal_types.png")

    kinds = sorted(data.relabel_counts)
    fig, ax = plt.subplots(figsize=(8, 4))
    for k, metric in enumerate(("precision", "recall")):
        ax.bar([i + k * width for i in range(len(kinds))],
               [100 * (rates(data.relabel_counts[t])[metric] or 0.0) for t in kinds], width,
               label=metric)
    ax.set_xticks([i + width / 2 for i in range(len(kinds))], _short(kinds))
    ax.set(title="relabel accuracy as the environment judges it", ylabel="%", ylim=(0, 105))
    ax.legend()
    save(fig, "relabel_accuracy.png")

    fig, axes = plt.subplots(1, len(splits), figsize=(5 * len(splits), 4), sharey=True,
                             squeeze=False)
    for ax, split in zip(axes[0], splits, strict=True):
        for m in sorted({m for m, _ in data.curve}):
            its = sorted(i for mm, i in data.curve if mm == m)
            stats = [mean_std(data.curve[(m, i)][split] or [0.0]) for i in its]
            ax.errorbar(its, [100 * a for a, _ in stats], yerr=[100 * b for _, b in stats],
                        marker="o", capsize=3, label=m)
        ax.set(title=split, xlabel="HSL iteration", ylabel="success %")
    axes[0][0].legend(fontsize=8)
    save(fig, "iterations.png")
    return written


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
