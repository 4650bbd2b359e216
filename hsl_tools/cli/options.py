"""The options several commands share, declared once, and the consoles they print to."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.text import Text

from hsl_tools.errors import one_line

console = Console()
err_console = Console(stderr=True)


def print_error(error: BaseException) -> None:
    """An expected failure as one line on stderr, however narrow the terminal."""
    err_console.print(Text.assemble(("error: ", "bold red"), one_line(error)), highlight=False,
                      soft_wrap=True)


Env = Annotated[str, typer.Option("--env", "-e", metavar="NAME", help=(
    "Environment: household (embedded), alfworld (the alfworld extra and $ALFWORLD_DATA) or "
    "webshop ($WEBSHOP_DATA; the webshop extra for its exact reward)."))]
PolicySpec = Annotated[str, typer.Option(
    "--policy", "-p", metavar="SPEC",
    help="expert, random, hf:PATH, vllm:PATH_OR_NAME, openai:URL#MODEL, or replay:DUMP (each "
         "trajectory's actions again, in its own task).")]
N = Annotated[int | None, typer.Option("-n", help="First N tasks of each split (all if unset).")]
BatchSize = Annotated[int, typer.Option(help="Episodes stepped in lockstep (one batched "
                                              "generation per step).")]
MaxSteps = Annotated[int | None, typer.Option(
    help="Step limit T per episode [default: the environment's: 40, WebShop 10].")]
Temperature = Annotated[float, typer.Option(help="Sampling temperature of a model policy "
                                                 "(0 = greedy).")]
React = Annotated[bool, typer.Option(help="Model policy writes 'Thought: … Action: …'.")]
Seed = Annotated[int, typer.Option(help="Seed of sampling and of the random policy.")]
Fresh = Annotated[bool, typer.Option(help="Ignore what the output already holds; redo all.")]
ShardSpec = Annotated[str | None, typer.Option(
    "--shard", metavar="I/N",
    help="Only shard I of N of the work (by a hash of each task or record id), for N processes "
         "or machines; join their outputs with hsl merge.")]
RelabelerSpec = Annotated[str, typer.Option(
    "--relabeler", "-r", metavar="SPEC",
    help="rules (text procedure, no model), hf:PATH, vllm:PATH_OR_NAME or openai:URL#MODEL.")]
PromptName = Annotated[str | None, typer.Option(
    metavar="FAMILY/TASK@vN",
    help="Prompt template of an LLM relabeler [default: the newest version].")]
Attempts = Annotated[int, typer.Option(help="Tries per item before it goes to the failures "
                                            "file (later tries sample warmer).")]
ReplyBudget = Annotated[int, typer.Option(help="Reply budget (tokens) of an LLM relabeler.")]
Chunk = Annotated[int, typer.Option(help="Items per batched relabeler call (and per resume "
                                         "checkpoint).")]
