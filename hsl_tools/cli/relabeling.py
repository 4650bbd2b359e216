"""Commands that relabel: name the goals a trajectory achieved, mask the actions each
needed, and check the goals against the environment."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from hsl_tools.cli.options import (
    Attempts,
    Chunk,
    Fresh,
    PromptName,
    RelabelerSpec,
    ReplyBudget,
    ShardSpec,
    console,
    err_console,
)
from hsl_tools.present import check_table, stage_lines
from hsl_tools.records import GoalRecord, Trajectory, read_records, write_json
from hsl_tools.shards import Shard

if TYPE_CHECKING:
    from hsl_tools.relabel.stages import StageStats


def _print_summary(stats: StageStats, out: Path, what: str, inp: Path) -> None:
    if not stats.inputs:
        err_console.print(f"warning: {inp} holds no records: nothing to do", markup=False,
                          soft_wrap=True)
    from hsl_tools.relabel.stages import failures_path

    for line in stage_lines(stats, out, what, failures_path(out)):
        console.print(line, markup=False)


def relabel(
    trajectories: Annotated[Path, typer.Argument(help="Trajectories JSONL.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Goal records JSONL to write.")],
    relabeler: RelabelerSpec = "rules",
    prompt: PromptName = None,
    only_failed_final: Annotated[bool, typer.Option(
        help="RelabelFailure ablation: failed trajectories only, their last goal only.")] = False,
    grounded: Annotated[bool, typer.Option(
        help="An LLM relabeler may name only goals the trajectory could have achieved (the "
             "environment's templates over what the agent held and saw), enforced by the JSON "
             "schema where the backend takes one (vllm:, openai:).")] = False,
    attempts: Attempts = 2,
    max_new_tokens: ReplyBudget = 1024,
    chunk: Chunk = 256,
    fresh: Fresh = False,
    shard: ShardSpec = None,
) -> None:
    """Goal identification: every goal each trajectory achieved, and the step S(k) it first held.

    One record per (trajectory, goal), the trajectory cut at S(k); goal-less ones are dropped.
    Replies that never parse go to OUT's .failures.jsonl.

    Example: hsl relabel runs/x/agent.jsonl --out runs/x/goals.jsonl --relabeler rules
    """
    from hsl_tools.relabel.relabelers import make_relabeler
    from hsl_tools.relabel.stages import relabel as run

    the_relabeler = make_relabeler(relabeler, attempts, max_new_tokens, grounded)
    stats = run(trajectories, out, the_relabeler, prompt, only_failed_final, chunk, fresh,
                Shard.parse(shard))
    _print_summary(stats, out, "goals", trajectories)


def mask(
    goals: Annotated[Path, typer.Argument(help="Goal records JSONL (from hsl relabel).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Demos JSONL to write.")],
    relabeler: RelabelerSpec = "rules",
    prompt: PromptName = None,
    attempts: Attempts = 2,
    max_new_tokens: ReplyBudget = 1024,
    chunk: Chunk = 256,
    fresh: Fresh = False,
    shard: ShardSpec = None,
) -> None:
    """Action relevance: label each action of each relabeled prefix as needed (z=1) or not.

    Writes hindsight demos; each shows n_relevant (n_d) and n_actions (T_d).

    Example: hsl mask runs/x/goals.jsonl --out runs/x/demos.jsonl --relabeler rules
    """
    from hsl_tools.relabel.relabelers import make_relabeler
    from hsl_tools.relabel.stages import mask as run

    the_relabeler = make_relabeler(relabeler, attempts, max_new_tokens)
    stats = run(goals, out, the_relabeler, prompt, chunk, fresh, Shard.parse(shard))
    _print_summary(stats, out, "demos", goals)


def relabel_check(
    goals: Annotated[Path, typer.Argument(help="Goal records JSONL (from hsl relabel).")],
    trajectories: Annotated[Path, typer.Option(
        "--trajectories", "-t", help="The trajectories that were relabeled (all of them).")],
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the report as JSON.")
                   ] = None,
) -> None:
    """Relabel accuracy as the environment judges it: precision, recall, exact S(k).

    A named goal is right when the environment shows it achieved by its step (ALFWorld and
    the household world: their oracle; WebShop: the purchase scores 1.0 for it). WebShop adds
    the mean reward and its parts, and how many other products would also score 1.0 (a goal
    anything satisfies teaches nothing).

    Example: hsl relabel-check runs/x/goals.jsonl -t runs/x/agent.jsonl
    """
    from hsl_tools.relabel.check import check

    report = check(read_records(trajectories, Trajectory), read_records(goals, GoalRecord))
    if out is not None:
        write_json(out, report)
    console.print(check_table(report, f"{goals} as the environment judges it "
                                      f"({report['trajectories']} trajectories)"))

