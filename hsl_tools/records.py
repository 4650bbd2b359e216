"""The JSONL records that pass between stages, and crash-safe reading and writing of them.

Every record carries a `schema` tag and keeps fields it does not know (a dump from another
tool loses nothing on a round trip). Reading fails on the first bad line with
`path:line: field: what is wrong`. Outputs are written so that a killed stage never leaves
a half file where a good one was, and a re-run resumes instead of redoing finished records.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal, Self, TextIO, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator


class RecordError(ValueError):
    """A bad input line; the message is one line: `path:line: field: what is wrong`."""


class Record(BaseModel):
    """Base of all records: unknown fields are kept; `schema` is serialised under that name."""

    model_config = ConfigDict(extra="allow", populate_by_name=True)
    SCHEMA: ClassVar[str]

    def to_json(self) -> str:
        return json.dumps(self.model_dump(by_alias=True, mode="json"), ensure_ascii=False)


class Step(Record):
    """Action a_i and the observation that followed it."""

    action: str
    observation: str
    thought: str | None = None


class Trajectory(Record):
    """One episode of one policy on one task; the instruction is kept out of the observation."""

    SCHEMA: ClassVar[str] = "hsl.trajectory/1"
    schema_: Literal["hsl.trajectory/1"] = Field("hsl.trajectory/1", alias="schema")
    id: str
    env: str
    split: str
    task_id: str
    instruction: str
    initial_observation: str
    steps: list[Step] = Field(default_factory=list)
    success: bool = False
    reward: float = 0.0
    policy: str = ""
    meta: dict[str, Any] = Field(default_factory=dict)


class GoalRecord(Record):
    """One achieved goal of one trajectory, with the prefix of the trajectory up to step S(k)."""

    SCHEMA: ClassVar[str] = "hsl.goal/1"
    schema_: Literal["hsl.goal/1"] = Field("hsl.goal/1", alias="schema")
    id: str
    trajectory_id: str
    goal: str
    step: int = Field(ge=1, description="S(k): 1-based step at which the goal first held")
    relabeler: str
    prompt: str | None = None
    trajectory: Trajectory
    raw: str | None = None

    @model_validator(mode="after")
    def _prefix_reaches_the_goal(self) -> GoalRecord:
        if self.step > len(self.trajectory.steps):
            raise ValueError(f"step S(k) = {self.step}, but the trajectory prefix holds "
                             f"{len(self.trajectory.steps)} steps")
        return self


class DemoStep(Step):
    """A demo step: `relevant` is the action's z in the HSL loss."""

    relevant: bool = True
    reason: str | None = None


class Demo(Record):
    """A demonstration to train on: ground truth, hindsight-relabeled, or the agent's own."""

    SCHEMA: ClassVar[str] = "hsl.demo/1"
    schema_: Literal["hsl.demo/1"] = Field("hsl.demo/1", alias="schema")
    id: str
    source: Literal["ground_truth", "hindsight", "self_imitation"]
    instruction: str
    initial_observation: str
    steps: list[DemoStep]
    relabeler: str | None = None
    prompt: str | None = None
    env: str | None = None
    trajectory_id: str | None = None
    task_id: str | None = None
    n_relevant: int = Field(0, description="n_d: actions with z = 1 (derived from steps)")
    n_actions: int = Field(0, description="T_d: actions in the demo (derived from steps)")

    @model_validator(mode="after")
    def _count(self) -> Demo:
        self.n_relevant = sum(s.relevant for s in self.steps)
        self.n_actions = len(self.steps)
        return self


class FailureRecord(Record):
    """An input a relabeler could not answer after its retries, with its last reply."""

    SCHEMA: ClassVar[str] = "hsl.failure/1"
    schema_: Literal["hsl.failure/1"] = Field("hsl.failure/1", alias="schema")
    id: str
    stage: Literal["relabel", "mask"]
    relabeler: str
    prompt: str | None = None
    reason: str
    raw: str


R = TypeVar("R", bound=Record)


def first_error(err: ValidationError, whole: str = "") -> str:
    """The first validation error as "field.path: what is wrong" (`whole` names the field
    when the error is about the document itself)."""
    return _problem(err.errors()[0], whole)


def every_error(err: ValidationError, whole: str = "") -> str:
    """Every validation error, as first_error says each, joined by "; " (a config is fixed
    in one go, not one rerun per mistake)."""
    return "; ".join(_problem(e, whole) for e in err.errors())


def _problem(error: Any, whole: str) -> str:
    where = ".".join(str(p) for p in error["loc"]) or whole
    message = str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {message}" if where else message


def _error_line(path: Path, lineno: int, err: ValidationError) -> str:
    more = f" (+{err.error_count() - 1} more)" if err.error_count() > 1 else ""
    return f"{path}:{lineno}: {first_error(err, '(record)')}{more}"


def _check_file(path: Path) -> None:
    if not path.exists():
        raise RecordError(f"{path}: no such file")
    if path.is_dir():
        raise RecordError(f"{path}: is a folder, not a file")


def _text_lines(path: Path, drop_torn_tail: bool = False) -> Iterator[tuple[int, str]]:
    """(line number, text) of a file, each line decoded alone, so bytes that are not UTF-8
    fail with the line they are on; `drop_torn_tail` leaves out a last line that has no
    newline (a write cut short, perhaps inside a character)."""
    with path.open("rb") as f:
        for lineno, raw in enumerate(f, 1):
            if drop_torn_tail and not raw.endswith(b"\n"):
                return
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                raise RecordError(f"{path}:{lineno}: not UTF-8 text (byte {raw[e.start]:#04x} "
                                  f"at column {e.start + 1})") from None


def read_json(path: str | Path) -> Any:
    """One JSON document (a recipe, a summary), with a one-line error naming the file."""
    path = Path(path)
    _check_file(path)
    text = "".join(line for _, line in _text_lines(path))
    try:
        return json.loads(text)
    except json.JSONDecodeError as e:
        raise RecordError(f"{path}:{e.lineno}: invalid JSON: {e.msg} (column {e.colno})"
                          ) from None


def read_records(path: str | Path, model: type[R]) -> Iterator[R]:
    """Yield validated records from a JSONL file; blank lines are skipped."""
    for _, record in _numbered(Path(path), model):
        yield record


def _numbered(path: Path, model: type[R]) -> Iterator[tuple[int, R]]:
    """(line number, validated record) of a JSONL file; blank lines are skipped."""
    _check_file(path)
    for lineno, line in _text_lines(path):
        if not line.strip():
            continue
        try:
            data = json.loads(line)
        except json.JSONDecodeError as e:
            raise RecordError(
                f"{path}:{lineno}: invalid JSON: {e.msg} (column {e.colno})") from None
        if not isinstance(data, dict):
            raise RecordError(f"{path}:{lineno}: expected a JSON object")
        try:
            record = model.model_validate(data)
        except ValidationError as e:
            raise RecordError(_error_line(path, lineno, e)) from None
        yield lineno, record


def read_unique(path: str | Path, model: type[R]) -> list[R]:
    """All records of a file whose ids must be unique (a stage keys its outputs by them): a
    repeated id fails at its line, naming the line it repeats."""
    path = Path(path)
    first: dict[str, int] = {}
    records = []
    for lineno, record in _numbered(path, model):
        key = str(getattr(record, "id", ""))
        if key in first:
            raise RecordError(f"{path}:{lineno}: id: {key!r} repeats line {first[key]} (ids "
                              "must be unique: outputs are keyed by them)")
        first[key] = lineno
        records.append(record)
    return records


def _write_atomically(path: Path, lines: Iterable[str]) -> int:
    """Write lines to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    n = 0
    try:
        with tmp.open("w", encoding="utf-8") as f:
            for line in lines:
                f.write(line)
                n += 1
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return n


def write_records(path: str | Path, records: Iterable[Record]) -> int:
    """Write all records at once, atomically; returns the count."""
    return _write_atomically(Path(path), (r.to_json() + "\n" for r in records))


def write_lines(path: str | Path, lines: Iterable[str]) -> int:
    """Write text lines (no newlines in them), atomically; returns the count."""
    return _write_atomically(Path(path), (line + "\n" for line in lines))


def write_json(path: str | Path, data: Any) -> None:
    """Write one JSON document (a summary, a config), atomically."""
    _write_atomically(Path(path), [json.dumps(data, indent=2, ensure_ascii=False) + "\n"])


def made_by_path(path: Path) -> Path:
    """Where a stage records what made its output: OUT.made-by.json."""
    return path.with_name(path.name + ".made-by.json")


def check_made_by(path: Path, made_by: dict[str, Any]) -> None:
    """Raise RecordError if the output at `path` says another maker (other settings) made it."""
    sidecar = made_by_path(path)
    if not sidecar.exists():
        return
    made_by = json.loads(json.dumps(made_by))  # compared as it reads back
    before = read_json(sidecar)
    if before != made_by:
        changed = sorted(k for k in before.keys() | made_by.keys()
                         if before.get(k) != made_by.get(k))
        what = ", ".join(f"{k} {before.get(k)!r} -> {made_by.get(k)!r}" for k in changed)
        raise RecordError(f"{path}: made by other settings ({what}); resuming would hand back "
                          "their records as new: use --fresh or another --out")


class StageOutput:
    """Append-only, resumable output of one stage.

    Records go to `OUT.partial`, flushed one by one, so a killed stage keeps what it finished;
    `finish()` renames the partial file onto OUT in one step, so OUT is only ever a whole file.
    On open, records already in OUT or in a partial file count as done (`done` holds their
    keys) and are carried over: a re-run skips them. `fresh=True` starts from nothing.

    `made_by` says what makes the records (stage, policy or relabeler, prompt, the options
    that change results); it is kept beside OUT (`OUT.made-by.json`), and a run made by
    anything else refuses to resume, so another relabeler's work is never handed back as new.

    Inputs marked done (`mark_done`) are logged in `OUT.skipped`: those that yielded no
    record, or with `per_input` (an input that yields several records, as a trajectory its
    goals) every input once all its records are written; then records of an input the log
    does not hold are dropped on resume and made again, so a kill between two of them loses
    none and duplicates none.
    """

    def __init__(self, path: str | Path, model: type[Record],
                 key: Callable[[Any], str] = lambda r: r.id, fresh: bool = False,
                 made_by: dict[str, Any] | None = None, per_input: bool = False) -> None:
        self.path = Path(path)
        self.partial = self.path.with_name(self.path.name + ".partial")
        self.skipped_path = self.path.with_name(self.path.name + ".skipped")
        self.key = key
        self.done: set[str] = set()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        if made_by is not None:
            self._claim(made_by, fresh)
        if fresh:
            self.skipped_path.unlink(missing_ok=True)
        logged = set(self.skipped_path.read_text(encoding="utf-8").split()) \
            if self.skipped_path.exists() else set()
        complete = (lambda key: key in logged) if per_input else (lambda key: True)
        carried: list[str] = []
        if not fresh:
            carried = self._load(self.partial, model, True, complete)
            if not carried and self.path.exists():
                carried = self._load(self.path, model, False, complete)
        self.done.update(logged)
        self.resumed = len(self.done)  # inputs whose work is carried over
        self._f = self.partial.open("w", encoding="utf-8")
        self._f.writelines(carried)
        self._f.flush()
        self._skips: TextIO | None = None

    def _claim(self, made_by: dict[str, Any], fresh: bool) -> None:
        """Refuse to resume another maker's output; then record this maker beside OUT."""
        has_work = self.path.exists() or self.partial.exists() or self.skipped_path.exists()
        if not fresh and has_work:
            check_made_by(self.path, made_by)
        write_json(made_by_path(self.path), made_by)

    def _load(self, path: Path, model: type[Record], tolerate_torn_tail: bool,
              complete: Callable[[str], bool]) -> list[str]:
        """Lines of `path` that hold valid records of complete inputs (a partial file may end
        mid-line)."""
        if not path.exists():
            return []
        _check_file(path)
        kept = []
        for lineno, line in _text_lines(path, drop_torn_tail=tolerate_torn_tail):
            if not line.strip():
                continue
            try:
                record = model.model_validate_json(line)
            except ValidationError as e:
                raise RecordError(_error_line(path, lineno, e)) from None
            if complete(self.key(record)):
                self.done.add(self.key(record))
                kept.append(line if line.endswith("\n") else line + "\n")
        return kept

    def write(self, record: Record) -> None:
        self._f.write(record.to_json() + "\n")
        self._f.flush()
        self.done.add(self.key(record))

    def mark_done(self, key: str) -> None:
        """Log an input as done (one that yields no record, or with `per_input` one whose
        records are all written), so a re-run does not redo it."""
        if self._skips is None:
            self._skips = self.skipped_path.open("a", encoding="utf-8")
        self._skips.write(f"{key}\n")
        self._skips.flush()
        self.done.add(key)

    def finish(self) -> None:
        """Make the output whole: fsync and rename the partial file onto OUT."""
        self._f.flush()
        os.fsync(self._f.fileno())
        self.close()
        os.replace(self.partial, self.path)

    def close(self) -> None:
        """Stop without finishing: the partial file stays for the next run to resume."""
        for f in (self._f, self._skips):
            if f is not None and not f.closed:
                f.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, *_: object) -> None:
        if exc_type is None:
            self.finish()
        else:
            self.close()
