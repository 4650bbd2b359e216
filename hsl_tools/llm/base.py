"""The chat-model protocol, its generation settings, and the spec strings that pick a backend.

`hf:PATH` (transformers), `vllm:PATH_OR_NAME` (vLLM offline), `openai:URL#MODEL` (any
OpenAI-compatible server). Every backend takes a whole batch of conversations at once.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

Message = dict[str, str]
Conversation = list[Message]


@dataclass(frozen=True)
class GenerationParams:
    """How to sample. temperature 0 is greedy; `json_schema` asks for structured output
    where the backend has it (others ignore it: callers validate what comes back): one schema
    for every conversation, or a list with one per conversation."""

    max_new_tokens: int = 64
    temperature: float = 0.0
    top_p: float = 1.0
    stop: tuple[str, ...] = ()
    seed: int = 0
    json_schema: dict[str, Any] | list[dict[str, Any]] | None = field(
        default=None, hash=False, compare=False)

    def but(self, **changes: Any) -> GenerationParams:
        return replace(self, **changes)

    def schema(self, i: int) -> dict[str, Any] | None:
        """The JSON schema of conversation i, if any."""
        return self.json_schema[i] if isinstance(self.json_schema, list) else self.json_schema


class ChatModel(Protocol):
    spec: str
    supports_json_schema: bool

    def generate(self, conversations: list[Conversation], params: GenerationParams,
                 sessions: list[str] | None = None) -> list[str]:
        """One reply per conversation, in order. `sessions` names each conversation so a
        backend may reuse work from an earlier call on the same one (hf keeps its prompt
        cache; vLLM caches prefixes by itself; others ignore it)."""
        ...


@runtime_checkable
class CountsTokens(Protocol):
    """A local model that knows its context, so a caller can keep a prompt inside it (hf,
    vLLM; a server's model does not say)."""

    context_length: int

    def count_tokens(self, conversation: Conversation) -> int: ...


def chat_token_ids(tokenizer: Any, conversation: Conversation) -> list[int]:
    """The tokens a conversation is prompted with, generation prompt included."""
    return tokenizer.apply_chat_template(conversation, add_generation_prompt=True,
                                         tokenize=True, return_dict=True)["input_ids"]


class ModelError(ValueError):
    """A model that cannot be loaded or reached; the message is one line."""


BACKENDS = {"hf": "hsl_tools.llm.hf:HFChatModel",
            "vllm": "hsl_tools.llm.vllm_backend:VLLMChatModel",
            "openai": "hsl_tools.llm.openai_backend:OpenAIChatModel"}


def missing_local_path(target: str) -> str | None:
    """Why `target` is taken for a local folder that does not exist (then no hub lookup is
    tried: it would spend a minute retrying a name that is no hub model); None otherwise.
    Local-looking: an absolute or ./ ../ ~ path, more than one slash, or a first part that is
    a local folder (`runs/nope` beside a `runs/`)."""
    path = Path(target).expanduser()
    if path.exists():
        return None
    parts = Path(target).parts
    local = target.startswith(("/", "./", "../", "~")) or target.count("/") > 1 or \
        (len(parts) > 1 and Path(parts[0]).is_dir())
    return f"{target}: no such folder" if local else None


def make_chat_model(spec: str, **options: Any) -> ChatModel:
    """A chat model from its spec, e.g. `hf:runs/m`, `vllm:meta-llama/Llama-3.3-70B-Instruct`,
    `openai:http://127.0.0.1:8000/v1#my-model`."""
    backend, _, target = spec.partition(":")
    if backend not in BACKENDS or not target:
        raise ModelError(f"bad model spec {spec!r} (valid: hf:PATH, vllm:PATH_OR_NAME, "
                         "openai:URL#MODEL)")
    module, cls = BACKENDS[backend].split(":")
    return getattr(importlib.import_module(module), cls)(target, **options)


def conversation_seed(seed: int, conversation: Conversation) -> int:
    """The sampling seed of one conversation: `seed` mixed with its text. One seed for every
    call would replay the same random draws at every step of an episode (a frozen bias, not
    sampling), and a reply would depend on its place in the batch."""
    text = json.dumps([seed, conversation], sort_keys=True).encode()
    return int.from_bytes(hashlib.blake2b(text, digest_size=4).digest(), "little")


def strip_at_stop(text: str, stop: tuple[str, ...]) -> str:
    """Cut a reply at the first stop string (backends may return text past it)."""
    cut = min((i for s in stop if (i := text.find(s)) >= 0), default=len(text))
    return text[:cut]
