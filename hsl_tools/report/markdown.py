"""The report's Markdown: success (and, with partial credit, score) by method and budget, per
seed, by goal type, relabel accuracy, what failed episodes achieved, gains over SFT, and the
HSL rollouts."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable

from hsl_tools.present import percent
from hsl_tools.relabel.check import rates
from hsl_tools.report.runs import ROLLOUT_BLOCK, Point, RunData, outcome_kinds
from hsl_tools.report.stats import (
    fisher_exact,
    grouped,
    mean_std,
    p_text,
    reward_differences,
    signed_rank_p,
    values,
    wins,
)


def _fmt(values: list[float], sign: bool = False) -> str:
    if not values:
        return "–"
    m, s = mean_std(values)
    return f"{100 * m:{'+' if sign else ''}.1f} ± {100 * s:.1f} (n={len(values)})"


def _pair(point: Point, splits: tuple[str, ...], score: bool = False) -> str:
    """One evaluation's success (or score) on each split, as "seen / unseen", in %."""
    rates = [(point.score if score else point.success)(split) for split in splits]
    return " / ".join("–" if r is None else f"{100 * r:.1f}" for r in rates)


def score_gains(groups: dict[tuple[str, int], list[Point]], splits: tuple[str, ...]
                ) -> dict[str, dict[str, list[float]]]:
    """Each method's score minus the score of the SFT of its seed and budget, by split
    (paired: the runs of one seed and budget start from one SFT)."""
    sft = {(p.demos, p.seed): p for (m, _), ps in groups.items() if m == "SFT" for p in ps}
    gains: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for (m, d), ps in groups.items():
        for p in ps:
            if m != "SFT" and (base := sft.get((d, p.seed))):
                for s in splits:
                    if (a := p.score(s)) is not None and (b := base.score(s)) is not None:
                        gains[f"{m}, {d} demos"][s].append(a - b)
    return gains


def _by_budget(label: str) -> tuple[int, str]:
    """Sort key of a "method, N demos" label: by budget, then method."""
    method, _, demos = label.rpartition(", ")
    return int(demos.split()[0]), method


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


Pairing = tuple[str, list[Point], list[Point]]  # "method, N demos | against", the two sides


def pairings(groups: dict[tuple[str, int], list[Point]],
             usable: Callable[[Point], bool] = lambda p: True) -> list[Pairing]:
    """Each method against each reference at its budget (and SFT+HSL against SFT on the most
    demos), on the seeds both sides ran with `usable` evaluations, named where one side has
    more: seeds differ by more than methods."""
    found = []
    top = max((d for m, d in groups if m == "SFT"), default=0)
    for (m, d), all_ps in groups.items():
        against = [(r, d) for r in references(m)]
        if m == "SFT+HSL" and d < top:  # the paper's "a quarter of the demos + HSL" claim
            against.append(("SFT", top))
        ps = [p for p in all_ps if usable(p)]
        for ref, ref_demos in (key for key in against if key in groups):
            refs = [p for p in groups[(ref, ref_demos)] if usable(p)]
            seeds = {p.seed for p in ps} & {p.seed for p in refs}
            mine, theirs = ([p for p in side if p.seed in seeds] for side in (ps, refs))
            if not seeds:
                continue
            name = ref if ref_demos == d else f"{ref}, {ref_demos} demos"
            if len(mine) < len(all_ps) or len(theirs) < len(groups[(ref, ref_demos)]):
                name += f" (seed{'s' * (len(seeds) > 1)} {', '.join(map(str, sorted(seeds)))})"
            found.append((f"{m}, {d} demos | {name}", mine, theirs))
    return found


def comparisons(groups: dict[tuple[str, int], list[Point]], splits: tuple[str, ...]
                ) -> list[str]:
    """Table rows: wins of each pairing, per split and all pooled, with Fisher's p (seeds
    pooled: this tests the noise of the success rate, not the spread between seeds)."""
    rows = []
    for label, mine, theirs in pairings(groups):
        cells = []
        for among in [(s,) for s in splits] + [splits] * (len(splits) > 1):
            (a, n), (b, k) = wins(mine, among), wins(theirs, among)
            cells.append(f"{a}/{n} vs {b}/{k}, p = {p_text(fisher_exact(a, n, b, k))}"
                         if n and k else "–")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
    return rows


def score_comparisons(groups: dict[tuple[str, int], list[Point]], splits: tuple[str, ...]
                      ) -> list[str]:
    """Table rows: each pairing's score difference over the same goals of the same seeds,
    episode by episode, with the Wilcoxon signed-rank test's p (seeds pooled, as for wins)."""
    rows = []
    for label, mine, theirs in pairings(groups, lambda p: bool(p.rewards)):
        cells = []
        for split in splits:
            diffs = reward_differences(mine, theirs, split)
            cells.append(f"{100 * statistics.fmean(diffs):+.1f} over {len(diffs)} goals, p = "
                         f"{p_text(signed_rank_p(diffs))}" if diffs else "–")
        rows.append(f"| {label} | " + " | ".join(cells) + " |")
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
             f"## {'Score and success' if data.graded else 'Success'} by method and number of "
             "ground-truth demos", "",
             "| method | demos | " + " | ".join(c for c, _ in columns) + " |",
             "|---|---:|" + "---:|" * len(columns)]
    lines += [f"| {m} | {d} | " + " | ".join(
        _fmt(values(ps, c.split()[0], score=score)) for c, score in columns) + " |"
        for (m, d), ps in groups.items()]
    seeds = sorted({p.seed for p in data.points})
    # the spread behind each ± above, seed by seed: the score first where it is graded
    for score in ([True] * data.graded + [False]) * (len(seeds) > 1):
        lines += ["", f"## {'Score' if score else 'Success'} by seed ({' / '.join(splits)})",
                  "", "| method | demos | " + " | ".join(f"seed {s}" for s in seeds) + " |",
                  "|---|---:|" + "---:|" * len(seeds)]
        for (m, d), ps in groups.items():
            by_seed = {p.seed: p for p in ps}
            cells = [_pair(by_seed[s], splits, score) if s in by_seed else "–" for s in seeds]
            lines.append(f"| {m} | {d} | " + " | ".join(cells) + " |")
    types = sorted({g for p in data.points for s in p.summary.values() for g in s} - {"all"})
    if types:
        what = "Score" if data.graded else "Success"  # with partial credit, the score
        lines += ["", f"## {what} on {splits[-1]} by goal type", "",
                  "| method | demos | " + " | ".join(types) + " |",
                  "|---|---:|" + "---:|" * len(types)]
        for (m, d), ps in groups.items():
            cells = [_fmt(values(ps, splits[-1], t, score=data.graded)).split(" (")[0]
                     for t in types]
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
    for what, gains in [("Score", score_gains(groups, splits))] * data.graded + [
            ("Success", data.gains)]:
        if not gains:
            continue
        lines += ["", f"## {what} change from each run's own SFT, in points (paired)", "",
                  "| method, demos | " + " | ".join(splits) + " |", "|---|" + "---:|" * len(splits)]
        for m, by_split in sorted(gains.items(), key=lambda kv: _by_budget(kv[0])):
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
    if data.graded and (rows := score_comparisons(groups, splits)):
        lines += ["", "## Scores against what each method starts from or is tested against, "
                  "goal by goal", "",
                  "The mean difference of two checkpoints' rewards on the same goals, in points, "
                  "pooled over the seeds both sides ran with their episodes kept, with the "
                  "Wilcoxon signed-rank test's two-sided p (goals both scored alike left out).",
                  "", "| method, demos | against | " + " | ".join(splits) + " |",
                  "|---|---|" + "---:|" * len(splits), *rows]
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
    # with partial credit the score curve first: success may stay 0 while the score moves
    for what, curve in [("Score", data.score_curve)] * data.graded + [("Success", data.curve)]:
        if not curve:
            continue
        lines += ["", f"## {what} over HSL iterations (0 = after SFT)", "",
                  "| method, demos | iteration | " + " | ".join(splits) + " |",
                  "|---|---:|" + "---:|" * len(splits)]
        for (m, i), by_split in sorted(curve.items(),
                                       key=lambda kv: (_by_budget(kv[0][0]), kv[0][1])):
            lines.append(f"| {m} | {i} | " + " | ".join(_fmt(by_split[s]) for s in splits)
                         + " |")
    return "\n".join(lines) + "\n"
