"""transformers backend: batched generation with left padding, on CPU or GPU.

The default for tests and the embedded demo. No structured outputs: callers validate replies.
"""

from __future__ import annotations

from pathlib import Path

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, PreTrainedModel
from transformers.utils import logging as hf_logging

from hsl_tools.llm.base import Conversation, GenerationParams, ModelError, strip_at_stop

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

    def count_tokens(self, conversation: Conversation) -> int:
        """Prompt length of a conversation, generation prompt included."""
        return len(self.tokenizer.apply_chat_template(conversation, add_generation_prompt=True,
                                                      tokenize=True, return_dict=True
                                                      )["input_ids"])

    @torch.inference_mode()
    def generate(self, conversations: list[Conversation],
                 params: GenerationParams) -> list[str]:
        replies: list[str] = []
        for start in range(0, len(conversations), self.batch_size):
            replies += self._generate(conversations[start:start + self.batch_size], params)
        return replies

    def _generate(self, conversations: list[Conversation], params: GenerationParams
                  ) -> list[str]:
        prompts = [self.tokenizer.apply_chat_template(c, add_generation_prompt=True,
                                                      tokenize=False) for c in conversations]
        batch = self.tokenizer(prompts, return_tensors="pt", padding=True,
                               add_special_tokens=False).to(self.device)
        sample = params.temperature > 0
        torch.manual_seed(params.seed)
        out = self.model.generate(
            **batch, max_new_tokens=params.max_new_tokens, do_sample=sample,
            temperature=params.temperature if sample else None,
            top_p=params.top_p if sample else None, top_k=None,
            stop_strings=list(params.stop) or None, tokenizer=self.tokenizer,
            pad_token_id=self.tokenizer.pad_token_id)
        texts = self.tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:],
                                            skip_special_tokens=True)
        return [strip_at_stop(t, params.stop) for t in texts]
