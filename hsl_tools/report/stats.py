"""The report's statistics: mean ± std over seeds, wins pooled over seeds, Fisher's exact
test, and rewards paired goal by goal with the Wilcoxon signed-rank test."""

from __future__ import annotations

import math
import statistics
from collections import defaultdict

from scipy.stats import wilcoxon

from hsl_tools.report.runs import Point


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def grouped(points: list[Point]) -> dict[tuple[str, int], list[Point]]:
    groups: dict[tuple[str, int], list[Point]] = defaultdict(list)
    for p in points:
        groups[(p.method, p.demos)].append(p)
    return dict(sorted(groups.items(), key=lambda kv: (kv[0][1], kv[0][0])))


def values(points: list[Point], split: str, group: str = "all", score: bool = False
            ) -> list[float]:
    return [v for p in points if (v := (p.score if score else p.success)(split, group))
            is not None]


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


def p_text(p: float) -> str:
    """A p-value for a table: two decimals, or one significant digit below 0.01, where two
    decimals would print a real 0.0009 as "0.00"."""
    return f"{p:.2f}" if p >= 0.01 else f"{p:.1g}"


def reward_differences(mine: list[Point], theirs: list[Point], split: str) -> list[float]:
    """Reward differences on the goals both sides' evaluations of one seed met, seeds
    pooled (one point a seed on each side)."""
    other = {p.seed: p.rewards.get(split, {}) for p in theirs}
    return [r - other[p.seed][task] for p in mine if p.seed in other
            for task, r in p.rewards.get(split, {}).items() if task in other[p.seed]]


def signed_rank_p(differences: list[float]) -> float:
    """Two-sided p of the Wilcoxon signed-rank test of paired differences around 0 (ties at 0
    left out, as Wilcoxon's test does); 1.0 when no pair differs."""
    if not any(differences):
        return 1.0
    return float(wilcoxon(differences, zero_method="wilcox").pvalue)
