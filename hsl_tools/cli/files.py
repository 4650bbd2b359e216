"""Commands that move records between files and stacks: import, export, merge."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hsl_tools.cli.options import Env, ShardSpec, console
from hsl_tools.records import Demo, Trajectory, read_records
from hsl_tools.shards import Shard


def import_cmd(
    path: Annotated[Path, typer.Argument(help="ETO / ShareGPT, AgentGym or OpenAI-messages "
                                              "file (a JSON list or JSONL).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Trajectories JSONL to write.")],
    env: Env = "alfworld",
    split: Annotated[str, typer.Option(
        help="Split for items whose task says none (ALFWorld: no game_file; WebShop: an id "
             "that names no goal index).")] = "train",
    success: Annotated[bool, typer.Option(
        help="Outcome of items with no success/reward field (ETO's SFT files hold "
             "successes).")] = True,
    shard: ShardSpec = None,
) -> None:
    """Read another stack's trajectory dump into our records.

    ETO's "put X in/on Y" becomes "move X to Y", as alfworld 0.4 games say it. WebShop dumps
    (ETO's webshop_sft.json, AgentGym's webshop trajectories) take --env webshop.

    Example: hsl import alfworld_sft.json --out runs/eto.jsonl
    """
    from hsl_tools.formats import import_to

    n, mapped = import_to(path, out, env, split, success, Shard.parse(shard))
    console.print(f"wrote {n} trajectories to {out} "
                  f"({mapped} 'put X in/on Y' turns mapped to 'move X to Y')")


def merge(
    parts: Annotated[list[Path], typer.Argument(help="The outputs of one stage run with "
                                                     "--shard 1/N … N/N, in any order.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="JSONL to write.")],
) -> None:
    """Join the parts of a sharded stage into what one process would have written.

    Refused unless the parts were made by the same settings, every shard is there once and no
    id repeats. Their failures, replies and skipped lists are joined too. For eval parts, join
    the eval.jsonl files into FOLDER/eval.jsonl, then run the same hsl eval with --out FOLDER:
    it plays nothing and writes the whole summary.

    Example: hsl merge runs/p1.jsonl runs/p2.jsonl --out runs/all.jsonl
    """
    from hsl_tools.shards import merge as run

    n = run(parts, out)
    console.print(f"wrote {n} records from {len(parts)} shards to {out}", markup=False)


def export_cmd(
    path: Annotated[Path, typer.Argument(help="Demos or trajectories JSONL.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="File to write: .json for a JSON "
                                                          "list, else JSONL.")],
    format_: Annotated[str, typer.Option("--format", "-f", help=(
        "eto (ShareGPT, no masks), agentgym (per-message loss flags = our relevance masks) "
        "or openai (messages with per-message weight, as our training renders them)."))
    ] = "agentgym",
    legacy_put: Annotated[bool, typer.Option(
        help="Write ETO-era 'put X in/on Y' instead of 'move X to Y'.")] = False,
) -> None:
    """Write demos for other trainers (TRL, LLaMA-Factory, AgentGym, OpenAI fine-tuning).

    Example: hsl export runs/x/iter-001/demos.jsonl -f agentgym --out demos.agentgym.json
    """
    from hsl_tools.formats import export_records
    from hsl_tools.train.data import schema_of

    model = Trajectory if schema_of(path) == Trajectory.SCHEMA else Demo
    n = export_records(list(read_records(path, model)), format_, out, legacy_put)
    console.print(f"wrote {n} {format_} conversations to {out}")

