"""Real ALFWorld: splits, the walkthrough and handcoded experts, the fact oracle, worker
processes, and the rule relabeler judged against the facts. Games come from ../shared
(skipped where it is absent); the fact-oracle unit tests need no data."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING

import pytest

from hsl_tools.agent import ExpertPolicy, RandomPolicy, rollout
from hsl_tools.envs.alfworld.facts import achieved, satisfied
from hsl_tools.envs.alfworld_family.goals import Goal, GoalType
from hsl_tools.relabel.check import check_relabeler
from hsl_tools.relabel.relabelers import RuleRelabeler

if TYPE_CHECKING:
    from hsl_tools.envs.alfworld import Alfworld

LAMP_ROOM = [("atlocation", "agent1", "loc 3"), ("receptacleatlocation", "desk 1", "loc 3"),
             ("inreceptacle", "desklamp 1", "desk 1")]


def test_facts_place_and_state_goals() -> None:
    facts = [("inreceptacle", "apple 1", "fridge 1"), ("iscool", "apple 1"),
             ("inreceptacle", "mug 2", "cabinet 4"), ("isclean", "mug 3")]
    assert satisfied(facts) == {Goal(GoalType.PICK_AND_PLACE, "apple", "fridge"),
                                Goal(GoalType.COOL, "apple", "fridge"),
                                Goal(GoalType.PICK_AND_PLACE, "mug", "cabinet")}


def test_facts_pick_two_needs_one_receptacle() -> None:
    apart = [("inreceptacle", "cd 1", "shelf 1"), ("inreceptacle", "cd 2", "shelf 2")]
    together = [("inreceptacle", "cd 1", "shelf 1"), ("inreceptacle", "cd 2", "shelf 1")]
    two = Goal(GoalType.PICK_TWO, "cd", "shelf")
    assert two not in satisfied(apart) and two in satisfied(together)


def test_facts_look_needs_a_lit_lamp_where_the_agent_stands() -> None:
    holding = [("holds", "agent1", "book 1")]
    look = Goal.look("book")
    assert look not in satisfied(LAMP_ROOM + holding)  # lamp off
    assert look in satisfied(LAMP_ROOM + holding + [("istoggled", "desklamp 1")])
    elsewhere = [f if f[0] != "atlocation" else ("atlocation", "agent1", "loc 9")
                 for f in LAMP_ROOM]
    assert look not in satisfied(elsewhere + holding + [("istoggled", "desklamp 1")])


def test_achieved_ignores_what_held_at_the_start() -> None:
    start = [("inreceptacle", "apple 1", "fridge 1")]
    later = start + [("inreceptacle", "egg 1", "fridge 1")]
    assert achieved([start, start, later, later]) == {
        Goal(GoalType.PICK_AND_PLACE, "egg", "fridge"): 2}


def test_splits_are_etos(alfworld: Alfworld) -> None:
    assert len(alfworld.task_ids("seen")) == 140
    assert len(alfworld.task_ids("unseen")) == 134
    with pytest.raises(ValueError, match="134 games"):
        alfworld.task_ids("unseen", 135)


def one_game_per_type(env: Alfworld, split: str) -> list[str]:
    first: dict[str, str] = {}
    for task in env.task_ids(split):
        first.setdefault(task.split("-")[0], task)
    return list(first.values())


def test_walkthrough_wins_and_the_oracle_agrees(alfworld: Alfworld) -> None:
    games = one_game_per_type(alfworld, "unseen")
    assert len(games) == 6
    trajectories = list(rollout(alfworld, games, ExpertPolicy(), "unseen", batch_size=6))
    for t in trajectories:
        assert t.success, t.task_id
        assert "Your task is to" not in t.initial_observation
        assert t.initial_observation.startswith("-= Welcome to TextWorld, ALFRED! =-")
        instructed = Goal.parse(t.instruction)
        assert instructed is not None and str(instructed.type) == t.meta["goal_type"]
        # the game's `won` and the fact oracle agree on the instructed goal and its step
        assert alfworld.oracle(t)[instructed] == len(t.steps)
    # the oracle read from stored facts equals one recomputed by replaying the actions
    t = trajectories[0]
    replayed = t.model_copy(update={"meta": {k: v for k, v in t.meta.items() if k != "oracle"}})
    assert alfworld.oracle(replayed) == alfworld.oracle(t)


def test_handcoded_expert_plays_from_the_facts(alfworld: Alfworld) -> None:
    games = one_game_per_type(alfworld, "seen")[:3]
    trajectories = list(rollout(alfworld, games, ExpertPolicy("handcoded"), "seen"))
    assert all(t.steps[0].action == "look" for t in trajectories)  # how it starts, always
    assert sum(t.success for t in trajectories) >= 2


def test_workers_are_recycled(alfworld: Alfworld) -> None:
    from hsl_tools.envs.alfworld import Alfworld

    env = Alfworld(max_loads=2)
    try:
        pids = []
        for task in alfworld.task_ids("seen", 3):
            episode = env.reset(task)
            pids.append(episode.worker.process.pid)
            episode.close()
        assert pids[0] == pids[1] != pids[2]
    finally:
        env.close()


def played(env: Alfworld, task: str, steps: int, seed: int) -> list[tuple]:
    """Everything a worker reports along random admissible play: feedback, admissible
    commands, facts (as a set: textworld's order follows the process's hash seed)."""
    rng, episode, seen = random.Random(seed), env.reset(task), []
    for _ in range(steps):
        state = episode.state
        seen.append((state["feedback"], state["admissible"], sorted(map(tuple, state["facts"]))))
        if episode.step(rng.choice(state["admissible"])).done:
            break
    episode.close()
    return seen


def test_memoized_textworld_plays_the_same_games(alfworld: Alfworld) -> None:
    """memo.py caches textworld's parses and PDDL translations, and workers fork from a
    forkserver; a game must not notice."""
    from hsl_tools.envs.alfworld import Alfworld

    shipped = Alfworld(fast=False)
    try:
        for i, task in enumerate(one_game_per_type(alfworld, "seen")[:2]):
            assert played(alfworld, task, 15, i) == played(shipped, task, 15, i)
    finally:
        shipped.close()


def test_unknown_game_and_missing_data(alfworld: Alfworld, monkeypatch: pytest.MonkeyPatch) -> None:
    from hsl_tools.envs.alfworld import Alfworld, games

    with pytest.raises(ValueError, match="no ALFWorld game 'nope'"):
        alfworld.reset("nope")
    monkeypatch.setenv("ALFWORLD_DATA", "/nonexistent")
    with pytest.raises(games.DataMissing, match="alfworld-download"):
        Alfworld().reset(alfworld.task_ids("seen", 1)[0])


def test_rule_relabeler_against_the_facts_on_random_play(alfworld: Alfworld) -> None:
    """Random admissible actions on real games: every goal the rules name is true, and
    nearly every true goal is named (the full measurement over 120 games is in the notes)."""
    tasks = alfworld.task_ids("seen", 16)
    trajectories = list(rollout(alfworld, tasks, RandomPolicy(3), "seen", batch_size=8))
    report = check_relabeler(trajectories, RuleRelabeler())["overall"]
    assert report["tp"] + report["fn"] >= 3  # random play does reach goals
    assert report["precision"] >= 0.95 and report["recall"] >= 0.9
