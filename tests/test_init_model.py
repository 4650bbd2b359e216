"""`hsl init-model`: local models that transformers and vLLM load, with training-ready templates."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoModelForCausalLM, AutoTokenizer

from conftest import need
from hsl_tools.chat import render
from hsl_tools.records import Step

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerBase

    from hsl_tools.llm.base import ChatModel, Conversation

CHAT = render("put a mug in fridge", "You are in the middle of a room.",
              [Step(action="go to fridge 1", observation="You arrive at fridge 1."),
               Step(action="open fridge 1", observation="You open the fridge 1.")])


def assistant_text(tokenizer: PreTrainedTokenizerBase, conversation: Conversation) -> str:
    enc = tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True,
                                        return_assistant_tokens_mask=True)
    return tokenizer.decode([t for t, m in zip(enc["input_ids"], enc["assistant_masks"],
                                               strict=True) if m])


def test_tiny_model_is_small_byte_level_and_loads(tiny_model: Path) -> None:
    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert 2e6 <= model.num_parameters() <= 10e6
    assert len(tokenizer) < 4096
    spec = json.loads((tiny_model / "tokenizer.json").read_text())
    assert spec["model"]["type"] == "BPE" and spec["pre_tokenizer"]["type"] == "ByteLevel"
    # whole environment words are single tokens: the vocabulary was learned from the world
    assert len(tokenizer.tokenize(" countertop")) == 1


def test_template_marks_exactly_the_assistant_tokens(tiny_model: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(tiny_model)
    assert assistant_text(tokenizer, CHAT) == "go to fridge 1<|im_end|>open fridge 1<|im_end|>"
    prompt = tokenizer.apply_chat_template(CHAT[:2], add_generation_prompt=True, tokenize=False)
    assert prompt.endswith("<|im_start|>assistant\n")


@settings(max_examples=50, deadline=None)
@given(st.text())
def test_any_text_round_trips(tiny_model_tokenizer: PreTrainedTokenizerBase, text: str) -> None:
    ids = tiny_model_tokenizer(text, add_special_tokens=False)["input_ids"]
    assert tiny_model_tokenizer.decode(ids) == text


@pytest.fixture(scope="module")
def tiny_model_tokenizer(tiny_model: Path) -> PreTrainedTokenizerBase:
    return AutoTokenizer.from_pretrained(tiny_model)


def test_smollm2_converts_with_our_template(smollm2: Path) -> None:
    config = json.loads((smollm2 / "config.json").read_text())
    assert config["architectures"] == ["LlamaForCausalLM"]
    assert "quantization_config" not in config
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    assert len(tokenizer) > 49000
    assert assistant_text(tokenizer, CHAT) == "go to fridge 1<|im_end|>open fridge 1<|im_end|>"


@pytest.fixture(scope="module")
def adapted(tiny_model: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A LoRA adapter trained on the tiny model hard enough to change its greedy reply to
    CHAT (30 steps at lr 1e-2 on household demos), and the adapter merged into a copy of the
    model by peft: (adapter, merged)."""
    from peft import PeftModel
    from typer.testing import CliRunner

    from hsl_tools.cli import app

    tmp = tmp_path_factory.mktemp("adapted")
    runner = CliRunner()
    demos, adapter, merged = tmp / "expert.jsonl", tmp / "adapter", tmp / "merged"
    assert runner.invoke(app, ["collect", "-n", "8", "--out", str(demos)]).exit_code == 0
    result = runner.invoke(app, ["train", "-m", str(tiny_model), "-d", str(demos), "-o",
                                 str(adapter), "--steps", "30", "--batch-size", "4", "--lr",
                                 "1e-2", "--lora-r", "4", "--no-merge"])
    assert result.exit_code == 0, result.output
    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    PeftModel.from_pretrained(base, adapter).merge_and_unload().save_pretrained(merged)
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(merged)
    return adapter, merged


def greedy(model: ChatModel | str) -> str:
    """A model's (or a spec's) greedy reply to CHAT's first turn."""
    from hsl_tools.llm.base import GenerationParams, make_chat_model

    if isinstance(model, str):
        model = make_chat_model(model)
    return model.generate([CHAT[:2]], GenerationParams(max_new_tokens=6))[0]


def test_vllm_generates_what_transformers_does(adapted: tuple[Path, Path]) -> None:
    need("vllm")
    merged = adapted[1]
    reply = greedy(f"hf:{merged}")
    assert reply  # trained on actions, it says one
    assert greedy(f"vllm:{merged}?max_model_len=1024") == reply


def test_vllm_applies_a_lora_adapter(tiny_model: Path, adapted: tuple[Path, Path]) -> None:
    """With the adapter, vLLM answers as the merged model does, not as the base model."""
    need("vllm")
    from hsl_tools.llm.vllm_backend import VLLMChatModel

    adapter, merged = adapted
    assert greedy(f"hf:{merged}") != greedy(f"hf:{tiny_model}")
    with_adapter = VLLMChatModel(str(tiny_model), max_model_len=1024, lora=str(adapter))
    assert greedy(with_adapter) == greedy(f"hf:{merged}")


def test_the_llama_1b_preset_is_shaped_as_llama_3_2_1b() -> None:
    """Built on the meta device (no memory): Llama-3.2-1B's 1,235,814,400 parameters, so
    benchmarks/bench_step.py measures the paper's agent's cost without a download."""
    import torch
    from transformers import LlamaForCausalLM

    from hsl_tools.init_model import scratch_config

    with torch.device("meta"):
        model = LlamaForCausalLM(scratch_config("llama-1b", 2048))
    assert model.num_parameters() == 1_235_814_400
