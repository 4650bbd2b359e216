"""The losses, as METHOD.md writes them.

Per demo: (1/T_d) * sum_t z_t * (-log P(a_t | ...)), where log P(a_t) is the summed token
log-likelihood of action a_t and T_d counts every action of the demo. With z_t folded into
the labels (-100 on irrelevant actions, observations and instructions), that is the sum of
the labelled tokens' NLL divided by T_d.

SFT: the mean of that over ground-truth demos. HSL: lam * (mean over a batch drawn from the
buffer D' by P(d)) + (1 - lam) * SFT. Sampling by P(d) is the weighting; the loss is not
multiplied by P(d) again. DPO (as ETO): -log sigmoid(beta * (policy margin - reference margin)).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from hsl_tools.records import Demo
from hsl_tools.train.encode import IGNORE, Encoded


def collate(batch: list[Encoded], pad_id: int, device: torch.device | str = "cpu"
            ) -> dict[str, torch.Tensor]:
    """Right-padded tensors; `n_actions` is T_d per demo."""
    width = max(len(e.input_ids) for e in batch)

    def pad(rows: list[list[int]], value: int) -> torch.Tensor:
        return torch.tensor([r + [value] * (width - len(r)) for r in rows], device=device)

    return {"input_ids": pad([e.input_ids for e in batch], pad_id),
            "attention_mask": pad([[1] * len(e.input_ids) for e in batch], 0),
            "labels": pad([e.labels for e in batch], IGNORE),
            "action_of": pad([e.action_of for e in batch], -1),
            "n_actions": torch.tensor([e.n_actions for e in batch], device=device)}


def token_logp(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """log P of each labelled token given what precedes it, 0 elsewhere: [B, L-1]."""
    logits = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    targets = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2).float(), targets,
                          ignore_index=IGNORE, reduction="none")
    return -nll


def demo_nll(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """(1/T_d) * sum_t z_t * NLL(a_t) for each demo of the batch: [B]."""
    return -token_logp(model, batch).sum(dim=1) / batch["n_actions"]


def hsl_loss(sft: torch.Tensor, hindsight: torch.Tensor, lam: float) -> torch.Tensor:
    """L_HSL = lam * L_D' + (1 - lam) * L_SFT, each the mean over its own batch."""
    return lam * hindsight.mean() + (1 - lam) * sft.mean()


def sampling_weights(demos: list[Demo], alpha: float, uniform: bool = False) -> torch.Tensor:
    """w_d = (n_d / T_d)^alpha * n_d (demos with no relevant action get 0); or all ones."""
    if uniform:
        return torch.ones(len(demos), dtype=torch.float64)
    return torch.tensor([(d.n_relevant / d.n_actions) ** alpha * d.n_relevant
                         if d.n_actions else 0.0 for d in demos], dtype=torch.float64)


def sequence_logp(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """Summed log P of all labelled (agent-written) tokens of each sequence: [B]."""
    return token_logp(model, batch).sum(dim=1)


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor,
             ref_chosen: torch.Tensor, ref_rejected: torch.Tensor, beta: float) -> torch.Tensor:
    """ETO's DPO: prefer the expert demo to the agent's failed trajectory on the same task."""
    margin = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected)
    return -F.logsigmoid(beta * margin).mean()
