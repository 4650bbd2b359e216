"""One process per run folder: a second is refused before it writes, a killed holder's lock
goes with it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from typer.testing import CliRunner

from hsl_tools.cli import app
from hsl_tools.run_lock import FolderInUse, exclusive, holder

RECIPE = Path(__file__).resolve().parents[1] / "recipes" / "household-tiny.toml"


def test_a_second_process_on_a_run_folder_is_refused(tmp_path: Path) -> None:
    """While one process runs a folder, `hsl iterate` on it stops before writing anything and
    names the holder; a holder killed with SIGKILL leaves no lock behind."""
    run = tmp_path / "run"
    with exclusive(run):
        result = CliRunner().invoke(app, ["iterate", str(RECIPE), "--set", f'run.dir="{run}"'])
        assert isinstance(result.exception, FolderInUse)
        assert f"{run} is in use by another hsl process (pid {os.getpid()})" in str(
            result.exception)
    assert [p.name for p in run.iterdir()] == [".lock"]
    killed = ("import os, sys\nfrom pathlib import Path\nfrom hsl_tools.run_lock import "
              "exclusive\nwith exclusive(Path(sys.argv[1])):\n    os.kill(os.getpid(), 9)\n")
    assert subprocess.run([sys.executable, "-c", killed, str(run)]).returncode == -9
    assert (run / ".lock").read_text().strip() and holder(run) is None  # its pid, dead
    with exclusive(run):  # the dead holder's lock went with it
        assert holder(run) == os.getpid()
    assert holder(run) is None
