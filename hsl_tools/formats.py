"""Trajectory dumps from and to other stacks: ETO / ShareGPT, AgentGym and OpenAI `messages`.

Import reads a JSON list or JSONL of conversations into our trajectory records. Export writes
demos (or trajectories) so that other trainers can use them, with our relevance masks as
AgentGym's per-message `loss` flags or OpenAI's per-message `weight`:

- `eto` (ShareGPT): `{"id", "conversations": [{"from": "human"|"gpt", "value"}]}`; turn 0 the
  task preamble, turn 1 "OK", turn 2 the observation with "Your task is to: ...", then
  "Thought: ...\\nAction: ..." and "Observation: ..." turns. Masks cannot be said here.
- `agentgym`: the same, each message with `"loss": true|false`.
- `openai`: `{"messages": [{"role", "content", "weight"?}]}`, rendered exactly as our own
  training renders it (TRL, LLaMA-Factory and OpenAI fine-tuning read this shape).

ETO-era dumps say "put X in/on Y" and "You put the X in/on the Y." where alfworld 0.4 games
say "move X to Y" and "You move the X to the Y.": import maps the old form to the new one (and
counts it in `meta["mapped_put"]`); export writes the old form only when asked (`legacy_put`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from hsl_tools.chat import parse_reply, render, system_prompt
from hsl_tools.envs.base import env_class
from hsl_tools.records import (
    Demo,
    RecordError,
    Step,
    Trajectory,
    made_by_path,
    write_json,
    write_lines,
    write_records,
)
from hsl_tools.shards import Shard, mark, of_shard

Format = Literal["eto", "agentgym", "openai"]
FORMATS: tuple[str, ...] = ("eto", "agentgym", "openai")
_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant",
          "system": "system"}
_PUT_ACTION = re.compile(r"^put (.+?) in/on (.+)$")
_PUT_FEEDBACK = re.compile(r"^You put the (.+?) in/on the (.+?)\.")
_MOVE_ACTION = re.compile(r"^move (.+?) to (.+)$")
_MOVE_FEEDBACK = re.compile(r"^You move the (.+?) to the (.+?)\.")
Turn = dict[str, str]  # role (system, user or assistant) and content


def _items(path: Path) -> Iterator[tuple[str, Any]]:
    """(where, item) for each conversation of a JSON list or a JSONL file."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise RecordError(f"{path}: not UTF-8 text (byte {e.object[e.start]:#04x} at offset "
                          f"{e.start})") from None
    if text.lstrip().startswith("["):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise RecordError(f"{path}:{e.lineno}: invalid JSON: {e.msg}") from None
        for i, item in enumerate(data):
            yield f"{path}: item {i}", item
        return
    for lineno, line in enumerate(text.splitlines(), 1):
        if line.strip():
            try:
                yield f"{path}:{lineno}", json.loads(line)
            except json.JSONDecodeError as e:
                raise RecordError(f"{path}:{lineno}: invalid JSON: {e.msg}") from None


def _turns(where: str, item: Any) -> list[Turn]:
    if not isinstance(item, dict):
        raise RecordError(f"{where}: expected an object with 'conversations' or 'messages'")
    key = "conversations" if "conversations" in item else "messages"
    messages = item.get(key)
    if not isinstance(messages, list) or not messages:
        raise RecordError(f"{where}: conversations: expected a non-empty list of messages")
    turns = []
    for j, m in enumerate(messages):
        role = m.get("from", m.get("role")) if isinstance(m, dict) else None
        content = m.get("value", m.get("content")) if isinstance(m, dict) else None
        if not isinstance(role, str) or role not in _ROLES or not isinstance(content, str):
            raise RecordError(f"{where}: {key}.{j}: expected from/role in "
                              f"{sorted(_ROLES)} and a string value/content")
        turns.append(Turn(role=_ROLES[role], content=content))
    return turns


def _observation(content: str) -> str:
    """A user turn's text without the "Observation:" that ETO puts before it."""
    return content.strip().removeprefix("Observation:").strip()


def record_env(record: Demo | Trajectory) -> str:
    """The environment a record came from (a demo may not say: ALFWorld, as ETO's are)."""
    return record.env or "alfworld"


def modern_action(action: str) -> str:
    return _PUT_ACTION.sub(r"move \1 to \2", action)


def modern_feedback(observation: str) -> str:
    return _PUT_FEEDBACK.sub(r"You move the \1 to the \2.", observation)


def legacy_action(action: str) -> str:
    return _MOVE_ACTION.sub(r"put \1 in/on \2", action)


def legacy_feedback(observation: str) -> str:
    return _MOVE_FEEDBACK.sub(r"You put the \1 in/on the \2.", observation)


def to_trajectory(where: str, item: Any, env: str, split: str, success: bool,
                  policy: str) -> Trajectory:
    """One conversation as a trajectory; thoughts are kept, the preamble goes to meta."""
    turns = _turns(where, item)
    kind = env_class(env)
    start, task = next(((i, found) for i, t in enumerate(turns) if t["role"] == "user" and
                        (found := kind.task_of(_observation(t["content"])))), (None, None))
    if start is None or task is None:
        raise RecordError(f"{where}: conversations: no user turn holds the task, as {env} "
                          "shows it")
    instruction, observation = task
    steps: list[Step] = []
    mapped = 0
    for j in range(start + 1, len(turns)):
        turn = turns[j]
        if turn["role"] == "assistant":
            thought, action = parse_reply(turn["content"])
            if action is None:
                raise RecordError(f"{where}: conversations.{j}: an assistant turn with no action")
            new = modern_action(action)
            mapped += new != action
            steps.append(Step(action=new, observation="", thought=thought))
        elif turn["role"] == "user" and steps:
            text = _observation(turn["content"])
            new = modern_feedback(text)
            mapped += new != text
            steps[-1].observation = new
    split, task_id = kind.imported_task(item, split)
    preamble = [t["content"] for t in turns[:start] if not
                (t["role"] == "assistant" and t["content"].strip() == "OK")]
    meta: dict[str, Any] = {"imported_from": where, "mapped_put": mapped,
                            "preamble": "\n\n".join(preamble)}
    ident = str(item.get("id", item.get("item_id", task_id)))
    reward = float(item.get("reward", success))
    return Trajectory(id=ident, env=env, split=split, task_id=task_id or ident,
                      instruction=instruction, initial_observation=observation,
                      steps=steps, success=bool(item.get("success", reward > 0)), reward=reward,
                      policy=policy, meta=meta)


def import_file(path: Path, env: str = "alfworld", split: str = "train", success: bool = True,
                policy: str = "imported") -> list[Trajectory]:
    """Every conversation of an ETO / ShareGPT / AgentGym / OpenAI-messages file.
    `success` is used where an item has no `success` or `reward` of its own."""
    if not path.exists():
        raise RecordError(f"{path}: no such file")
    trajectories, first = [], {}
    for where, item in _items(path):
        t = to_trajectory(where, item, env, split, success, policy)
        if t.id in first:
            raise RecordError(f"{where}: id: {t.id!r} repeats {first[t.id]} (ids must be "
                              "unique: outputs are keyed by them)")
        first[t.id] = where
        trajectories.append(t)
    return trajectories


def import_to(path: Path, out: Path, env: str, split: str, success: bool,
              shard: Shard | None = None) -> tuple[int, int]:
    """`hsl import`: PATH's conversations (those of `shard`) into OUT as trajectories, with
    what made them; returns (trajectories, 'put X in/on Y' turns mapped to 'move X to Y')."""
    trajectories = of_shard(import_file(path, env, split, success), shard)
    write_records(out, trajectories)
    write_json(made_by_path(out), mark({"stage": "import", "source": path.name, "env": env,
                                        "split": split, "success": success}, shard))
    return len(trajectories), sum(t.meta["mapped_put"] for t in trajectories)


def _eto_messages(record: Demo | Trajectory, legacy_put: bool, flags: bool) -> list[dict]:
    action_text = legacy_action if legacy_put else (lambda a: a)
    feedback_text = legacy_feedback if legacy_put else (lambda o: o)
    # an imported dump keeps its own preamble; ours states our grammar
    preamble = (record.meta.get("preamble") if isinstance(record, Trajectory) else None) \
        or system_prompt(react=True, env=record_env(record))
    messages = [{"from": "human", "value": preamble, "loss": False},
                {"from": "gpt", "value": "OK", "loss": False},
                {"from": "human", "value": env_class(record_env(record)).dump_task(
                    record.instruction, record.initial_observation), "loss": False}]
    for i, step in enumerate(record.steps):
        if i:
            messages.append({"from": "human", "loss": False, "value":
                             f"Observation: {feedback_text(record.steps[i - 1].observation)}"})
        head = f"Thought: {step.thought}\n" if step.thought else ""
        messages.append({"from": "gpt", "value": f"{head}Action: {action_text(step.action)}",
                         "loss": bool(getattr(step, "relevant", True))})
    if not flags:
        for m in messages:
            del m["loss"]
    return messages


def _openai_messages(record: Demo | Trajectory) -> list[dict]:
    react = any(s.thought for s in record.steps)
    conversation = render(record.instruction, record.initial_observation, record.steps, react,
                          env=record_env(record))
    # the observation after the last action teaches nothing: end on the assistant turn
    messages: list[dict] = [dict(m) for m in conversation[:-1]]
    relevant = iter(bool(getattr(s, "relevant", True)) for s in record.steps)
    for m in messages:
        if m["role"] == "assistant":
            m["weight"] = int(next(relevant))
    return messages


def export_record(record: Demo | Trajectory, fmt: Format, legacy_put: bool = False) -> dict:
    """One record in another stack's shape (see the module docstring)."""
    if fmt == "openai":
        return {"id": record.id, "messages": _openai_messages(record)}
    key = "item_id" if fmt == "agentgym" else "id"
    return {key: record.id, "conversations": _eto_messages(record, legacy_put,
                                                           flags=fmt == "agentgym")}


def export_records(records: Sequence[Demo | Trajectory], fmt: Format, out: Path,
                   legacy_put: bool = False) -> int:
    """Write records to OUT: a JSON list for `.json` (as ETO ships), else one per line."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown format {fmt!r} (valid: {', '.join(FORMATS)})")
    items = [export_record(r, fmt, legacy_put) for r in records]
    if out.suffix == ".json":
        write_json(out, items)
    else:
        write_lines(out, [json.dumps(i, ensure_ascii=False) for i in items])
    return len(items)
