"""transformers backend: batched generation with left padding, on CPU or GPU.

The default for tests and the embedded demo. No structured outputs: callers validate replies.

Rollouts re-send a growing conversation every step. With `sessions` (one key per
conversation), the key/value states of each conversation are kept between calls, and a call
only runs the model over what is new since the last one (the last observation, and the reply
where the prompt renders it otherwise than it was generated): the prompt costs O(new tokens)
per step instead of O(whole history). Any common prefix of a prompt and its session's cached
tokens is reused; a session not named in a call is forgotten.

The states live in one buffer per layer, a row per session, each row's states left-aligned:
position = column, so RoPE and causality need no padding bookkeeping, and a step writes its
tokens in place. A batch that stays the same between calls (a rollout between episode ends)
copies nothing; one that changes gathers its rows once.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.cache_utils import Cache, DynamicLayer
from transformers.utils import logging as hf_logging

from hsl_tools.llm.base import (
    Conversation,
    GenerationParams,
    ModelError,
    chat_token_ids,
    conversation_seed,
    missing_local_path,
    strip_at_stop,
)

hf_logging.disable_progress_bar()  # "Loading weights" bars would garble our own progress


def load_pretrained(target: str, dtype: torch.dtype | str = "auto"
                    ) -> tuple[PreTrainedModel, AutoTokenizer]:
    """Model and tokenizer from a local folder or a hub name, with a one-line error."""
    if (missing := missing_local_path(target)) is not None:
        raise ModelError(f"cannot load model: {missing}")
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
        config = self.model.config
        self.context_length = getattr(config, "max_position_embeddings", 2048)
        # the agent counts a long history's tokens to cut it to the context: the tokenizer's
        # "longer than the maximum" warning on that count is noise in every long rollout's log
        self.tokenizer.model_max_length = 1 << 62
        window = getattr(config, "sliding_window", None)
        if window and window < self.context_length:  # our masks are full causal ones
            raise ModelError(f"{target}: sliding-window attention ({window} of "
                             f"{self.context_length} positions) is not supported by the hf "
                             "backend; use vllm:")
        eos = self.model.generation_config.eos_token_id
        self.stop_ids = {self.tokenizer.eos_token_id, *(eos if isinstance(eos, list) else [eos])
                         } - {None}
        self.cache = SessionCache()

    def count_tokens(self, conversation: Conversation) -> int:
        """Prompt length of a conversation, generation prompt included."""
        return len(self.prompt_ids(conversation))

    def prompt_ids(self, conversation: Conversation) -> list[int]:
        """The tokens a conversation is prompted with, generation prompt included."""
        return chat_token_ids(self.tokenizer, conversation)

    @torch.inference_mode()
    def generate(self, conversations: list[Conversation], params: GenerationParams,
                 sessions: list[str] | None = None) -> list[str]:
        """One reply per conversation; `sessions` keys let the next call reuse this prompt."""
        prompts = [self.prompt_ids(c) for c in conversations]
        seeds = [conversation_seed(params.seed, c) for c in conversations]
        if sessions is not None:
            if len(sessions) != len(conversations) or len(set(sessions)) != len(sessions):
                raise ValueError(f"{len(sessions)} sessions for {len(conversations)} "
                                 "conversations; they must be distinct, one per conversation")
            return self._generate(self.cache, sessions, prompts, params, seeds)
        replies: list[str] = []  # nothing is kept: each batch lays out buffers of its own
        for start in range(0, len(prompts), self.batch_size):
            part = slice(start, start + self.batch_size)
            keys = [str(i) for i in range(len(prompts[part]))]
            replies += self._generate(SessionCache(), keys, prompts[part], params, seeds[part])
        return replies

    def _generate(self, cache: SessionCache, sessions: list[str], prompts: list[list[int]],
                  params: GenerationParams, seeds: list[int]) -> list[str]:
        """Lay the sessions out as the cache's rows, then run `batch_size` rows at a time."""
        reuse = [cache.reusable(s, p) for s, p in zip(sessions, prompts, strict=True)]
        # every prompt and reply fits, and one column more for padding to write into
        capacity = max(map(len, prompts)) + params.max_new_tokens + 1
        cache.arrange(sessions, reuse, capacity, self._allocate)
        replies: list[str] = []
        for start in range(0, len(prompts), self.batch_size):
            rows = slice(start, start + self.batch_size)
            replies += self._run(cache, rows, sessions[rows], prompts[rows], reuse[rows], params,
                                 seeds[rows])
        return replies

    def _allocate(self, rows: int, capacity: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Zeroed key and value buffers, [rows, kv heads, capacity, head dim] a layer: a row's
        columns past its own end are masked but still read, and must not hold NaN garbage."""
        c = self.model.config
        heads = getattr(c, "num_key_value_heads", None) or c.num_attention_heads
        dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
        shape = (rows, heads, capacity, dim)
        return [tuple(torch.zeros(shape, dtype=self.model.dtype, device=self.device)
                      for _ in "kv") for _ in range(c.num_hidden_layers)]

    def _run(self, cache: SessionCache, rows: slice, sessions: list[str],
             prompts: list[list[int]], reuse: list[int], params: GenerationParams,
             seeds: list[int]) -> list[str]:
        """Prefill what is new of each prompt after its reused states, then decode; each row
        samples from its own generator, so its reply does not depend on the batch."""
        layers = [(k[rows], v[rows]) for k, v in cache.layers]  # views: writes land in the cache
        batch, dev = len(prompts), self.device
        logits = self._prefill(layers, [p[r:] for p, r in zip(prompts, reuse, strict=True)],
                               reuse)
        ends = torch.tensor([len(p) for p in prompts], device=dev)  # where each row writes next
        generators = [torch.Generator(dev).manual_seed(s) for s in seeds]
        eos = set(self.stop_ids)
        generated: list[list[int]] = [[] for _ in prompts]
        done = [False] * batch
        fed = 0  # decode steps run: generated token t has states if t < fed
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
            logits = self._forward(layers, tokens[:, None], ends[:, None], ends[:, None])
            ends += 1
            fed += 1
        for session, prompt, reply in zip(sessions, prompts, generated, strict=True):
            cache.ids[session] = prompt + reply[:fed]
        return [strip_at_stop(self.tokenizer.decode(g, skip_special_tokens=True), params.stop)
                for g in generated]

    def _prefill(self, layers: list[tuple[torch.Tensor, torch.Tensor]], new: list[list[int]],
                 reuse: list[int]) -> torch.Tensor:
        """Run each row's new tokens after its reused states; next-token logits per row. Rows
        are padded to the longest of their group (`prefill_groups`): one row that recomputes
        its whole history (cut to the context) must not make every row compute as many."""
        groups = prefill_groups([len(t) for t in new])
        if len(groups) == 1:
            return self._forward(layers, *self._queries(new, reuse))
        logits: list[torch.Tensor] = [torch.empty(0)] * len(new)
        for group in groups:
            index = torch.tensor(group, device=self.device)
            width = max(reuse[i] + len(new[i]) for i in group) + 1  # + the padding column
            # a group's rows gathered (a copy), run, and their states put back
            part = [(k[index, :, :width], v[index, :, :width]) for k, v in layers]
            out = self._forward(part, *self._queries([new[i] for i in group],
                                                     [reuse[i] for i in group]))
            for (k, v), (pk, pv) in zip(layers, part, strict=True):
                k[index, :, :width], v[index, :, :width] = pk, pv
            for row, i in enumerate(group):
                logits[i] = out[row]
        return torch.stack(logits)

    def _queries(self, new: list[list[int]], reuse: list[int]
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Input ids, the columns they write and the positions they read up to: new tokens
        left-padded, so each row's last token is the last query; a padding query writes to the
        spare last column and reads column 0, and its output is never used."""
        batch, n_max, dev = len(new), max(map(len, new)), self.device
        input_ids = torch.full((batch, n_max), self.tokenizer.pad_token_id, device=dev)
        columns = torch.full((batch, n_max), -1, device=dev)
        reads = torch.zeros((batch, n_max), dtype=torch.long, device=dev)
        for i, (r, tokens) in enumerate(zip(reuse, new, strict=True)):
            n = len(tokens)
            input_ids[i, n_max - n:] = torch.tensor(tokens, device=dev)
            columns[i, n_max - n:] = reads[i, n_max - n:] = torch.arange(r, r + n, device=dev)
        return input_ids, columns, reads

    def _forward(self, layers: list[tuple[torch.Tensor, torch.Tensor]], input_ids: torch.Tensor,
                 columns: torch.Tensor, reads: torch.Tensor) -> torch.Tensor:
        """Next-token logits after the last query of each row. Query (i, j) writes its states
        to column columns[i, j] and attends to columns 0..reads[i, j], its position."""
        width = int(reads.max()) + 1
        mask = torch.arange(width, device=self.device) <= reads[:, None, :, None]
        cache = Cache(layers=[_RowsLayer(k, v, columns, width) for k, v in layers])
        return self.model(input_ids=input_ids, attention_mask=mask, position_ids=reads,
                          past_key_values=cache, use_cache=True, logits_to_keep=1
                          ).logits[:, -1, :]


def prefill_groups(lengths: list[int]) -> list[list[int]]:
    """Rows (indices) grouped by how many new tokens they prefill, so that padding each to its
    group's longest wastes little: by length, a group closes before a row over twice its
    shortest and 64 tokens more. Steps of a rollout make one group; a row whose history was
    cut and recomputed makes its own."""
    groups: list[list[int]] = []
    for i in sorted(range(len(lengths)), key=lengths.__getitem__):
        if groups and lengths[i] <= 2 * lengths[groups[-1][0]] + 64:
            groups[-1].append(i)
        else:
            groups.append([i])
    return groups


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


class _RowsLayer(DynamicLayer):
    """One layer's key/value cache over rows of preallocated buffers: each query's states are
    written in place at its own column (transformers' dynamic layer re-concatenates the whole
    cache every step); attention reads the first `width` columns."""

    def __init__(self, keys: torch.Tensor, values: torch.Tensor, columns: torch.Tensor,
                 width: int) -> None:
        super().__init__()
        self._k, self._v, self._columns = keys, values, columns
        self._rows = torch.arange(len(columns), device=columns.device)[:, None]
        self.dtype, self.device, self.is_initialized = keys.dtype, keys.device, True
        self.keys, self.values = keys[:, :, :width], values[:, :, :width]

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: object,
               **kwargs: object) -> tuple[torch.Tensor, torch.Tensor]:
        self._k[self._rows, :, self._columns] = key_states.transpose(1, 2)
        self._v[self._rows, :, self._columns] = value_states.transpose(1, 2)
        return self.keys, self.values


class SessionCache:
    """Each session's tokens (its last prompt and the reply's fed tokens) and their key/value
    states: one [rows, heads, capacity, dim] buffer pair per layer, row i for sessions[i],
    its first len(ids) columns filled."""

    def __init__(self) -> None:
        self.sessions: list[str] = []
        self.ids: dict[str, list[int]] = {}
        self.layers: list[tuple[torch.Tensor, torch.Tensor]] = []

    def reusable(self, session: str, prompt: list[int]) -> int:
        """How many leading prompt tokens already have cached states: the common prefix with
        the session's tokens, never the whole prompt (its last token must run to give the
        next-token logits)."""
        ids = self.ids.get(session, [])
        limit = min(len(ids), len(prompt) - 1)
        return next((j for j in range(limit) if ids[j] != prompt[j]), max(limit, 0))

    def arrange(self, sessions: list[str], reuse: list[int], capacity: int,
                allocate: Callable[[int, int], list[tuple[torch.Tensor, torch.Tensor]]]) -> None:
        """Give sessions[i] row i with its first reuse[i] states and room for `capacity`
        columns; forget the sessions not named."""
        self.ids = {s: self.ids[s] for s in sessions if s in self.ids}
        fits = bool(self.layers) and len(self.layers[0][0]) == len(sessions) \
            and self.layers[0][0].shape[2] >= capacity
        if fits and sessions == self.sessions:
            return  # the same rows as last time, and room enough: the states are in place
        # as many rows and room enough: move rows within the buffers (stale states left in a
        # row are masked); else new buffers, with room for a few more steps
        layers = self.layers if fits else allocate(len(sessions), -(-capacity // 256) * 256)
        old = {s: i for i, s in enumerate(self.sessions)}
        dst = [i for i, r in enumerate(reuse) if r]
        if dst:
            src = torch.tensor([old[sessions[i]] for i in dst], device=layers[0][0].device)
            dst, width = torch.tensor(dst, device=src.device), max(reuse)
            for new, old_pair in zip(layers, self.layers, strict=True):
                for buffer, before in zip(new, old_pair, strict=True):
                    buffer[dst, :, :width] = before[src, :, :width]  # indexing copies first
        self.sessions, self.layers = list(sessions), layers
