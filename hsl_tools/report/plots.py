"""The report's figures, in the shape of the paper's (success vs demos, ablations, goal types,
relabel accuracy, success over iterations)."""

from __future__ import annotations

import statistics
from pathlib import Path
from typing import Any

from hsl_tools.relabel.check import rates
from hsl_tools.report.runs import RunData
from hsl_tools.report.stats import grouped, mean_std, values

SHORT = {"pick_and_place": "place", "look_at_obj_in_light": "look", "pick_clean_then_place":
         "clean", "pick_heat_then_place": "heat", "pick_cool_then_place": "cool",
         "pick_two_obj_and_place": "two"}


def _short(kinds: list[str]) -> list[str]:
    return [SHORT.get(k, k[:12]) for k in kinds]


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
            stats = [mean_std(values(groups[(m, d)], split) or [0.0]) for d in xs]
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
        stats = [mean_std(values(ps, split) or [0.0]) for _, ps in at_smallest]
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
                  [100 * statistics.fmean(values(ps, splits[-1], t) or [0.0])
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
    # with partial credit (WebShop) the score, which moves where success may stay 0
    curve, metric = (data.score_curve, "score") if data.graded and data.score_curve else \
        (data.curve, "success %")
    for ax, split in zip(axes[0], splits, strict=True):
        for m in sorted({m for m, _ in curve}):
            its = sorted(i for mm, i in curve if mm == m)
            stats = [mean_std(curve[(m, i)][split] or [0.0]) for i in its]
            ax.errorbar(its, [100 * a for a, _ in stats], yerr=[100 * b for _, b in stats],
                        marker="o", capsize=3, label=m)
        ax.set(title=split, xlabel="HSL iteration", ylabel=metric)
    axes[0][0].legend(fontsize=8)
    save(fig, "iterations.png")
    return written
