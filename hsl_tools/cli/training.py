"""Commands that train: one training run, a recipe's whole loop, a grid of recipes, and
the report of their runs."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hsl_tools.cli.options import Seed, console, print_error
from hsl_tools.present import run_story, status_table, success_table


def _wrote(files: list[Path], out: Path) -> None:
    console.print(f"wrote {', '.join(f.name for f in files)} to {out}")


def train_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Model folder or hub name to "
                                                              "start from.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Checkpoint folder to write.")],
    demos: Annotated[Path, typer.Option(
        "--demos", "-d", help="Ground-truth demos: a demo file, or trajectories (the "
                              "successful ones are used).")],
    objective: Annotated[str, typer.Option(help="sft, hsl or dpo.")] = "sft",
    buffer: Annotated[Path | None, typer.Option(help="Hindsight buffer D' (JSONL, FIFO).")
                      ] = None,
    add: Annotated[list[Path] | None, typer.Option(
        metavar="FILE", help="Demos to push into the buffer first (hindsight demos; or "
                             "trajectories, whose successes enter as self-imitation demos).")
    ] = None,
    capacity: Annotated[int, typer.Option(help="Buffer size N.")] = 100,
    rejected: Annotated[Path | None, typer.Option(
        help="DPO: the agent's trajectories; failed ones pair with the expert demo of the "
             "same task.")] = None,
    reference: Annotated[str | None, typer.Option(help="DPO reference model [default: --model]")
                         ] = None,
    steps: Annotated[int | None, typer.Option(help="Optimisation steps [default: from "
                                                   "--epochs].")] = None,
    epochs: Annotated[float, typer.Option(help="Epochs over the ground-truth demos.")] = 3.0,
    batch_size: Annotated[int, typer.Option(help="Demos per step (per source).")] = 32,
    grad_accum: Annotated[str, typer.Option(
        help="Micro-batches per step (same step, less memory), or auto: one demo per pass on "
             "CPU (no padding, ~2x faster there), the whole batch on GPU.")] = "auto",
    lr: Annotated[float, typer.Option(help="AdamW learning rate.")] = 2e-5,
    schedule: Annotated[str, typer.Option(help="constant, or cosine (down to lr/10).")
                        ] = "constant",
    warmup: Annotated[int, typer.Option(help="Steps of linear learning-rate warm-up.")] = 0,
    lam: Annotated[float, typer.Option(help="HSL weight lambda of the hindsight loss.")] = 0.3,
    alpha: Annotated[float, typer.Option(help="HSL sampling exponent alpha.")] = 0.8,
    no_mask: Annotated[bool, typer.Option(help="NoMask ablation: every action relevant.")
                       ] = False,
    uniform: Annotated[bool, typer.Option(help="UniWeight ablation: uniform sampling from D'.")
                       ] = False,
    beta: Annotated[float, typer.Option(help="DPO beta.")] = 0.1,
    lora_r: Annotated[int, typer.Option(help="LoRA rank (0: full fine-tune).")] = 0,
    merge: Annotated[bool, typer.Option(help="Save LoRA merged into the weights (vLLM-ready).")
                     ] = True,
    max_len: Annotated[int, typer.Option(help="Longest sequence; longer demos drop their "
                                              "oldest steps.")] = 4096,
    seed: Seed = 42,
    resume: Annotated[bool, typer.Option(help="Continue from the checkpoint in OUT.")] = False,
    fresh: Annotated[bool, typer.Option(help="Replace a checkpoint already in OUT.")] = False,
    save_every: Annotated[int, typer.Option(help="Steps between checkpoints a killed run "
                                                 "resumes from (0: at the end only).")] = 100,
) -> None:
    """Fine-tune a policy: SFT on ground-truth demos, HSL (SFT + the hindsight buffer), or DPO.

    Example: hsl train -m runs/tiny -o runs/sft -d runs/expert.jsonl --epochs 3
    HSL step: hsl train -m runs/sft -o runs/hsl -d runs/expert.jsonl --objective hsl
              --buffer runs/buffer.jsonl --add runs/iter-1/demos.jsonl --steps 4
    """
    from hsl_tools.train.config import train_config
    from hsl_tools.train.data import failed_trajectories, hindsight_buffer, load_demos
    from hsl_tools.train.loop import train

    config = train_config(objective=objective, steps=steps, epochs=epochs, batch_size=batch_size,
                          grad_accum=grad_accum, lr=lr, schedule=schedule, warmup=warmup,
                          lam=lam, alpha=alpha, mask=not no_mask, uniform=uniform, beta=beta,
                          max_len=max_len, seed=seed, lora_r=lora_r, merge_lora=merge,
                          save_every=save_every)
    hindsight = None if buffer is None else hindsight_buffer(buffer, add or [], capacity)
    if buffer is not None:
        console.print(f"buffer {buffer}: {len(hindsight or [])} demos (capacity {capacity})")
    metrics = train(model, out, config, load_demos(demos), hindsight,
                    failed_trajectories(rejected) if rejected else None, reference, resume,
                    fresh=fresh)
    console.print(f"saved {out}: step {metrics.get('step', 0)}, loss {metrics.get('loss', 0):.4f}"
                  f", {metrics.get('tokens_per_s', 0):.0f} tokens/s")


def iterate(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML (see recipes/).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", metavar="SECTION.KEY=VALUE",
        help="Override a recipe value (the value in TOML), repeatable.")
    ] = None,
) -> None:
    """Run a recipe's whole loop: SFT, then HSL iterations, evaluating along the way.

    Each stage's output lives in the run folder; re-running continues a killed run.

    Example: hsl iterate recipes/household-tiny.toml --set hsl.mask=false --set run.dir=runs/nm
    """
    from hsl_tools.iterate import run_recipe
    from hsl_tools.recipe import load_recipe

    the_recipe = load_recipe(recipe, set_)
    evals = run_recipe(the_recipe, console)
    console.print(success_table(evals, f"success rate: {recipe}"))
    for shown in run_story(the_recipe.folder, the_recipe.methods()):
        console.print(shown)


def grid(
    path: Annotated[Path, typer.Argument(help="Grid TOML (see recipes/grid-household.toml).")],
    only: Annotated[list[str] | None, typer.Option(
        metavar="PREFIX", help="Run only the runs whose name starts with this (repeatable).")
    ] = None,
    seed: Annotated[list[int] | None, typer.Option(
        metavar="SEED",
        help="Run only the runs of this seed (repeatable): one seed's row of every cell.")
    ] = None,
    report: Annotated[Path | None, typer.Option(
        help="Write `hsl report` of the grid's runs to this folder at the end, pooled with "
             "the runs its runs.json already holds (a run read again replaces its record).")
    ] = None,
    jobs: Annotated[int, typer.Option(
        help="Runs at a time, each in its own process sharing the CPU cores (and GPU); "
             "1 runs them here, one after another. On one H100 9 ran well and 24 thrashed.")
    ] = 1,
    status: Annotated[bool, typer.Option(
        "--status", help="Only print where each run stands (stage, progress, newest "
                         "evaluation), from its files; safe while the grid runs.")] = False,
) -> None:
    """Run a grid of recipes (cells x seeds), resumable; cells that start alike share an SFT.

    Each run is an ordinary `hsl iterate` run folder; a killed grid continues where it stopped.

    Example: hsl grid recipes/grid-household.toml --jobs 9 --report docs/results
    """
    from hsl_tools.grid import GridFailed, run_grid

    if status:
        from hsl_tools.grid import load_grid, select
        from hsl_tools.run_status import run_status

        runs = select(load_grid(path)[1], only, seed)
        console.print(status_table({name: run_status(r) for name, r in runs.items()}))
        return
    try:
        runs = run_grid(path, console, only, jobs, seed)
    except GridFailed as e:
        print_error(e)
        raise typer.Exit(2) from None
    if report is not None:
        from hsl_tools.report import update_report

        _wrote(update_report(runs, report), report)


def report_cmd(
    runs: Annotated[list[Path], typer.Argument(
        help="Run folders of hsl iterate / hsl grid, or runs.json files of earlier reports "
             "(a run named again replaces its earlier record).")],
    out: Annotated[Path, typer.Option("--out", "-o",
                                      help="Folder for report.md, PNGs and runs.json.")],
    oracle: Annotated[bool, typer.Option(
        help="Replay trajectories for the oracle's view: every iteration's relabel accuracy, "
             "and what failed evaluation episodes achieved instead.")] = True,
) -> None:
    """Tables and plots from runs, finished or not (mean ± std over seeds).

    Success vs demos per method, ablations, goal types, relabel accuracy, failures, iterations.

    OUT/runs.json keeps each run's share, so a later report needs no run folder for it.

    Example: hsl report runs/grid/* --out docs/results

    Adding a seed to an earlier report: hsl report docs/results/runs.json runs/grid/*-s2026
    --out docs/results
    """
    from hsl_tools.report import write_report

    _wrote(write_report(runs, out, oracle), out)

