"""transformers backend: batched generation with left padding, on CPU or GPU.

The default for tests and the embedded demo. No structured outputs: callers validate replies.

Rollouts re-send a growing conversation every step. With `sessions` (one key per
conversation), the prompt's key/value cache is kept between calls, and a call only runs the
model over what is new since the last one (the last action and observation): the prompt
costs O(new tokens) per step instead of O(whole history). A session not named in a call is
forgotten, and a prompt that does not extend its cached one starts over.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer
from transformers.utils import logging as hf_logging

from hsl_tools.llm.base import (
    Conversation,
    GenerationParams,
    ModelError,
    conversation_seed,
    strip_at_stop,
)

hf_logging.disable_progress_bar()  # "Loading weights" bars would garble our own progress


def load_pretrained(target: str, dtype: torch.dtype | str = "auto"
                    ) -> tuple[PreTrainedModel, AutoTokenizer]:
    """Model and tokenizer from a local folder or a hub name, with a one-line error."""
    try:
        tokenizer = AutoTokenizer.from_pretrained(target)
        model = AutoModelForCausalLM.from_pretrained(target, dtype=dtype)
    except (OSError, ValueError) as e:
        where = "folder" if Path(target).exists() else "folder or hub model (no such path)"
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelError(f"cannot load model {target!r} as a {where}: {first}") from None
    return model, tokenizer


class HFChatModel:
    """A transformers causal LM; `batch_size` conversations go through `generate` at once."""

    supports_json_schema = False

    def __init__(self, target: str, device: str | None = None, batch_size: int = 32,
                 dtype: torch.dtype | None = None) -> None:
        self.spec = f"hf:{target}"
        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        # CPUs are slow and inexact in bf16: compute in fp32 there, in the saved dtype on GPUs.
        self.model, self.tokenizer = load_pretrained(
            target, dtype or ("auto" if self.device.startswith("cuda") else torch.float32))
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.batch_size = batch_size
        self.context_length = getattr(self.model.config, "max_position_embeddings", 2048)
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])
                         } - {None}
        self.cache = SessionCache()

    def count_tokens(self, conversation: Conversation) -> int:
        """Prompt length of a conversation, generation prompt included."""
        return len(self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True,
                                                      tokenize=True, return_dict=True
                                                      )["input_ids"])

    @torch.inference_mode()
    def generate(self, conversations: list[Conversation], params: GenerationParams,
                 sessions: list[str] | None = None) -> list[str]:
        """One reply per conversation; `sessions` keys let the next call reuse this prompt."""
        prompts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True,
                                                      tokenize=True, return_dict=True
                                                      )["input_ids"] for c in conversations]
        if sessions is not None:
            if len(sessions) != len(conversations):
                raise ValueError(f"{len(sessions)} sessions for {len(conversations)} "
                                 "conversations")
            self.cache.keep_only(sessions)
        seeds = [conversation_seed(params.seed, c) for c in conversations]
        replies: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = slice(start, start + self.batch_size)
            replies += self._run(prompts[chunk], None if sessions is None else sessions[chunk],
                                 params, seeds[chunk])
        return replies

    def _run(self, prompts: list[list[int]], sessions: list[str] | None,
             params: GenerationParams, seeds: list[int]) -> list[str]:
        """Prefill what is new of each prompt on top of its cached states, then decode; each
        row samples from its own generator, so its reply does not depend on the batch."""
        reuse = [0] * len(prompts) if sessions is None else [
            self.cache.reusable(s, p) for s, p in zip(sessions, prompts, strict=True)]
        self._max_new = params.max_new_tokens
        cache, mask, last = self._prefill(prompts, sessions, reuse)
        logits, position = last
        generators = [torch.Generator(self.device).manual_seed(s) for s in seeds]
        eos = set(self.stop_ids)
        generated: list[list[int]] = [[] for _ in prompts]
        done = [False] * len(prompts)
        for _ in range(params.max_new_tokens):
            tokens = _pick(logits, params, generators)
            for i, token in enumerate(tokens.tolist()):
                if done[i]:
                    continue
                if token in eos:
                    done[i] = True
                    continue
                generated[i].append(token)
                done[i] = len(generated[i]) >= params.max_new_tokens or bool(params.stop) and any(
                    s in self.tokenizer.decode(generated[i][-16:]) for s in params.stop)
            if all(done):
                break
            mask = torch.cat([mask, mask.new_ones(len(prompts), 1)], dim=1)
            position = position + 1
            logits = self.model(input_ids=tokens[:, None], attention_mask=mask,
                                position_ids=position[:, None], past_key_values=cache,
                                use_cache=True).logits[:, -1, :]
        return [strip_at_stop(self.tokenizer.decode(g, skip_special_tokens=True), params.stop)
                for g in generated]

    def _prefill(self, prompts: list[list[int]], sessions: list[str] | None, reuse: list[int]
                 ) -> tuple[Cache, torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
        """Run the uncached part of every prompt in one forward pass.

        Row i of the batch is laid out as [pad][cached c_i][pad][new n_i]: cached states are
        right-aligned in the first C columns, new tokens in the last N, and the attention mask
        hides the padding, so causality by column and RoPE by explicit position stay exact.
        """
        batch, dev = len(prompts), self.device
        new = [p[r:] for p, r in zip(prompts, reuse, strict=True)]
        c_max, n_max = max(reuse), max(map(len, new))
        input_ids = torch.full((batch, n_max), self.tokenizer.pad_token_id, device=dev)
        mask = torch.zeros((batch, c_max + n_max), dtype=torch.long, device=dev)
        positions = torch.ones((batch, n_max), dtype=torch.long, device=dev)
        for i, (r, tokens) in enumerate(zip(reuse, new, strict=True)):
            n = len(tokens)
            input_ids[i, n_max - n:] = torch.tensor(tokens, device=dev)
            mask[i, c_max - r:c_max] = 1
            mask[i, c_max + n_max - n:] = 1
            positions[i, n_max - n:] = torch.arange(r, r + n, device=dev)
        capacity = c_max + n_max + self._max_new
        past = self._stacked(sessions, reuse, c_max, capacity) if c_max and sessions else None
        cache = Cache(layers=[_BufferLayer(capacity, None if past is None else past[i], c_max)
                              for i in range(self.model.config.num_hidden_layers)])
        out = self.model(input_ids=input_ids, attention_mask=mask, position_ids=positions,
                         past_key_values=cache, use_cache=True)
        if sessions is not None:  # keep each prompt's states (generated tokens come later)
            for i, (session, r, tokens) in enumerate(zip(sessions, reuse, new, strict=True)):
                width = c_max + n_max
                states = [(torch.cat([layer.keys[i:i + 1, :, c_max - r:c_max],
                                      layer.keys[i:i + 1, :, width - len(tokens):]], dim=2),
                           torch.cat([layer.values[i:i + 1, :, c_max - r:c_max],
                                      layer.values[i:i + 1, :, width - len(tokens):]], dim=2))
                          for layer in cache.layers]
                self.cache.entries[session] = (prompts[i], states)
        return cache, mask, (out.logits[:, -1, :], positions[:, -1])

    def _stacked(self, sessions: list[str], reuse: list[int], width: int, capacity: int
                 ) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Key/value buffers of `capacity` columns per layer, the batch's cached states
        right-aligned in the first `width` (zeros left of them: masked, but read)."""
        template = next(self.cache.entries[s][1]
                        for s, r in zip(sessions, reuse, strict=True) if r)
        stacked = []
        for layer, (k0, _) in enumerate(template):
            shape = (len(sessions), k0.shape[1], capacity, k0.shape[3])
            keys, values = k0.new_empty(shape), k0.new_empty(shape)
            keys[:, :, :width], values[:, :, :width] = 0, 0
            for i, (session, r) in enumerate(zip(sessions, reuse, strict=True)):
                if r:
                    k, v = self.cache.entries[session][1][layer]
                    keys[i, :, width - r:width], values[i, :, width - r:width] = k[0], v[0]
            stacked.append((keys, values))
        return stacked


def _pick(logits: torch.Tensor, params: GenerationParams, generators: list[torch.Generator]
          ) -> torch.Tensor:
    """Greedy at temperature 0, else nucleus sampling, row i drawing from generators[i]."""
    if params.temperature <= 0:
        return logits.argmax(dim=-1)
    probs = torch.softmax(logits.float() / params.temperature, dim=-1)
    if params.top_p < 1.0:
        sorted_probs, order = probs.sort(dim=-1, descending=True)
        outside = sorted_probs.cumsum(dim=-1) - sorted_probs > params.top_p
        sorted_probs[outside] = 0.0
        probs = torch.zeros_like(probs).scatter(-1, order, sorted_probs)
    return torch.cat([torch.multinomial(row, 1, generator=g)
                      for row, g in zip(probs, generators, strict=True)])


class _BufferLayer(DynamicLayer):
    """A key/value cache layer over preallocated buffers: appending a token writes in place,
    where transformers' dynamic layer re-concatenates the whole cache every step. Only the
    first `length` columns are ever read, so new buffers are left uninitialised (zero-filling
    them cost a tenth of a rollout's time)."""

    def __init__(self, capacity: int, past: tuple[torch.Tensor, torch.Tensor] | None = None,
                 length: int = 0) -> None:
        """`past`: key and value buffers of `capacity` columns, the first `length` filled."""
        super().__init__()
        self.capacity, self.length = capacity, length
        if past is not None:
            self._k, self._v = past
            self.dtype, self.device, self.is_initialized = self._k.dtype, self._k.device, True
            self.keys, self.values = self._k[:, :, :length], self._v[:, :, :length]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            batch, heads, _, dim = key_states.shape
            shape = (batch, heads, self.capacity, dim)
            self._k, self._v = key_states.new_empty(shape), value_states.new_empty(shape)
            self.dtype, self.device, self.is_initialized = key_states.dtype, key_states.device, True
        end = self.length + key_states.shape[2]
        self._k[:, :, self.length:end] = key_states
        self._v[:, :, self.length:end] = value_states
        self.length = end
        self.keys, self.values = self._k[:, :, :end], self._v[:, :, :end]
        return self.keys, self.values


class SessionCache:
    """Per-session prompt tokens and their key/value states, one [1, heads, len, dim] pair per
    layer; generated tokens are not kept (the next prompt re-renders the reply itself)."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[list[int], list[tuple[torch.Tensor, torch.Tensor]]]] = {}

    def reusable(self, session: str, prompt: list[int]) -> int:
        """How many leading prompt tokens already have cached states (never all of them:
        the last prompt token must run to give the next-token logits)."""
        if session not in self.entries:
            return 0
        ids, _ = self.entries[session]
        return len(ids) if len(ids) < len(prompt) and prompt[:len(ids)] == ids else 0

    def keep_only(self, sessions: list[str]) -> None:
        for key in set(self.entries) - set(sessions):
            del self.entries[key]
