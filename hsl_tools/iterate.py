"""The HSL loop of a recipe: SFT first, then iterations of collect -> relabel -> mask ->
buffer -> train, evaluating every few iterations. Each step lives in its own folder of the run
(`run_dir` spells the layout) and is skipped when already done, so re-running a killed run
continues where it stopped."""

from __future__ import annotations

import json
import random
import shutil
from contextlib import closing
from pathlib import Path
from typing import Any

from rich.console import Console

from hsl_tools.agent import make_policy
from hsl_tools.collect import collect, collect_made_by
from hsl_tools.envs.base import Environment, make_env
from hsl_tools.evaluate import evaluate
from hsl_tools.present import success_line
from hsl_tools.recipe import Recipe, write_recipe
from hsl_tools.records import Demo, Trajectory, check_made_by, read_records, write_records
from hsl_tools.relabel.relabelers import make_relabeler
from hsl_tools.relabel.stages import mask, relabel
from hsl_tools.run_dir import EVAL_DPO, EVAL_FINAL, EVAL_SFT, Iteration, RunDir, Stage
from hsl_tools.run_lock import exclusive
from hsl_tools.train.data import load_demos, push
from hsl_tools.train.loop import train


def run_recipe(recipe: Recipe, console: Console, until_sft: bool = False) -> dict[str, Any]:
    """Run (or continue) a recipe, or only its SFT and eval-sft (`until_sft`); returns the
    evaluations by name. A second process on the same run folder is refused (FolderInUse)."""
    with exclusive(recipe.folder.path), \
            closing(make_env(recipe.run.env, max_steps=recipe.run.max_steps)) as env:
        return _run_stages(recipe, env, console, until_sft)


def _run_stages(recipe: Recipe, env: Environment, console: Console, until_sft: bool
                ) -> dict[str, Any]:
    """Every stage not yet done, in order; the environment's workers live through them all."""
    run = recipe.folder
    write_recipe(recipe)
    evals: dict[str, Any] = {}

    def evaluate_at(name: str, folder: Path, checkpoint: Path) -> None:
        summary, _ = evaluate(env, make_policy(f"hf:{checkpoint}", env.name),
                              recipe.eval.splits or list(env.eval_splits), recipe.eval.tasks(),
                              folder, recipe.eval.batch_size)
        evals[name] = summary
        console.print(f"[bold]{name}[/]: {success_line(summary)}")

    start = _starting_model(recipe, run, console)
    expert = _expert_trajectories(recipe, env, run.expert, console)
    ground_truth = load_demos(expert)
    sft = run.sft
    if not sft.done:
        train(start, sft.path, recipe.sft.train_config(recipe.run.seed), ground_truth,
              resume=True)
        sft.mark_done()
    evaluate_at(EVAL_SFT, run.evaluation(EVAL_SFT), sft.path)
    if until_sft:
        return evals
    checkpoint = sft.path
    h = recipe.hsl
    for i in range(1, h.iterations + 1):
        step = run.iteration(i)
        if not step.done:
            line = run_iteration(recipe, env, run, step, checkpoint, ground_truth)
            if recipe.eval.every and i % recipe.eval.every == 0 and i != h.iterations:
                evaluate_at(step.eval_name, step.eval, step.ckpt)
                line["eval"] = evals[step.eval_name]
            with run.metrics.open("a", encoding="utf-8") as f:
                f.write(json.dumps(line) + "\n")
            step.mark_done()
            if not h.keep_checkpoints and i > 1:
                shutil.rmtree(run.iteration(i - 1).ckpt, ignore_errors=True)
            console.print(f"iteration {i}: {line['trajectories']} episodes "
                          f"({line['success']:.0%} won), {line['new_demos']} new demos, buffer "
                          f"{line['buffer']}, loss {line['loss']:.3f}")
        checkpoint = step.ckpt
    if h.iterations:
        evaluate_at(EVAL_FINAL, run.evaluation(EVAL_FINAL), checkpoint)
    if recipe.dpo.steps:
        evaluate_at(EVAL_DPO, run.evaluation(EVAL_DPO),
                    _dpo(recipe, env, run.dpo, checkpoint, expert, ground_truth))
    return evals


def _dpo(recipe: Recipe, env: Environment, stage: Stage, checkpoint: Path, expert: Path,
         ground_truth: list[Demo]) -> Path:
    """The agent plays the ground-truth tasks, then DPO prefers each expert demo over the
    agent's failure on the same task, from (and against) `checkpoint`."""
    d = recipe.dpo
    if not stage.done:
        tasks = sorted({t.task_id for t in read_records(expert, Trajectory)})
        if d.tasks is not None and d.tasks < len(tasks):
            tasks = sorted(random.Random(f"{recipe.run.seed}/dpo").sample(tasks, d.tasks))
        policy = make_policy(f"hf:{checkpoint}", env.name, d.temperature, recipe.run.seed)
        collect(stage.agent, env, [(env.train_split, tasks)], policy, recipe.model.batch_size)
        train(str(checkpoint), stage.ckpt, d.train_config(recipe.run.seed), ground_truth,
              rejected=list(read_records(stage.agent, Trajectory)),
              reference=str(checkpoint), resume=True)
        stage.mark_done()
    return stage.ckpt


# the expert runs no model: as many episodes at once as the environment holds (live_episodes)
EXPERT_BATCH = 256


def _expert_trajectories(recipe: Recipe, env: Environment, out: Path, console: Console) -> Path:
    """OUT: the expert on the first `sft.demos` train tasks. With `sft.expert`, a file that
    runs share (collected once: on real ALFWorld a game takes the expert ~3 s), the run plays
    only the tasks it lacks into it, then takes its records of those tasks in task order."""
    tasks = env.task_ids(env.train_split, recipe.sft.demos)
    expert = make_policy("expert")
    if recipe.sft.expert is None:
        stats = collect(out, env, [(env.train_split, tasks)], expert, batch_size=EXPERT_BATCH)
        console.print(f"expert demos: {stats.line(out)}")
        return out
    if out.exists():
        return out
    source = Path(recipe.sft.expert).expanduser()
    check_made_by(source, collect_made_by(env, expert))

    def found() -> dict[str, Trajectory]:
        if not source.exists():
            return {}
        return {t.task_id: t for t in read_records(source, Trajectory)
                if t.env == env.name and t.split == env.train_split}

    have = found()
    if any(t not in have for t in tasks):
        with exclusive(source.parent, wait=True):  # two runs sharing it collect it once
            stats = collect(source, env, [(env.train_split, tasks)], expert,
                            batch_size=EXPERT_BATCH)
        console.print(f"expert demos: {stats.line(source)}")
        have = found()
    write_records(out, (have[t] for t in tasks))
    console.print(f"expert demos: {len(tasks)} trajectories taken from {source}")
    return out


def _starting_model(recipe: Recipe, run: RunDir, console: Console) -> str:
    if not recipe.model.init:
        return str(recipe.model.base)
    folder = run.model0
    if not (folder / "config.json").exists():
        from hsl_tools.init_model import build_scratch

        params = build_scratch(folder, recipe.model.init, env=recipe.run.env,
                               seed=recipe.run.seed)
        console.print(f"built {recipe.model.init} model: {params / 1e6:.1f} M parameters")
    return str(folder)


def run_iteration(recipe: Recipe, env: Environment, run: RunDir, step: Iteration,
                  checkpoint: Path, ground_truth: list[Demo]) -> dict[str, Any]:
    """One HSL iteration, resumable: collect b trajectories -> relabel -> mask -> push to the
    buffer -> k training steps from `checkpoint`; returns its metrics line."""
    h, i = recipe.hsl, step.number
    step.path.mkdir(parents=True, exist_ok=True)
    if h.data == "none":  # the control: no rollouts, no buffer
        played, new, buffer = [], [], []
    else:
        tasks = random.Random(f"{recipe.run.seed}/{i}").sample(env.task_ids(env.train_split),
                                                               h.collect)
        policy = make_policy(f"hf:{checkpoint}", env.name, h.temperature, recipe.run.seed + i)
        collect(step.agent, env, [(env.train_split, tasks)], policy, recipe.model.batch_size)
        # all of them, not just this call's: a killed iteration resumes with some played
        played = list(read_records(step.agent, Trajectory))
        if h.data == "self_imitation":
            new = load_demos(step.agent, "self_imitation")
        else:
            relabel(step.agent, step.goals, make_relabeler(h.relabeler),
                    only_failed_final=h.data == "relabel_failure")
            mask(step.goals, step.demos, make_relabeler(h.masker))
            new = list(read_records(step.demos, Demo))
        buffer = push(run.buffer, new, h.capacity)
    config = h.train_config(recipe.run.seed + i, objective="hsl" if buffer else "sft")
    metrics = train(str(checkpoint), step.ckpt, config, ground_truth, buffer, resume=True,
                    optimizer_from=checkpoint)
    return {"iteration": i, "trajectories": len(played),
            "success": sum(t.success for t in played) / len(played) if played else 0.0,
            "new_demos": len(new), "buffer": len(buffer), "loss": metrics.get("loss", 0.0),
            "tokens_per_s": metrics.get("tokens_per_s", 0.0)}
