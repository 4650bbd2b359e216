"""vLLM backend: offline `LLM.chat` over the whole batch, structured outputs, LoRA adapters.

One engine per process and model (engines are costly to start and hold their memory), kept
in a module cache. Code that creates one must run under `if __name__ == "__main__":` where
multiprocessing spawns (vLLM's CPU build does).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from hsl_tools.llm.base import (
    Conversation,
    GenerationParams,
    ModelError,
    chat_token_ids,
    conversation_seed,
    missing_local_path,
    strip_at_stop,
)

_ENGINES: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}


def engine(target: str, **options: Any) -> Any:
    """The process's vLLM engine for a model, started on first use."""
    key = (target, tuple(sorted(options.items())))
    if key not in _ENGINES:
        try:
            import torch
            from vllm import LLM
        except ImportError as e:
            raise ModelError(f"vllm backend needs vLLM: pip install 'hsl-tools[vllm]' ({e})"
                             ) from None
        if not torch.cuda.is_available():  # vLLM's CPU build: no CUDA graphs, a KV budget
            os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
            # and no chunked prefill: a seeded sampled request whose prefill is cut in two
            # kills the CPU engine ("CPU Generator does not use offset", vLLM 0.32), which a
            # relabeler's warmer retry round of long prompts met after 27 minutes
            budget = max(options.get("max_model_len") or 0, 8192)
            options = {"enforce_eager": True, "dtype": "bfloat16",
                       "enable_chunked_prefill": False, "max_num_batched_tokens": budget,
                       **options}
        if (missing := missing_local_path(target)) is not None:
            raise ModelError(f"vllm: {missing}")
        local = Path(target).expanduser()
        try:
            _ENGINES[key] = LLM(model=str(local) if local.exists() else target, **options)
        except (OSError, ValueError) as e:
            raise ModelError(f"vllm: cannot load {target!r}: {str(e).splitlines()[0]}") from None
    return _ENGINES[key]


def context_length(target: str, most: int = 8192) -> int:
    """The model's own context, up to `most` tokens (a relabeler's WebShop prompt can take
    5000; a longer context only reserves KV memory that goes unused)."""
    from transformers import AutoConfig

    try:
        config = AutoConfig.from_pretrained(str(Path(target).expanduser()))
    except (OSError, ValueError):
        return 4096  # vLLM reports what is wrong with the model when it loads it
    return min(most, getattr(config, "max_position_embeddings", None) or 4096)


# engine settings a spec may carry after `?` (`vllm:MODEL?tp=8&dp=2`), short names first
SPEC_OPTIONS = {"tp": "tensor_parallel_size", "dp": "data_parallel_size",
                "tensor_parallel_size": "tensor_parallel_size",
                "data_parallel_size": "data_parallel_size", "max_model_len": "max_model_len",
                "gpu_memory_utilization": "gpu_memory_utilization",
                "prefix_caching": "enable_prefix_caching"}
SWITCHES = {"prefix_caching"}  # 0 or 1


def spec_options(query: str) -> dict[str, int | float | bool]:
    """Engine settings from a spec's `?key=value&…` part, checked by name and number."""
    options: dict[str, int | float | bool] = {}
    for key, value in parse_qsl(query, keep_blank_values=True):
        if key not in SPEC_OPTIONS:
            raise ModelError(f"vllm: unknown setting {key!r} (valid: {', '.join(SPEC_OPTIONS)})")
        if key in SWITCHES:
            if value not in ("0", "1"):
                raise ModelError(f"vllm: {key}={value!r} must be 0 or 1")
            options[SPEC_OPTIONS[key]] = value == "1"
            continue
        try:
            number = float(value) if key == "gpu_memory_utilization" else int(value)
        except ValueError:
            raise ModelError(f"vllm: {key}={value!r} is not a number") from None
        if number <= 0:
            raise ModelError(f"vllm: {key}={value!r} must be positive")
        options[SPEC_OPTIONS[key]] = number
    return options


class VLLMChatModel:
    """A model served in-process by vLLM; `lora` names an adapter folder to apply. Tensor and
    data parallel sizes (and max_model_len, gpu_memory_utilization, prefix_caching=0|1) go to
    the engine from the spec: `vllm:meta-llama/Llama-3.3-70B-Instruct?tp=8` or `…?tp=4&dp=2`."""

    supports_json_schema = True

    def __init__(self, target: str, max_model_len: int | None = None, lora: str | None = None,
                 **engine_options: Any) -> None:
        self.spec = f"vllm:{target}" + (f"+lora:{lora}" if lora else "")
        target, _, query = target.partition("?")
        options = {**spec_options(query), **engine_options}
        options["max_model_len"] = max_model_len or options.get("max_model_len") or \
            context_length(target)
        if lora:
            options.update(enable_lora=True, max_lora_rank=64)
        self.llm = engine(target, **options)
        self.lora = lora
        self.context_length: int = self.llm.llm_engine.model_config.max_model_len

    def count_tokens(self, conversation: Conversation) -> int:
        """Prompt length of a conversation, generation prompt included."""
        return len(chat_token_ids(self.llm.get_tokenizer(), conversation))

    def generate(self, conversations: list[Conversation], params: GenerationParams,
                 sessions: list[str] | None = None) -> list[str]:
        from vllm import SamplingParams
        from vllm.lora.request import LoRARequest
        from vllm.sampling_params import StructuredOutputsParams

        def structured(i: int) -> StructuredOutputsParams | None:
            schema = params.schema(i)
            return StructuredOutputsParams(json=json.dumps(schema)) if schema else None

        sampling = [SamplingParams(max_tokens=params.max_new_tokens,
                                   temperature=params.temperature, top_p=params.top_p,
                                   seed=conversation_seed(params.seed, c),
                                   stop=list(params.stop) or None, structured_outputs=structured(i))
                    for i, c in enumerate(conversations)]
        lora = LoRARequest("adapter", 1, self.lora) if self.lora else None
        outputs = self.llm.chat(conversations, sampling, use_tqdm=False, lora_request=lora)
        return [strip_at_stop(o.outputs[0].text, params.stop) for o in outputs]
