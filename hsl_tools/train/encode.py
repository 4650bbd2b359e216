"""A demo becomes tokens with per-action bookkeeping, through the rollout's own renderer.

The chat is rendered exactly as the agent sees it when acting (`chat.render`), and the chat
template's `{% generation %}` markers tell which tokens the agent wrote. Each such run of
tokens is one action (its text and end marker). Labels are -100 everywhere except the tokens
of actions with z = 1; `action_of[i]` says which action token i belongs to (-1: none), so
log P(a_t | ...) can be summed per action.

Longer than `max_len`: like a rollout, the sequence keeps the system message and the task, and
drops the oldest steps ("[N earlier steps omitted]") until it fits; dropped actions carry no
loss but still count in T_d (the demo has them).
"""

from __future__ import annotations

from dataclasses import dataclass

from transformers import PreTrainedTokenizerBase

from hsl_tools.chat import render
from hsl_tools.records import Demo

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]
    action_of: list[int]  # per token: index of the action it belongs to, -1 for the rest
    n_actions: int  # T_d: actions in the whole demo, dropped ones included
    relevant: list[bool]  # z_t for each action of the demo


def encode(tokenizer: PreTrainedTokenizerBase, demo: Demo, max_len: int = 4096,
           react: bool = False, mask: bool = True) -> Encoded:
    """Tokens, labels and action indices of one demo; `mask=False` sets every z_t to 1."""
    relevant = [s.relevant or not mask for s in demo.steps]
    for omitted in range(len(demo.steps)):
        # the last observation follows no action: not needed
        chat = render(demo.instruction, demo.initial_observation, demo.steps[omitted:], react,
                      omitted, demo.env or "household")[:-1]
        enc = tokenizer.apply_chat_template(chat, tokenize=True, return_dict=True,
                                            return_assistant_tokens_mask=True)
        if len(enc["input_ids"]) <= max_len:
            break
    else:
        raise ValueError(f"demo {demo.id}: even one step does not fit in {max_len} tokens")
    ids, marks = enc["input_ids"], enc["assistant_masks"]
    action_of, labels, action = [], [], omitted - 1
    for i, (token, marked) in enumerate(zip(ids, marks, strict=True)):
        if marked and (i == 0 or not marks[i - 1]):
            action += 1
        index = action if marked else -1
        action_of.append(index)
        labels.append(token if index >= 0 and relevant[index] else IGNORE)
    if action != len(demo.steps) - 1:
        raise ValueError(f"demo {demo.id}: the chat template marked {action - omitted + 1} "
                         f"assistant turns for {len(demo.steps) - omitted} actions; it needs "
                         "{% generation %} markers around each assistant message")
    return Encoded(ids, labels, action_of, len(demo.steps), relevant)
