"""`hsl grid --status`: each run's stage, progress and newest evaluation, read off its files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

from typer.testing import CliRunner

from conftest import said
from hsl_tools.cli import app
from hsl_tools.grid import (
    load_grid,
)
from hsl_tools.records import write_json
from hsl_tools.run_lock import exclusive
from hsl_tools.run_status import run_status


def test_status_follows_a_run_through_its_stages(tmp_path: Path) -> None:
    """`hsl grid --status` reads each stage off the files a run leaves, in the run's order."""
    (tmp_path / "base.toml").write_text('[run]\ndir = "x"\n[sft]\ndemos = 8\nsteps = 6\n'
                                        '[hsl]\niterations = 2\n[dpo]\nsteps = 5\n')
    (tmp_path / "grid.toml").write_text(
        f'base = "base.toml"\ndir = "{tmp_path / "g"}"\nseeds = [1]\n[cells.a]\n[cells.b]\n'
        'hsl = { iterations = 0 }\ndpo = { steps = 0 }\n')
    recipe = load_grid(tmp_path / "grid.toml")[1]["a-s1"]
    run = Path(recipe.run.dir)

    clock = iter(range(0, 10_000, 120))  # each file written two minutes after the last

    def write(path: str, steps: int = 0) -> None:
        (run / path).parent.mkdir(parents=True, exist_ok=True)
        if path.endswith("summary.json"):
            write_json(run / path, {"summary": {"seen": {"all": {"success": steps / 8}},
                                                "unseen": {"all": {"success": 0.0}}}})
        else:  # training steps of 90 s, one paused for an hour, and a line being written
            (run / path).write_text("".join(
                json.dumps({"step": s, "seconds": 3600.0 if s == 2 else 90.0}) + "\n"
                for s in range(1, steps + 1)) + '{"step": 9')
        now = next(clock)
        os.utime(run / path, (now, now))

    stages = [(lambda: None, ("not started", "", "")),
              (lambda: write("sft/train.jsonl", 4), ("SFT", "4/6 steps, ~3 min left", "")),
              (lambda: write("sft/done"), ("SFT evaluation", "", "")),
              (lambda: write("eval-sft/summary.json", 1),
               ("SFT done", "", "eval-sft: seen 12.5%, unseen 0.0%")),
              (lambda: write("iter-001/agent.jsonl"), ("HSL", "0/2 iterations", "eval-sft")),
              (lambda: write("iter-001/done"),
               ("HSL", "1/2 iterations, ~4 min left", "eval-sft")),
              (lambda: write("iter-002/done"), ("final evaluation", "", "eval-sft")),
              (lambda: write("eval-final/summary.json", 2), ("HSL done", "", "eval-final")),
              (lambda: write("dpo/agent.jsonl"), ("DPO", "rollouts", "eval-final")),
              (lambda: write("dpo/ckpt/train.jsonl", 3),
               ("DPO", "3/5 steps, ~3 min left", "eval-final")),
              (lambda: write("dpo/done"), ("DPO evaluation", "", "eval-final")),
              (lambda: write("eval-dpo/summary.json", 3),
               ("done", "", "eval-dpo: seen 37.5%, unseen 0.0%"))]
    with exclusive(run):  # as the process that runs it would
        for step, (stage, progress, evaluation) in stages:
            step()
            status = run_status(recipe)
            assert (status.stage, status.progress) == (stage, progress)
            assert status.evaluation.startswith(evaluation) and bool(status.evaluation) == bool(
                evaluation)
    result = CliRunner().invoke(app, ["grid", str(tmp_path / "grid.toml"), "--status"],
                                terminal_width=120)
    assert result.exit_code == 0, result.output
    assert re.search(r"a-s1 +done +eval-dpo: seen 37.5%", result.output)
    assert re.search(r"b-s1 +not started", result.output)
    assert "1 of 2 run(s) done" in said(result.output)
    assert not (tmp_path / "g" / "b-s1").exists()  # looking wrote nothing
    # the same run mid-stage with no process holding it (the grid stopped, or was killed)
    for path in ("eval-dpo/summary.json", "dpo/done"):
        (run / path).unlink()
    assert run_status(recipe).progress == "3/5 steps, ~3 min left, not running"
