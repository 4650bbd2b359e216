"""What one training step computes, per objective: which examples it draws, and the loss of
one micro-batch of them. The loop (`loop.train`) only draws, cuts, backpropagates and logs;
everything that differs between SFT, HSL and DPO is here (as torchtune keeps its recipes'
loss steps apart from the loop).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

import torch
from accelerate import Accelerator
from torch import nn
from transformers import PreTrainedTokenizerBase

from hsl_tools.llm.hf import load_pretrained
from hsl_tools.records import Demo, Trajectory
from hsl_tools.train.config import TrainConfig
from hsl_tools.train.data import from_trajectory
from hsl_tools.train.encode import Encoded, encode
from hsl_tools.train.objectives import (
    collate,
    demo_nll,
    dpo_loss,
    hsl_loss,
    sampling_weights,
    sequence_logp,
)

Drawn = dict[str, list[int]]  # example indices by source, for one whole step
Loss = tuple[torch.Tensor, dict[str, float], int]  # (loss, named parts, tokens seen)


class Step(Protocol):
    def draw(self, gen: torch.Generator, n: int) -> Drawn:
        """The step's `n` examples of each source, drawn whole before it is cut into
        micro-batches, so that `grad_accum` changes memory and speed, not what it sees."""
        ...

    def loss(self, model: nn.Module, picked: Drawn) -> Loss:
        """One micro-batch's loss (its mean over the micro-batch) and parts to log."""
        ...


class SFTStep:
    """Mean demo NLL over ground-truth demos, drawn in shuffled epochs."""

    def __init__(self, gt: list[Encoded], order: Iterator[int], pad: int,
                 device: torch.device) -> None:
        self.gt, self.order, self.pad, self.device = gt, order, pad, device

    def draw(self, gen: torch.Generator, n: int) -> Drawn:
        return {"gt": [next(self.order) for _ in range(n)]}

    def nll(self, model: nn.Module, examples: list[Encoded]) -> tuple[torch.Tensor, int]:
        """Each demo's NLL ([B]) and the tokens the micro-batch holds."""
        batch = collate(examples, self.pad, self.device)
        return demo_nll(model, batch), int(batch["attention_mask"].sum())

    def loss(self, model: nn.Module, picked: Drawn) -> Loss:
        sft, tokens = self.nll(model, [self.gt[i] for i in picked["gt"]])
        return sft.mean(), {"loss_sft": sft.mean().item()}, tokens


class HSLStep(SFTStep):
    """SFT's batch plus one drawn from the hindsight buffer by P(d): lam * hindsight + (1 -
    lam) * SFT."""

    def __init__(self, gt: list[Encoded], order: Iterator[int], pad: int, device: torch.device,
                 buffer: list[Encoded], weights: torch.Tensor, lam: float) -> None:
        super().__init__(gt, order, pad, device)
        self.buffer, self.weights, self.lam = buffer, weights, lam

    def draw(self, gen: torch.Generator, n: int) -> Drawn:
        drawn = super().draw(gen, n)
        drawn["hindsight"] = torch.multinomial(self.weights, n, replacement=True,
                                               generator=gen).tolist()
        return drawn

    def loss(self, model: nn.Module, picked: Drawn) -> Loss:
        sft, sft_tokens = self.nll(model, [self.gt[i] for i in picked["gt"]])
        hs, hs_tokens = self.nll(model, [self.buffer[i] for i in picked["hindsight"]])
        parts = {"loss_sft": sft.mean().item(), "loss_hsl": hs.mean().item()}
        return hsl_loss(sft, hs, self.lam), parts, sft_tokens + hs_tokens


class DPOStep:
    """ETO's DPO: each expert demo preferred over the agent's failure on the same task,
    against a frozen reference model."""

    def __init__(self, pairs: list[tuple[Encoded, Encoded]], reference: nn.Module,
                 accelerator: Accelerator, pad: int, beta: float) -> None:
        self.pairs, self.reference, self.accelerator = pairs, reference, accelerator
        self.pad, self.beta = pad, beta

    def draw(self, gen: torch.Generator, n: int) -> Drawn:
        return {"pairs": torch.randint(len(self.pairs), (n,), generator=gen).tolist()}

    def loss(self, model: nn.Module, picked: Drawn) -> Loss:
        chosen, rejected = zip(*[self.pairs[i] for i in picked["pairs"]], strict=True)
        batches = [collate(list(side), self.pad, self.accelerator.device)
                   for side in (chosen, rejected)]
        # the reference in the policy's precision: at step 1 the two are the same model, so
        # their margins must cancel exactly (bf16 against fp32 left ~0.02 nats in every pair)
        with torch.no_grad(), self.accelerator.autocast():
            ref = [sequence_logp(self.reference, b) for b in batches]
        pol = [sequence_logp(model, b) for b in batches]
        tokens = sum(int(b["attention_mask"].sum()) for b in batches)
        return dpo_loss(pol[0], pol[1], ref[0], ref[1], self.beta), _drift(pol, ref), tokens


def _drift(policy: list[torch.Tensor], reference: list[torch.Tensor]) -> dict[str, float]:
    """How far the policy's log-likelihood of the chosen (expert) and rejected (agent) sides
    has moved from the reference's, in nats per sequence, and how often chosen moved above
    rejected. DPO only asks for the gap; both sides falling far (chosen too) is the collapse
    that a too-large learning rate brings."""
    chosen, rejected = (p.detach() - r for p, r in zip(policy, reference, strict=True))
    return {"logp_chosen_drift": chosen.mean().item(),
            "logp_rejected_drift": rejected.mean().item(),
            "pair_accuracy": (chosen > rejected).float().mean().item()}


def make_step(config: TrainConfig, tokenizer: PreTrainedTokenizerBase,
              accelerator: Accelerator, order: Iterator[int], gt: list[Encoded],
              ground_truth: list[Demo], buffer: list[Demo] | None,
              rejected: list[Trajectory] | None, reference: str) -> Step:
    """The objective's step, with what it needs (the buffer's weights, DPO's pairs and its
    reference model); bad inputs fail here, before the first step."""
    pad, device = tokenizer.pad_token_id, accelerator.device
    if config.objective == "sft":
        return SFTStep(gt, order, pad, device)
    if config.objective == "hsl":
        if not buffer:
            raise ValueError("HSL needs a non-empty hindsight buffer")
        weights = sampling_weights(buffer, config.alpha, config.uniform)
        if weights.sum() <= 0:
            raise ValueError("no demo in the buffer has a relevant action")
        encoded = [encode(tokenizer, d, config.max_len, mask=config.mask) for d in buffer]
        return HSLStep(gt, order, pad, device, encoded, weights, config.lam)
    by_task = {d.task_id: d for d in ground_truth if d.task_id}
    pairs = [(encode(tokenizer, by_task[t.task_id], config.max_len),
              encode(tokenizer, from_trajectory(t, "self_imitation"), config.max_len))
             for t in rejected or [] if t.task_id in by_task and not t.success]
    if not pairs:
        raise ValueError("DPO needs failed agent trajectories on tasks that have expert demos")
    ref_model, _ = load_pretrained(reference, torch.float32)
    ref_model.to(device).eval().requires_grad_(False)
    return DPOStep(pairs, ref_model, accelerator, pad, config.beta)
