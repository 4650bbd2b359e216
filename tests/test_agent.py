"""Policies and batched rollouts: lockstep batching, the history rule, real model policies."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from typer.testing import CliRunner

from hsl_tools.agent import ExpertPolicy, LLMPolicy, RandomPolicy, rollout
from hsl_tools.chat import parse_reply, task_message
from hsl_tools.cli import app
from hsl_tools.llm.base import Conversation, GenerationParams, ModelError, make_chat_model
from hsl_tools.llm.hf import HFChatModel, prefill_groups
from hsl_tools.records import Step, Trajectory, read_records

if TYPE_CHECKING:
    from hsl_tools.envs.base import Episode
    from hsl_tools.envs.household import Household, HouseholdEpisode


class ExpertTypist:
    """A stand-in chat model that types the expert's next action, so a rollout's outcome is
    known; it records the batch size of every call. Real models are tested below and in
    test_llm_backends. It finds each live episode by its task message."""

    spec = "typist"
    supports_json_schema = False

    def __init__(self, env: Household) -> None:
        self.env, self.calls, self.episodes = env, [], {}

    # the environment side: remember episodes as rollout starts them
    name, splits, max_steps = "household", ("seen",), 40
    live_episodes: int | None = None

    def reset(self, task_id: str) -> HouseholdEpisode:
        episode = self.env.reset(task_id)
        self.episodes[task_message(episode.instruction, episode.observation)] = episode
        return episode

    def generate(self, conversations: list[Conversation], params: GenerationParams,
                 sessions: list[str] | None = None) -> list[str]:
        self.calls.append(len(conversations))
        return [f"Thought: next.\nAction: {self.episodes[c[1]['content']].expert_action()}"
                for c in conversations]


def test_batched_rollout_steps_all_episodes_in_lockstep(household: Household) -> None:
    tasks = household.task_ids("seen", 6)
    typist = ExpertTypist(household)
    batched = list(rollout(typist, tasks, LLMPolicy(typist, react=True), "seen", batch_size=4))
    assert all(t.success for t in batched) and len(batched) == 6
    assert typist.calls[0] == 4 and max(typist.calls) == 4  # one call per step for the batch
    assert sum(typist.calls) == sum(len(t.steps) for t in batched)  # finished ones drop out
    assert all(s.thought == "next." for t in batched for s in t.steps)
    expert = {t.task_id: t for t in rollout(household, tasks, ExpertPolicy(), "seen")}
    assert {t.task_id: [s.action for s in t.steps] for t in batched} == {
        tid: [s.action for s in t.steps] for tid, t in expert.items()}


def test_a_rollout_holds_no_more_episodes_than_the_environment_can(household: Household
                                                                   ) -> None:
    """Real ALFWorld holds a worker process per live episode: a batch of 256 once took most
    of a 24 GB machine. The environment's limit caps the batch, and every task still plays."""
    typist = ExpertTypist(household)
    typist.live_episodes = 2
    tasks = household.task_ids("seen", 5)
    played = list(rollout(typist, tasks, LLMPolicy(typist), "seen", batch_size=256))
    assert max(typist.calls) == 2 and sorted(t.task_id for t in played) == sorted(tasks)
    assert all(t.success for t in played)


def test_rollout_does_not_depend_on_batch_size(household: Household) -> None:
    tasks = household.task_ids("train", 10)
    one = {t.id: t for t in rollout(household, tasks, RandomPolicy(3), "train", batch_size=1)}
    many = {t.id: t for t in rollout(household, tasks, RandomPolicy(3), "train", batch_size=8)}
    assert one == many


def test_unparseable_reply_costs_a_step(household: Household, tiny_model: Path) -> None:
    """The untrained tiny model mostly babbles: every reply still becomes one env step."""
    policy = LLMPolicy(make_chat_model(f"hf:{tiny_model}"), GenerationParams(max_new_tokens=8))
    household_short = type(household)(max_steps=3)
    trajectories = list(rollout(household_short, ["train-00001", "train-00002"], policy, "train"))
    for t in trajectories:
        assert len(t.steps) == 3 and not t.success
        for step in t.steps:
            if parse_reply(step.action)[1] is None:
                assert step.observation == "Nothing happens."


@pytest.fixture
def long_episode(household: Household, tiny_model: Path
                 ) -> tuple[LLMPolicy, Episode, list[Step]]:
    """A tiny-model policy, and train-00004 with the history of a random play of it."""
    policy = LLMPolicy(make_chat_model(f"hf:{tiny_model}"), GenerationParams(max_new_tokens=32))
    history = list(next(rollout(household, ["train-00004"], RandomPolicy(0), "train")).steps)
    return policy, household.reset("train-00004"), history


def test_history_is_cut_to_fit_the_context(
        household: Household, long_episode: tuple[LLMPolicy, Episode, list[Step]]) -> None:
    policy, episode, history = long_episode
    model = policy.model
    full = policy.prompt(household, episode, history)
    assert len(full) == 2 + 2 * len(history)  # fits in 4096 tokens: nothing dropped
    model.context_length = model.count_tokens(full) // 2
    cut = policy.prompt(household, episode, history)
    omitted = len(history) - (len(cut) - 2) // 2
    assert 0 < omitted < len(history)
    assert f"[{omitted} earlier steps omitted]" in cut[1]["content"]
    assert model.count_tokens(cut) + 32 <= model.context_length
    assert cut[-1]["content"] == history[-1].observation  # the newest steps stay


def test_a_history_too_long_is_cut_a_few_steps_at_a_time(
        household: Household, long_episode: tuple[LLMPolicy, Episode, list[Step]]) -> None:
    """Once steps must go, `drop` go at once: the prompts of the next steps then extend this
    one, so the model reuses its cached states instead of recomputing the history."""
    policy, episode, history = long_episode
    model = policy.model
    model.context_length = model.count_tokens(policy.prompt(household, episode, history)) // 2
    prompts = [policy.prompt(household, episode, history[:n]) for n in range(len(history) + 1)]
    omitted = [n - (len(p) - 2) // 2 for n, p in enumerate(prompts)]
    assert omitted[0] == 0 and omitted[-1] > 0 and omitted == sorted(omitted)
    assert all(k % LLMPolicy.drop == 0 for k in omitted)
    kept = [n for n in range(len(history)) if omitted[n + 1] == omitted[n]]
    assert all(prompts[n + 1][:len(prompts[n])] == prompts[n] for n in kept)
    cut_steps = [n for n in range(len(history)) if omitted[n + 1] > 0]
    changes = sum(omitted[n + 1] != omitted[n] for n in range(len(history)))
    assert changes <= len(cut_steps) // 2  # one step at a time would change at every one


def test_init_collect_eval_with_a_model(tmp_path: Path) -> None:
    """The issue's command line: build a model, collect with it, evaluate it."""
    runner = CliRunner()
    model = tmp_path / "m"
    assert runner.invoke(app, ["init-model", "--out", str(model)]).exit_code == 0
    result = runner.invoke(app, ["collect", "--policy", f"hf:{model}", "-n", "4",
                                 "--max-steps", "4", "--out", str(tmp_path / "t.jsonl")])
    assert result.exit_code == 0, result.output
    assert len(list(read_records(tmp_path / "t.jsonl", Trajectory))) == 4
    result = runner.invoke(app, ["eval", "--policy", f"hf:{model}", "--split", "seen,unseen",
                                 "-n", "3", "--max-steps", "4", "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    summary = json.loads((tmp_path / "ev" / "summary.json").read_text())["summary"]
    assert {s: summary[s]["all"]["episodes"] for s in summary} == {"seen": 3, "unseen": 3}
    assert summary["seen"]["all"]["success"] == 0.0  # untrained


def test_session_cache_changes_nothing_but_speed(household: Household, tiny_model: Path) -> None:
    """Replies with the prompt cache (sessions) equal replies computed from scratch, also when
    sessions of different lengths share a batch, when a prompt stops extending its cache, and
    when the sessions span several batches of one buffer."""
    params = GenerationParams(max_new_tokens=8)
    trajectories = list(rollout(household, ["train-00005", "train-00006"], RandomPolicy(2),
                                "train"))
    episodes = [household.reset(t.task_id) for t in trajectories]
    policy = LLMPolicy(make_chat_model(f"hf:{tiny_model}"), params)  # prompts only

    def chats(k: int, lag: int = 0) -> list[Conversation]:
        return [policy.prompt(household, e, t.steps[:max(0, k - i * lag)])
                for i, (e, t) in enumerate(zip(episodes, trajectories, strict=True))]

    for batch_size in (32, 1):
        model = HFChatModel(str(tiny_model), batch_size=batch_size)
        for k in [0, 1, 2, 5, 3]:  # the last one goes back: only the common prefix is reused
            with_cache = model.generate(chats(k, lag=2), params, sessions=["a", "b"])
            assert with_cache == [model.generate([c], params)[0] for c in chats(k, lag=2)]
        assert set(model.cache.ids) == {"a", "b"}
        # a new session's whole prompt beside a step of an old one: prefilled in two groups
        new_and_old = [chats(0)[0], chats(4, lag=2)[1]]
        ids = [model.prompt_ids(c) for c in new_and_old]
        assert len(prefill_groups([len(ids[0]), len(ids[1]) - model.cache.reusable("b", ids[1])
                                   ])) == 2
        assert model.generate(new_and_old, params, sessions=["c", "b"]) == [
            model.generate([c], params)[0] for c in new_and_old]
        model.generate(chats(1)[1:], params, sessions=["b"])
        assert set(model.cache.ids) == {"b"}  # sessions not named are forgotten
    with pytest.raises(ValueError, match="distinct"):
        model.generate(chats(1), params, sessions=["a", "a"])


def test_a_reply_rendered_as_generated_is_not_run_again(household: Household,
                                                        tiny_model: Path) -> None:
    """The cache keeps the reply's states: the next prompt, holding that reply and the
    observation it got, reuses all of them (the untrained model's reply renders as it was
    generated), and replies as if computed from scratch."""
    model = HFChatModel(str(tiny_model))
    params = GenerationParams(max_new_tokens=12)
    policy = LLMPolicy(model, params)
    episode = household.reset("train-00005")
    first = policy.prompt(household, episode, [])
    reply = model.generate([first], params, sessions=["a"])[0]
    second = policy.prompt(household, episode,
                           [Step(action=reply, observation="Nothing happens.")])
    cached = model.cache.ids["a"]
    assert len(cached) > len(model.prompt_ids(first))  # the prompt and the reply's tokens
    assert model.cache.reusable("a", model.prompt_ids(second)) == len(cached)
    assert model.generate([second], params, sessions=["a"]) == model.generate([second], params)


def test_hf_refuses_sliding_window_models(tiny_model: Path, tmp_path: Path) -> None:
    """Its attention masks are full causal ones: a model that attends to a window would get
    the wrong answers without a word, so it fails at load, naming what to use instead."""
    model = tmp_path / "windowed"
    shutil.copytree(tiny_model, model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, "sliding_window": 64}))
    with pytest.raises(ModelError, match="sliding-window attention .*use vllm:"):
        HFChatModel(str(model))
