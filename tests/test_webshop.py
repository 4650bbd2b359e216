"""WebShop against the real one: the reference recorded from the unmodified site on the
1000-product subset (../shared/data/webshop/reference) is replayed here: every observation,
reward and done flag of its episodes, every search ranking, every reward row.
Skips cleanly where ../shared is absent (a user's machine)."""

from __future__ import annotations

import json
import lzma
import os
import subprocess
import sys
from pathlib import Path

import pytest
from transformers import AutoTokenizer
from typer.testing import CliRunner

from conftest import said
from hsl_tools.agent import make_policy, rollout
from hsl_tools.cli import app
from hsl_tools.envs.webshop import WebShop
from hsl_tools.envs.webshop.reward import APPROX_NOUNS, purchase_reward
from hsl_tools.envs.webshop.search import analyze, encoded_length
from hsl_tools.envs.webshop.site import Session, parse_action
from hsl_tools.records import Trajectory, read_records

runner = CliRunner()


def _rows(path: Path) -> list[dict]:
    with lzma.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture(scope="module")
def reference(webshop: WebShop) -> Path:
    return Path(__file__).resolve().parents[1].parent / "shared/data/webshop/reference"


def test_goals_and_prices_are_webshops_own(webshop: WebShop, reference: Path) -> None:
    goals = _rows(reference / "goals.jsonl.xz")
    ours = webshop.catalog.goals
    assert len(ours) == len(goals) == 6910
    for g, mine in zip(goals, ours, strict=True):
        assert (mine.asin, mine.instruction_text, mine.attributes, mine.price_upper,
                mine.goal_options, mine.weight) == (g["asin"], g["instruction_text"],
                                                    g["attributes"], g["price_upper"],
                                                    g["goal_options"], g["weight"])
    prices = json.loads((reference / "product_prices.json").read_text())
    assert webshop.catalog.prices == prices


def test_the_search_index_holds_webshops_documents(webshop: WebShop) -> None:
    folder = webshop.catalog.folder
    with (folder / "documents_1k.jsonl").open(encoding="utf-8") as f:
        documents = {d["id"]: d["contents"] for d in map(json.loads, f)}
    assert documents == {a: p.document() for a, p in webshop.catalog.products.items()}


def test_the_analyzer_is_lucenes_english_analyzer() -> None:
    assert analyze("The Women's Shoes, running!") == ["women", "shoe", "run"]
    assert analyze("2.5 cm ★ gift © ❶") == ["2.5", "cm", "★", "gift", "©"]
    assert analyze("usb-c t-shirt don’t") == ["usb", "c", "t", "shirt", "don’t"]
    # lengths as Lucene's one-byte norms store them
    assert [encoded_length(n) for n in (23, 24, 25, 63, 64, 71, 72)] == \
           [23, 24, 25, 60, 64, 68, 72]


def test_every_reference_ranking_is_identical(webshop: WebShop, reference: Path) -> None:
    """Top 50 in order, ties included; the recorded scores are rounded (to about 4
    decimals), so scores agree to a relative 1e-4."""
    queries = _rows(reference / "search.jsonl.xz")
    identical = 0
    for q in queries:
        hits = webshop.engine.search(q["query"])
        identical += [a for a, _ in hits] == q["asins"] and \
            [s for _, s in hits] == pytest.approx(q["scores"], rel=1e-4)
    assert identical == len(queries) == 1287


def test_every_reference_reward_row_is_equal(webshop: WebShop, reference: Path) -> None:
    rows = _rows(reference / "rewards.jsonl.xz")
    catalog = webshop.catalog
    for r in rows:
        total, info = purchase_reward(catalog.products[r["asin"]], catalog.goals[r["goal_index"]],
                             r["price"], r["options"])
        assert (total, info) == (r["reward"], r["components"]), r


def test_every_reference_episode_replays_identically(webshop: WebShop, reference: Path
                                                     ) -> None:
    episodes = _rows(reference / "episodes.jsonl.xz")
    steps = 0
    for e in episodes:
        session = Session(webshop.catalog, webshop.engine, webshop.catalog.goals[e["goal_index"]])
        assert session.observation == e["first_observation"]
        assert session.available_actions() == e["first_available_actions"]
        for s in e["steps"]:
            observation, r, done = session.step(s["action"])
            assert (observation, r, type(r), done) == \
                   (s["observation"], s["reward"], type(s["reward"]), s["done"]), s["action"]
            assert session.available_actions() == s["available_actions"]
            steps += 1
        assert session.purchase is not None and session.purchase.reward == e["final_reward"]
    assert len(episodes) == 444 and steps == 2883


def test_actions_parse_as_webshop_parses_them() -> None:
    assert parse_action("search[x] trailing") == ("search", "x")
    assert parse_action("search[a] X]") == ("search", "a] x")
    assert parse_action("search[a[b]]") == ("search[a", "b]")
    assert parse_action("click [x]") == ("click ", "x")
    assert parse_action("search") == ("search", None)


def test_expert_buys_the_goal_and_random_rarely_buys(webshop: WebShop) -> None:
    tasks = webshop.task_ids("test", 40)
    expert = list(rollout(webshop, tasks, make_policy("expert"), "test"))
    assert all("purchase" in t.meta and t.meta["purchase"]["asin"] == t.meta["asin"]
               for t in expert)
    assert sum(t.success for t in expert) >= 36  # misses: WebShop's option-tuple quirk
    assert all(t.reward == t.meta["purchase"]["reward"] and len(t.steps) <= 10 for t in expert)
    randoms = list(rollout(webshop, tasks, make_policy("random"), "test"))
    assert sum(t.reward for t in randoms) < sum(t.reward for t in expert) / 4
    assert all(len(t.steps) <= 10 for t in randoms)


def test_splits_are_webshops_goal_ranges(webshop: WebShop) -> None:
    assert webshop.task_ids("test")[:2] == ["fixed_0", "fixed_1"]
    assert len(webshop.task_ids("test")) == 500 and len(webshop.task_ids("dev")) == 1000
    assert webshop.task_ids("train")[0] == "fixed_1500"
    assert len(webshop.task_ids("train")) == 6910 - 1500
    with pytest.raises(ValueError, match="not a WebShop task id"):
        webshop.reset("goal-3")


def test_a_replay_reproduces_the_purchase(webshop: WebShop) -> None:
    [trajectory] = rollout(webshop, ["fixed_7"], make_policy("expert"), "test")
    purchase = webshop.purchase(trajectory)
    assert purchase is not None
    assert purchase.reward == trajectory.reward and purchase.asin == trajectory.meta["asin"]
    # the oracle scores the purchase for any goal: its own, and one for another product
    goals = webshop.catalog.goals
    assert webshop.score(purchase, goals[7])[0] == trajectory.reward == 1.0
    other = next(g for g in goals if g.asin != purchase.asin and g.query != goals[7].query)
    assert webshop.score(purchase, other)[0] < 0.5


def _steps(path: Path) -> dict[str, list[tuple[str, str]]]:
    return {t.task_id: [(s.action, s.observation) for s in t.steps]
            for t in read_records(path, Trajectory)}


@pytest.mark.parametrize("env", ["household", "webshop"])
def test_replay_of_a_dump_reproduces_its_observations_and_rewards(
        env: str, webshop: WebShop, tmp_path: Path) -> None:
    dump, again = tmp_path / "dump.jsonl", tmp_path / "again.jsonl"
    assert runner.invoke(app, ["collect", "--env", env, "--policy", "random", "-n", "12",
                               "--seed", "3", "--out", str(dump)]).exit_code == 0
    result = runner.invoke(app, ["collect", "--env", env, "--policy", f"replay:{dump}",
                                 "--out", str(again)])
    assert result.exit_code == 0, result.output
    assert _steps(again) == _steps(dump) and len(_steps(dump)) == 12
    rewards = {t.task_id: (t.reward, t.success, t.split) for t in read_records(dump, Trajectory)}
    assert {t.task_id: (t.reward, t.success, t.split)
            for t in read_records(again, Trajectory)} == rewards
    assert {t.policy for t in read_records(again, Trajectory)} == {f"replay:{dump}"}


def test_eval_prints_webshops_score_beside_success(webshop: WebShop, tmp_path: Path) -> None:
    result = runner.invoke(app, ["eval", "--env", "webshop", "--policy", "expert", "-n", "20",
                                 "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "test score" in said(result.output) and "test success" in said(result.output)
    summary = json.loads((tmp_path / "summary.json").read_text())["summary"]
    assert set(summary) == {"test"} and summary["test"]["all"]["episodes"] == 20
    assert summary["test"]["all"]["mean_reward"] >= summary["test"]["all"]["success"] > 0.8


def test_without_spacys_nouns_webshop_refuses_to_score_unless_asked(
        webshop: WebShop, tmp_path: Path) -> None:
    """spaCy's model is installed here, so its absence is mocked: the command line runs with
    the model's name changed to one that is not there."""
    hide = ("import sys; import hsl_tools.envs.webshop.reward as r; "
            "r.SPACY_MODELS = ('no_such_spacy_model',); from hsl_tools.cli import main; "
            "sys.argv = ['hsl', *sys.argv[1:]]; main()")
    args = ["eval", "--env", "webshop", "--policy", "expert", "-n", "5", "--out"]
    env = {k: v for k, v in os.environ.items() if k != APPROX_NOUNS}
    refused = subprocess.run([sys.executable, "-c", hide, *args, str(tmp_path / "a")],
                             capture_output=True, text=True, timeout=300, env=env)
    assert refused.returncode == 2 and "Traceback" not in refused.stderr
    assert refused.stderr.strip().splitlines()[-1].startswith(
        "error: WebShop's reward reads product nouns with spaCy's en_core_web_sm, which is not "
        "installed: pip install 'hsl-tools[webshop]'")
    assert not (tmp_path / "a" / "summary.json").exists()
    asked = subprocess.run([sys.executable, "-c", hide, *args, str(tmp_path / "b")],
                           capture_output=True, text=True, timeout=300,
                           env=env | {APPROX_NOUNS: "1"})
    assert asked.returncode == 0, asked.stderr
    assert "every word as a noun" in asked.stderr
    assert (tmp_path / "b" / "summary.json").exists()


def test_a_model_built_for_webshop_rolls_out_there(webshop: WebShop, tmp_path: Path) -> None:
    model = tmp_path / "model"
    result = runner.invoke(app, ["init-model", "--env", "webshop", "--out", str(model)])
    assert result.exit_code == 0, result.output
    tokenizer = AutoTokenizer.from_pretrained(model)
    # learned from WebShop's pages: its words are whole tokens, not bytes
    assert len(tokenizer.tokenize(" [SEP] Back to Search")) <= 6
    out = tmp_path / "t.jsonl"
    result = runner.invoke(app, ["collect", "--env", "webshop", "--policy", f"hf:{model}",
                                 "--split", "test", "-n", "2", "--out", str(out)])
    assert result.exit_code == 0, result.output
    trajectories = list(read_records(out, Trajectory))
    assert sorted(t.task_id for t in trajectories) == ["fixed_0", "fixed_1"]
    assert all(0 < len(t.steps) <= 10 and t.env == "webshop" for t in trajectories)


def _eto_item(t: Trajectory, agentgym: bool) -> dict:
    """A trajectory in ETO's webshop_sft.json shape, or AgentGym's (ids `webshop_<i>`,
    per-message loss flags, "Action:" on its own line, pages without "Observation:").
    Both files live on the HF hub, out of reach here: these are built to their published
    shape (../shared/data/README.md)."""
    page = (lambda o: o) if agentgym else (lambda o: f"Observation:\n{o}")
    turns = [("human", "You are web shopping. Reply with search[...] or click[...]."),
             ("gpt", "OK"), ("human", page(t.initial_observation))]
    for s in t.steps:
        action = f"Thought:\nI act.\n\nAction:\n{s.action}" if agentgym else \
            f"Thought: I act.\nAction: {s.action}"
        turns += [("gpt", action), ("human", page(s.observation))]
    index = int(t.task_id.removeprefix("fixed_"))
    conversations = [{"from": who, "value": text, **({"loss": who == "gpt"} if agentgym
                                                        else {})} for who, text in turns]
    return {"item_id": f"webshop_{index}", "conversations": conversations} if agentgym else \
        {"id": index, "conversations": conversations, "reward": t.reward}


@pytest.mark.parametrize("agentgym", [False, True], ids=["eto", "agentgym"])
def test_webshop_dumps_import_into_records_that_replay(webshop: WebShop, tmp_path: Path,
                                                       agentgym: bool) -> None:
    tasks = ["fixed_3", "fixed_777", "fixed_2500"]
    trajectories = list(rollout(webshop, tasks, make_policy("expert"), "x"))
    dump = tmp_path / "dump.json"
    dump.write_text(json.dumps([_eto_item(t, agentgym) for t in trajectories]))
    out = tmp_path / "imported.jsonl"
    result = runner.invoke(app, ["import", str(dump), "--env", "webshop", "--out", str(out)])
    assert result.exit_code == 0, result.output
    imported = {t.task_id: t for t in read_records(out, Trajectory)}
    assert {k: t.split for k, t in imported.items()} == \
        {"fixed_3": "test", "fixed_777": "dev", "fixed_2500": "train"}
    for t in trajectories:
        got = imported[t.task_id]
        assert (got.env, got.instruction, got.initial_observation) == \
            ("webshop", t.instruction, t.initial_observation)
        assert [(s.action, s.observation) for s in got.steps] == \
            [(s.action, s.observation) for s in t.steps]
        assert webshop.purchase(got) == webshop.purchase(t)


def test_human_goals_are_peoples_instructions_with_options_as_values(
        webshop_data: Path) -> None:
    """WebShop's benchmark goals (`WEBSHOP_GOALS=human`): the 1000-product subset carries
    people's instructions for 13 products. No reference recorded them, so this checks their
    shape and that the expert can play them, not WebShop's exact draws."""
    human = WebShop(goals="human")
    written = json.loads((webshop_data / "items_human_ins_subset13.json").read_text())
    assert len(human.catalog.goals) == sum(len(v) for v in written.values()) == 13
    by_asin = {g.asin: g for g in human.catalog.goals}
    for asin, [person] in written.items():
        goal = by_asin[asin]
        assert goal.instruction_text.startswith(person["instruction"].strip("."))
        assert goal.goal_options == person["instruction_options"] and goal.weight == 1.0
    trajectories = list(rollout(human, human.task_ids("test"), make_policy("expert"), "test"))
    assert len(trajectories) == 13 and all("purchase" in t.meta for t in trajectories)
    assert sum(t.reward for t in trajectories) / 13 > 0.8
