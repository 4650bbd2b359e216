"""Shards: N processes or machines (a Slurm array, N containers) each run one part of a stage,
and `merge` joins the parts into what one process would have written.

A record belongs to shard I of N by a hash of its key (a task's `split/task_id`, an input
record's id), so the partition needs no coordination, does not depend on the input's order,
and the same key always lands in the same part. Each part says which shard it is in its
`OUT.made-by.json`; `merge` checks the parts were made alike and that every shard is there.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hsl_tools.records import (
    Demo,
    GoalRecord,
    RecordError,
    Trajectory,
    made_by_path,
    read_json,
    read_unique,
    write_json,
    write_lines,
)

# beside a stage's OUT, what its parts' files join into too
SIDE_FILES = (".failures.jsonl", ".replies.jsonl")
MODELS = {m.SCHEMA: m for m in (Trajectory, GoalRecord, Demo)}
R = TypeVar("R", Trajectory, GoalRecord)


@dataclass(frozen=True)
class Shard:
    """Shard `index` (1-based) of `count`."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str | None) -> Shard | None:
        """`I/N` (e.g. 2/8) as a Shard; None for None."""
        if text is None:
            return None
        index, sep, count = text.partition("/")
        if not (sep and index.isdigit() and count.isdigit() and 1 <= int(index) <= int(count)):
            raise ValueError(f"shard {text!r}: want I/N with 1 <= I <= N (e.g. 2/8)")
        return cls(int(index), int(count))

    def holds(self, key: str) -> bool:
        digest = hashlib.blake2b(key.encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") % self.count == self.index - 1

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def shard_work(work: list[tuple[str, list[str]]], shard: Shard | None
               ) -> list[tuple[str, list[str]]]:
    """The (split, task ids) of `work` that are this shard's (keyed `split/task_id`)."""
    if shard is None:
        return work
    return [(split, [t for t in ids if shard.holds(f"{split}/{t}")]) for split, ids in work]


def of_shard(records: list[R], shard: Shard | None) -> list[R]:
    """The records (keyed by id) that are this shard's; all of them without a shard."""
    return records if shard is None else [r for r in records if shard.holds(r.id)]


def mark(made_by: dict[str, Any], shard: Shard | None) -> dict[str, Any]:
    """A stage's made-by with its shard, if any (an unsharded output's stays as it was)."""
    return made_by if shard is None else {**made_by, "shard": str(shard)}


def merge(parts: list[Path], out: Path) -> int:
    """Join the parts of one sharded stage into OUT (their side files too); returns the
    record count. Refused, in one line, unless the parts are every shard of one stage made
    alike, and no record id appears twice."""
    if not parts:
        raise ValueError("merge: no parts given")
    makers = []
    for part in parts:
        if not part.is_file():
            partial = part.with_name(part.name + ".partial")
            raise RecordError(f"{part}: missing" + (" (its stage has not finished: "
                                                     f"{partial} exists)" if partial.exists()
                                                     else ""))
        if not made_by_path(part).exists():
            raise RecordError(f"{part}: no {made_by_path(part).name} beside it: not the output "
                              "of a stage run with --shard")
        makers.append(read_json(made_by_path(part)))
    made_by = _common_maker(parts, makers)
    _check_complete(parts, makers)
    model = _model(parts)
    seen: dict[str, Path] = {}
    lines = []
    for part in parts:
        for record in read_unique(part, model):
            if record.id in seen:
                raise RecordError(f"{part}: id {record.id!r} is also in {seen[record.id]}")
            seen[record.id] = part
            lines.append(record.to_json())
    n = write_lines(out, lines)
    for suffix in SIDE_FILES:
        sides = [p.with_name(p.stem + suffix) for p in parts]
        if any(s.exists() for s in sides):
            write_lines(out.with_name(out.stem + suffix),
                        [x for s in sides if s.exists()
                         for x in s.read_text(encoding="utf-8").splitlines() if x.strip()])
    skipped = [p.with_name(p.name + ".skipped") for p in parts]
    if any(s.exists() for s in skipped):
        write_lines(out.with_name(out.name + ".skipped"),
                    [x for s in skipped if s.exists() for x in s.read_text().split()])
    write_json(made_by_path(out), made_by)
    return n


def _common_maker(parts: list[Path], makers: list[dict[str, Any]]) -> dict[str, Any]:
    """The made-by the parts share, less the shard; refused if two were made otherwise."""
    for part, maker in zip(parts, makers, strict=True):
        if "shard" not in maker:
            raise RecordError(f"{part}: made without --shard: not a part to merge")
    bare = [{k: v for k, v in m.items() if k != "shard"} for m in makers]
    for part, maker in zip(parts[1:], bare[1:], strict=True):
        if maker != bare[0]:
            what = ", ".join(f"{k} {bare[0].get(k)!r} -> {maker.get(k)!r}"
                             for k in sorted(bare[0].keys() | maker.keys())
                             if bare[0].get(k) != maker.get(k))
            raise RecordError(f"{part}: made by other settings than {parts[0]} ({what})")
    return bare[0]


def _check_complete(parts: list[Path], makers: list[dict[str, Any]]) -> None:
    """Every shard 1..N exactly once."""
    shards = [Shard.parse(m["shard"]) for m in makers]
    count = shards[0].count  # type: ignore[union-attr]
    given: dict[int, Path] = {}
    for part, shard in zip(parts, shards, strict=True):
        assert shard is not None
        if shard.count != count:
            raise RecordError(f"{part}: shard {shard} of another split than {parts[0]}'s "
                              f"{shards[0]}")
        if shard.index in given:
            raise RecordError(f"{part}: shard {shard} is also {given[shard.index]}")
        given[shard.index] = part
    missing = [f"{i}/{count}" for i in range(1, count + 1) if i not in given]
    if missing:
        raise RecordError(f"merge: shard{'s' * (len(missing) > 1)} {', '.join(missing)} "
                          f"missing (given: {', '.join(sorted(f'{i}/{count}' for i in given))})")


def _model(parts: list[Path]) -> type[Trajectory] | type[GoalRecord] | type[Demo]:
    """The record type of the parts, from the first that holds one (a shard may be empty)."""
    from hsl_tools.train.data import schema_of

    for path in parts:
        schema = schema_of(path)
        if schema and schema not in MODELS:
            raise RecordError(f"{path}: records of schema {schema!r}; merge joins "
                              f"{', '.join(MODELS)}")
        if schema:
            return MODELS[schema]  # type: ignore[return-value]
    return Trajectory
