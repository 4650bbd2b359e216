"""ALFWorld games played in worker processes.

A reset takes 0.5-7 s and a step 30-200 ms of pure Python (less than half of both with
textworld's parses memoized: memo.py), and one process that loads many
games grows to GBs; so each running game lives in its own process, episodes in a batch step in
parallel, and a process is replaced after `max_loads` games. Workers are forked from a
forkserver that has imported textworld once (a spawned worker took ~0.6 s to import it
again), so they start in milliseconds and are safe
beside CUDA, vLLM or torch threads in the parent, as spawned ones are.
"""

from __future__ import annotations

import multiprocessing as mp
from multiprocessing.connection import Connection
from typing import Any

from hsl_tools.envs.alfworld.facts import PREDICATES
from hsl_tools.envs.alfworld.memo import memoize_textworld
from hsl_tools.envs.base import EnvError

Payload = dict[str, Any]
# what the forkserver imports before it forks workers. A worker still imports the parent's
# main module as multiprocessing does (`hsl` is light; a script that imports torch at the top
# costs each worker ~1.5 s).
PRELOAD = ["textworld", "alfworld.agents.environment.alfred_tw_env",
           "alfworld.agents.expert", __name__]


class WorkerError(EnvError):
    """A game process failed or died; the message names the game."""


def _payload(state: Any, plan: list[str]) -> Payload:
    facts = [(f.name, *(a.name.strip() for a in f.arguments))
             for f in state["facts"] if f.name in PREDICATES]
    return {"feedback": state["feedback"], "won": bool(state["won"]),
            "admissible": list(state["admissible_commands"]), "facts": facts, "plan": plan,
            "walkthrough": list(state.get("extra.walkthrough") or [])}


def _expert_plan(expert: Any, state: Any, command: str) -> list[str]:
    """The handcoded expert's next action as a one-item plan; [] once it has lost its way
    (it raises on some games, e.g. when it finds no object of interest)."""
    try:
        action = expert.act(state, 0, state["won"], command)
    except Exception:  # noqa: BLE001 - its own bugs must not stop the game
        return []
    # as alfworld's AlfredExpert wrapper does: an inadmissible suggestion becomes "look"
    return [action if action in state["admissible_commands"] else "look"]


def _serve(conn: Connection, fast: bool) -> None:
    """The worker's loop: ("load", game file) or ("step", command) in, a payload out."""
    import random

    import textworld
    from alfworld.agents.environment.alfred_tw_env import AlfredDemangler, AlfredInfos
    from alfworld.agents.expert import HandCodedTWAgent

    if fast:
        memoize_textworld()
    infos = textworld.EnvInfos(won=True, admissible_commands=True, facts=True,
                               extras=["walkthrough"])
    env = None
    # the handcoded expert rides along (~5 ms a step): it serves `expert:handcoded` and the
    # walkthrough expert once an episode has left the walkthrough
    expert = HandCodedTWAgent(max_steps=200)
    while True:
        try:
            command, argument = conn.recv()
        except (EOFError, ConnectionResetError):  # the parent is gone
            return
        if command == "close":
            return
        try:
            if command == "load":
                if env is not None:
                    env.close()
                env = textworld.start(argument, request_infos=infos,
                                      wrappers=[AlfredDemangler(), AlfredInfos])
                state = env.reset()
                random.seed(argument)  # the expert breaks ties at random: same game, same plan
                expert.reset(argument)
                expert.observe(state["feedback"])
                plan = ["look"]
            else:
                state, _, _ = env.step(argument)
                plan = _expert_plan(expert, state, argument) if plan else []
            reply = ("ok", _payload(state, plan))
        except Exception as e:  # noqa: BLE001 - reported to the parent, which raises
            reply = ("error", f"{type(e).__name__}: {e}")
        try:
            conn.send(reply)
        except (BrokenPipeError, ConnectionResetError):  # the parent is gone: nobody to tell
            return


def _context() -> mp.context.BaseContext:
    """Forkserver where the platform has it (Linux, macOS), spawn elsewhere."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    context = mp.get_context("forkserver")
    context.set_forkserver_preload(PRELOAD)
    return context


class GameWorker:
    """The parent's handle on one worker process."""

    def __init__(self, context: mp.context.BaseContext, fast: bool = True) -> None:
        self.conn, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, fast), daemon=True)
        self.process.start()
        child.close()
        self.loads = 0
        self.game = ""

    def send(self, command: str, argument: str) -> None:
        if command == "load":
            self.loads += 1
            self.game = argument
        self.conn.send((command, argument))

    def receive(self) -> Payload:
        try:
            status, payload = self.conn.recv()
        except EOFError:
            raise WorkerError(f"the worker playing {self.game} died (exit code "
                              f"{self.process.exitcode})") from None
        if status == "error":
            raise WorkerError(f"{self.game}: {payload}")
        return payload

    def close(self) -> None:
        try:
            self.conn.send(("close", ""))
        except (BrokenPipeError, OSError):
            pass
        self.process.join(timeout=5)
        if self.process.is_alive():
            self.process.kill()
        self.conn.close()


class WorkerPool:
    """Idle workers kept for the next game; one that has loaded `max_loads` games is replaced.
    `fast=False`: textworld as shipped, in spawned workers (the benchmark's "before")."""

    def __init__(self, max_loads: int = 25, fast: bool = True) -> None:
        self.max_loads, self.fast = max_loads, fast
        self.context = _context() if fast else mp.get_context("spawn")
        self.idle: list[GameWorker] = []

    def acquire(self) -> GameWorker:
        while self.idle:
            worker = self.idle.pop()
            if worker.loads < self.max_loads and worker.process.is_alive():
                return worker
            worker.close()
        return GameWorker(self.context, self.fast)

    def release(self, worker: GameWorker) -> None:
        self.idle.append(worker)

    def close(self) -> None:
        while self.idle:
            self.idle.pop().close()
