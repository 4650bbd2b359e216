"""Reading runs for a report: every evaluation, the HSL curve and rollouts of a run folder,
its relabel accuracy replayed against the environment's oracle, and the runs.json archive
that keeps what each run adds when its folder is gone."""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from hsl_tools.envs.base import Environments, env_class
from hsl_tools.evaluate import EPISODES, read_summary
from hsl_tools.records import (
    Demo,
    GoalRecord,
    RecordError,
    Trajectory,
    first_error,
    read_json,
    read_records,
)
from hsl_tools.relabel.check import check
from hsl_tools.run_dir import EVAL_DPO, EVAL_FINAL, EVAL_SFT, Iteration, RunDir

SPLIT_ORDER = ("seen", "unseen", "test", "dev")  # splits found are shown in this order


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
    # split -> task id -> the episode's reward, where the environment gives partial credit:
    # what a paired test of two checkpoints' scores on the same goals reads
    rewards: dict[str, dict[str, float]] = {}

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
    # the same evaluations' mean reward, where the environment gives partial credit (WebShop)
    score_curve: list[tuple[str, int, dict[str, float]]] = []
    # (method label, final minus this run's own SFT by split)
    gains: list[tuple[str, dict[str, float]]] = []
    gt_types: Counter[str] = Counter()
    relabeled_types: Counter[str] = Counter()
    relabel_counts: dict[str, Counter[str]] = {}
    # (method label, first iteration of a block of ten, rollout counts; see `rollout_counts`)
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
    # the same for the mean reward, where the environment gives partial credit
    score_curve: dict[tuple[str, int], dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    # ("method, N demos") -> final minus the same run's SFT, by split (paired: one SFT each)
    gains: dict[str, dict[str, list[float]]] = field(
        default_factory=lambda: defaultdict(lambda: defaultdict(list)))
    gt_types: Counter[str] = field(default_factory=Counter)
    relabeled_types: Counter[str] = field(default_factory=Counter)
    relabel_counts: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # ("method, N demos") -> evaluation episodes by outcome (the environment's), all splits
    outcomes: dict[str, Counter[str]] = field(default_factory=lambda: defaultdict(Counter))
    # ("method, N demos", first iteration of a block of ten) -> rollout counts (`rollout_counts`)
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
                point.outcomes.update(outcomes_of(episodes))
            if env_class(recipe.run.env).graded and episodes.exists():
                for t in read_records(episodes, Trajectory):
                    point.rewards.setdefault(t.split, {})[t.task_id] = t.reward
            record.points.append(point)
    final = methods.get(EVAL_FINAL)
    label = f"{final}, {demos} demos"
    if final:
        _add_curve(record, folder, label, iterations, env_class(recipe.run.env).graded)
    if folder.expert.exists():
        record.gt_types.update(env_class(t.env).goal_type(t.instruction)
                               for t in read_records(folder.expert, Trajectory))
    for it in folder.iterations():
        if final and it.done and it.agent.exists():
            counts = rollout_counts(it)
            counts["last"] = it.number
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
        for curve, pooled in ((record.curve, data.curve),
                              (record.score_curve, data.score_curve)):
            for method, i, by_split in curve:
                for split, value in by_split.items():
                    pooled[(method, i)][split].append(value)
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


def outcomes_of(episodes: Path) -> Counter[str]:
    """Evaluation episodes by outcome, as their environment tells it from its oracle."""
    with Environments() as envs:
        return Counter(envs[t.env].outcome(t) for t in read_records(episodes, Trajectory))


ROLLOUT_BLOCK = 10  # iterations per row of the rollout table


def rollout_counts(iteration: Iteration) -> Counter[str]:
    """A finished iteration's training rollouts counted: episodes, wins, steps, steps that
    had no effect, and goals the relabeler named (what HSL turns into demos)."""
    counts: Counter[str] = Counter()
    for t in read_records(iteration.agent, Trajectory):
        counts.update(episodes=1, won=int(t.success), steps=len(t.steps),
                      nothing=sum(s.observation.strip() == env_class(t.env).no_effect
                                  for s in t.steps))
    if iteration.goals.exists():
        counts["goals"] += sum(1 for _ in read_records(iteration.goals, GoalRecord))
    return counts


def _add_curve(record: RunRecord, run: RunDir, method: str, iterations: int, graded: bool
               ) -> None:
    for i, name, folder in run.evaluations(iterations):
        if name != EVAL_DPO and (summary := read_summary(folder)):
            record.curve.append((method, i, {split: cells["all"]["success"]
                                             for split, cells in summary.items()}))
            if graded:
                record.score_curve.append((method, i, {split: cells["all"]["mean_reward"]
                                                       for split, cells in summary.items()}))
    sft = read_summary(run.evaluation(EVAL_SFT))
    final = read_summary(run.evaluation(EVAL_FINAL))
    if sft and final:
        record.gains.append((method, {split: final[split]["all"]["success"] -
                                      sft[split]["all"]["success"]
                                      for split in final if split in sft}))
