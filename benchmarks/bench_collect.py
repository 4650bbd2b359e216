"""Benchmark: `hsl collect` throughput on the household world (episodes/s, env steps/s).

Run: just bench   (or: python benchmarks/bench_collect.py -n 1000)
Cold runs rebuild every task from its id (task generation checks solvability with the expert);
warm runs reuse the task cache, isolating the environment's stepping.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from typer.testing import CliRunner

from hsl_tools.cli import app
from hsl_tools.envs.household.tasks import make_task
from hsl_tools.records import Trajectory, read_records


def timed_collect(policy: str, n: int, out: Path) -> tuple[float, int]:
    """Seconds for one `hsl collect` run (in process) and the env steps it took."""
    started = time.perf_counter()
    result = CliRunner().invoke(app, ["collect", "--policy", policy, "-n", str(n), "--out",
                                      str(out), "--fresh"])
    seconds = time.perf_counter() - started
    if result.exit_code != 0:
        raise SystemExit(result.output)
    return seconds, sum(len(t.steps) for t in read_records(out, Trajectory))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("-n", type=int, default=1000)
    n = parser.parse_args().n
    print(f"hsl collect --env household --split train -n {n}")
    with tempfile.TemporaryDirectory() as tmp:
        for policy, cold in [("expert", True), ("expert", False), ("random", False)]:
            if cold:
                make_task.cache_clear()
            seconds, steps = timed_collect(policy, n, Path(tmp) / "t.jsonl")
            print(f"  {policy:6} {'cold' if cold else 'warm'}: {n / seconds:8.0f} episodes/s "
                  f"{steps / seconds:9.0f} env steps/s ({steps} steps, {seconds:.2f} s)")


if __name__ == "__main__":
    main()
