"""`hsl`: the command line. One thin function per stage; the library does the work.

Every stage reads and writes JSONL files, so each can run alone on files from anywhere.
Bad input stops with one line naming the file, line and field.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from hsl_tools.agent import make_policy, rollout
from hsl_tools.envs.base import check_split, make_env
from hsl_tools.progress import progress_bar
from hsl_tools.records import RecordError, StageOutput, Trajectory, read_records
from hsl_tools.show import print_trajectory

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
console = Console()
err_console = Console(stderr=True)

EnvOpt = Annotated[str, typer.Option("--env", "-e", help="Environment: household (embedded).")]


@app.command()
def collect(
    out: Annotated[Path, typer.Option("--out", "-o", help="Trajectories JSONL to write.")],
    env: EnvOpt = "household",
    split: Annotated[str, typer.Option(help="train, seen or unseen.")] = "train",
    policy: Annotated[str, typer.Option(help="expert (ground truth) or random.")] = "expert",
    n: Annotated[int | None, typer.Option(
        "-n", help="First N tasks of the split (all if unset).")] = None,
    batch_size: Annotated[int, typer.Option(help="Episodes stepped in lockstep.")] = 16,
    max_steps: Annotated[int, typer.Option(help="Step limit T per episode.")] = 40,
    seed: Annotated[int, typer.Option(help="Seed of stochastic policies.")] = 0,
    fresh: Annotated[bool, typer.Option(help="Ignore what OUT already holds; redo all.")] = False,
) -> None:
    """Roll a policy out on tasks of a split and write one trajectory per task.

    Re-running with the same OUT resumes: tasks already in it are skipped.
    Example: hsl collect --env household --split train --policy expert -n 200 --out demos.jsonl
    """
    environment = make_env(env, max_steps=max_steps)
    check_split(environment, split)
    the_policy = make_policy(policy, seed=seed)
    task_ids = environment.task_ids(split, n)
    started = time.perf_counter()
    wins = steps = 0
    with StageOutput(out, Trajectory, key=lambda t: t.task_id, fresh=fresh) as output:
        todo = [t for t in task_ids if t not in output.done]
        with progress_bar(f"collect {policy}", total=len(task_ids)) as bar:
            bar.advance(len(task_ids) - len(todo))
            for trajectory in rollout(environment, todo, the_policy, split, batch_size):
                output.write(trajectory)
                wins += trajectory.success
                steps += len(trajectory.steps)
                bar.advance()
    done = len(todo)
    rate = f"success {wins / done:.1%}, mean {steps / done:.1f} steps, " if done else ""
    console.print(f"wrote {len(task_ids)} trajectories to {out} ({rate}{done} new, "
                  f"{output.resumed} resumed, {time.perf_counter() - started:.1f} s)")


@app.command()
def show(
    path: Annotated[Path, typer.Argument(help="Trajectories JSONL.")],
    limit: Annotated[int, typer.Option(help="How many to show.")] = 2,
    oracle: Annotated[bool, typer.Option(
        help="Also list every goal each trajectory achieved (the environment's truth).")] = False,
    achieving: Annotated[bool, typer.Option(
        help="Only trajectories that achieved some goal (implies --oracle).")] = False,
) -> None:
    """Print trajectories as the agent saw them, optionally with the goals they achieved."""
    shown = 0
    for trajectory in read_records(path, Trajectory):
        if shown >= limit:
            break
        goals = make_env(trajectory.env).oracle(trajectory) if oracle or achieving else None
        if achieving and not goals:
            continue
        print_trajectory(console, trajectory, goals)
        shown += 1


def main() -> None:
    """Console entry point: expected failures print one line, not a traceback."""
    try:
        app()
    except (RecordError, ValueError, FileNotFoundError) as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()
