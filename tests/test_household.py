"""The embedded household world: determinism, ALFWorld's text, splits, the expert, the oracle."""

from __future__ import annotations

import random
from collections import Counter
from typing import TYPE_CHECKING

import pytest

from hsl_tools.envs.alfworld_family.goals import Goal, GoalType
from hsl_tools.envs.household import Household
from hsl_tools.envs.household.catalog import OBJECTS
from hsl_tools.envs.household.oracle import achieved, satisfied
from hsl_tools.envs.household.tasks import SPLIT_SIZES, make_task
from hsl_tools.envs.household.world import NOTHING, World

if TYPE_CHECKING:
    from hsl_tools.envs.household import HouseholdEpisode


def play_expert(env: Household, task_id: str) -> tuple[HouseholdEpisode, list[str], list[str]]:
    """The expert's episode on a task, its actions and the observations they got."""
    episode = env.reset(task_id)
    actions, observations = [], []
    while not episode.done:
        actions.append(episode.expert_action())
        observations.append(episode.step(actions[-1]).observation)
    return episode, actions, observations


def test_same_id_same_task_and_text(household: Household) -> None:
    make_task.cache_clear()
    first, actions, observations = play_expert(household, "seen-00007")
    make_task.cache_clear()  # rebuild the task from its id alone
    again = household.reset("seen-00007")
    assert (again.instruction, again.observation) == (first.instruction, first.observation)
    assert [again.step(a).observation for a in actions] == observations
    assert household.reset("seen-00008").observation != first.observation


def test_expert_wins_every_sampled_task_of_every_type_and_split(household: Household) -> None:
    rng = random.Random(0)
    seen = Counter()
    for split in ("train", "seen", "unseen"):
        for index in rng.sample(range(SPLIT_SIZES[split]), 100):
            episode, actions, _ = play_expert(household, f"{split}-{index:05d}")
            assert episode.won, episode.task_id
            assert len(actions) <= household.max_steps
            seen[(split, episode.meta["goal_type"])] += 1
    assert {(s, t) for s, t in seen} == {(s, str(t)) for s in ("train", "seen", "unseen")
                                         for t in GoalType}


def test_unseen_layouts_and_pairs_never_occur_in_train(household: Household) -> None:
    train = [make_task(t) for t in household.task_ids("train")]
    unseen = [make_task(t) for t in household.task_ids("unseen")]
    seen = [make_task(t) for t in household.task_ids("seen")]
    train_layouts = {t.layout.fingerprint for t in train}
    train_pairs = {(t.goal.obj, t.goal.recep) for t in train}
    assert not {t.layout.fingerprint for t in unseen} & train_layouts
    assert not {(t.goal.obj, t.goal.recep) for t in unseen} & train_pairs
    assert {t.layout.fingerprint for t in seen} <= train_layouts


def test_no_task_starts_achieved(household: Household) -> None:
    for tid in household.task_ids("seen"):
        episode = household.reset(tid)
        assert Goal.parse(episode.instruction) == make_task(tid).goal
        assert make_task(tid).goal not in satisfied(episode.states[0])


def kitchen() -> World:
    """A hand-made kitchen: a mug and a cup in cabinets, an apple on the counter."""
    return World(receptacles=["cabinet 1", "cabinet 2", "countertop 1", "fridge 1",
                              "microwave 1", "sinkbasin 1", "desk 1"],
                 contents={"cabinet 1": ["mug 1"], "cabinet 2": ["cup 1", "cup 2"],
                           "countertop 1": ["apple 1"], "fridge 1": [], "microwave 1": [],
                           "sinkbasin 1": [], "desk 1": ["desklamp 1", "mug 2"]},
                 kinds=OBJECTS["kitchen"])


def play(world: World, actions: list[str]) -> list[str]:
    states, text = [world.snapshot()], []
    for a in actions:
        text.append(world.apply(a))
        states.append(world.snapshot())
    play.states = states
    return text


def test_text_follows_alfworld() -> None:
    w = kitchen()
    text = play(w, ["go to cabinet 2", "open cabinet 2", "take cup 1 from cabinet 2",
                    "close cabinet 2", "go to fridge 1", "cool cup 1 with fridge 1",
                    "examine cup 1", "inventory", "put cup 1 in fridge 1", "go to fridge 1",
                    "open fridge 1", "move cup 1 to fridge 1", "look", "go to desk 1",
                    "use desklamp 1", "use desklamp 1", "dance"])
    assert text == [
        "You arrive at cabinet 2. The cabinet 2 is closed.",
        "You open the cabinet 2. The cabinet 2 is open. In it, you see a cup 1, and a cup 2.",
        "You pick up the cup 1 from the cabinet 2.",
        "You close the cabinet 2.",
        "You arrive at fridge 1. The fridge 1 is closed.",
        "You cool the cup 1 using the fridge 1.",
        "This is a cold cup 1.",
        "You are carrying: a cup 1.",
        NOTHING,  # the old "put X in/on Y" form, as in real ALFWorld
        NOTHING,  # already there
        "You open the fridge 1. The fridge 1 is open. In it, you see nothing.",
        "You move the cup 1 to the fridge 1.",
        "You are facing the fridge 1. Next to it, you see nothing.",
        "You arrive at desk 1. On the desk 1, you see a desklamp 1, and a mug 2.",
        "You turn on the desklamp 1.",
        "You turn off the desklamp 1.",
        NOTHING,
    ]


@pytest.mark.parametrize(("setup", "action"), [
    ([], "take mug 1 from cabinet 1"),                              # not there
    (["go to cabinet 1"], "take mug 1 from cabinet 1"),             # closed
    (["go to cabinet 1", "open cabinet 1"], "open cabinet 1"),     # already open
    (["go to cabinet 1"], "close cabinet 1"),                       # already closed
    (["go to countertop 1", "take apple 1 from countertop 1"], "take mug 2 from desk 1"),
    (["go to countertop 1", "take apple 1 from countertop 1", "go to desk 1"],
     "take mug 2 from desk 1"),                                     # hands full
    (["go to countertop 1", "take apple 1 from countertop 1"], "clean apple 1 with countertop 1"),
    (["go to countertop 1", "take apple 1 from countertop 1"], "heat apple 1 with microwave 1"),
    (["go to desk 1"], "take desklamp 1 from desk 1"),             # lamps stay put
    ([], "use desklamp 1"),                                         # not at the desk
    ([], "go to kitchen 1"),
    ([], "examine mug 1"),                                          # not in sight
])
def test_nothing_happens_without_effect(setup: list[str], action: str) -> None:
    w = kitchen()
    for a in setup:
        assert w.apply(a) != NOTHING, a
    before = w.snapshot()
    assert w.apply(action) == NOTHING
    assert w.snapshot() == before


def test_oracle_finds_the_uninstructed_mug_in_fridge() -> None:
    """The paper's Figure 2: asked to cool a cup into a cabinet, the agent puts a mug in the
    fridge instead; the oracle credits "put a mug in fridge" at that step, nothing else."""
    w = kitchen()
    play(w, ["go to cabinet 1", "open cabinet 1", "take mug 1 from cabinet 1",
             "go to fridge 1", "open fridge 1", "move mug 1 to fridge 1", "go to countertop 1"])
    assert achieved(play.states) == {Goal(GoalType.PICK_AND_PLACE, "mug", "fridge"): 6}


def test_oracle_reports_every_goal_at_its_first_step() -> None:
    w = kitchen()
    play(w, ["go to countertop 1", "take apple 1 from countertop 1",      # 1-2
             "go to microwave 1", "heat apple 1 with microwave 1",        # 3-4
             "go to desk 1", "use desklamp 1",                            # 5-6: look at apple
             "go to cabinet 2", "open cabinet 2", "move apple 1 to cabinet 2",  # 7-9
             "take cup 1 from cabinet 2", "go to cabinet 1", "open cabinet 1",  # 10-12
             "move cup 1 to cabinet 1",                                   # 13: cup in cabinet 1
             "go to cabinet 2", "take apple 1 from cabinet 2",            # 14-15: undo apple
             "move apple 1 to cabinet 2"])                                # 16: redo
    assert achieved(play.states) == {
        Goal.look("apple"): 6,
        Goal(GoalType.PICK_AND_PLACE, "apple", "cabinet"): 9,
        Goal(GoalType.HEAT, "apple", "cabinet"): 9,
        # two cups in cabinet 2 held before the first action: not the agent's doing
    }


def test_pick_two_needs_both_in_one_receptacle() -> None:
    w = kitchen()
    play(w, ["go to cabinet 2", "open cabinet 2", "take cup 1 from cabinet 2",
             "go to cabinet 1", "open cabinet 1", "move cup 1 to cabinet 1",
             "go to cabinet 2", "take cup 2 from cabinet 2", "go to cabinet 1",
             "move cup 2 to cabinet 1"])
    goals = achieved(play.states)
    assert Goal(GoalType.PICK_TWO, "cup", "cabinet") not in goals  # held at the start
    w = kitchen()
    play(w, ["go to cabinet 2", "open cabinet 2", "take cup 1 from cabinet 2",
             "go to countertop 1", "move cup 1 to countertop 1", "go to cabinet 2",
             "take cup 2 from cabinet 2", "go to countertop 1", "move cup 2 to countertop 1"])
    assert achieved(play.states)[Goal(GoalType.PICK_TWO, "cup", "countertop")] == 9


def test_oracle_puts_instructed_goal_at_expert_final_step(household: Household) -> None:
    for tid in household.task_ids("unseen", 60):
        episode, actions, _ = play_expert(household, tid)
        goals = achieved(episode.states)
        assert goals[make_task(tid).goal] == len(actions)


def test_replay_checks_the_recorded_text(household: Household) -> None:
    from hsl_tools.agent import ExpertPolicy, rollout

    trajectory = next(rollout(household, ["train-00003"], ExpertPolicy(), "train"))
    assert household.oracle(trajectory)[make_task("train-00003").goal] == len(trajectory.steps)
    trajectory.steps[0].observation = "You arrive somewhere else."
    with pytest.raises(ValueError, match="step 1 does not replay"):
        household.oracle(trajectory)


def test_admissible_actions_all_do_something(household: Household) -> None:
    rng = random.Random(1)
    for tid in household.task_ids("train", 20):
        episode = household.reset(tid)
        while not episode.done:
            action = rng.choice(episode.admissible_actions())
            assert episode.step(action).observation != NOTHING, (tid, action)

