"""AgentGym's env-server protocol both ways: `hsl serve-env webshop` (a real uvicorn server in
a subprocess, on loopback) and the HTTP client that plays WebShop episodes on it."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from hsl_tools.agent import make_policy, rollout
from hsl_tools.cli import app
from hsl_tools.envs.webshop import WebShop
from hsl_tools.envs.webshop.client import RemoteSession, ServerError
from hsl_tools.envs.webshop.site import Session
from hsl_tools.records import Trajectory, read_records

runner = CliRunner()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(webshop_data: Path) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-m", "hsl_tools.cli", "serve-env", "webshop",
                               "--port", str(port)], env={**os.environ,
                                                          "WEBSHOP_DATA": str(webshop_data)},
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/", timeout=1).status_code == 200:
                return server, url
        except httpx.HTTPError:
            time.sleep(0.2)
        if server.poll() is not None:
            pytest.fail(f"serve-env exited: {server.stderr.read()}")
    server.kill()
    pytest.fail("serve-env did not answer within 120 s")


@pytest.fixture(scope="module")
def server(webshop: WebShop, webshop_data: Path) -> Iterator[str]:
    process, url = _start(webshop_data)
    yield url
    process.send_signal(signal.SIGINT)
    process.wait(timeout=30)


def test_the_protocol_answers_as_the_site(webshop: WebShop, server: str) -> None:
    env_idx = httpx.post(server + "/create").json()
    first = httpx.post(server + "/reset", json={"env_idx": env_idx, "session_id": 1}).json()
    local = Session(webshop.catalog, webshop.engine, webshop.catalog.goals[1])
    assert first == [local.observation, None]
    for action in ("search[women's shorts high waist]", "click[next >]", "click[b00000000x]"):
        reply = httpx.post(server + "/step", json={"env_idx": env_idx, "action": action}).json()
        observation, reward, done = local.step(action)
        assert reply == {"state": observation, "reward": reward, "done": done, "info": None}
        assert httpx.get(server + "/available_actions",
                         params={"env_idx": env_idx}).json() == local.available_actions()
        assert httpx.get(server + "/observation", params={"env_idx": env_idx}).json() == \
            observation
    bad = httpx.post(server + "/step", json={"env_idx": 999, "action": "search[x]"})
    assert bad.status_code == 400 and "POST /create" in bad.json()["error"]


def test_episodes_on_the_server_see_what_they_see_in_process(
        webshop: WebShop, server: str, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    tasks = webshop.task_ids("test", 6)
    local = {t.task_id: t for t in rollout(webshop, tasks, make_policy("random", seed=4), "test")}
    remote_env = WebShop(server=server)
    remote = {t.task_id: t for t in rollout(remote_env, tasks, make_policy("random", seed=4),
                                            "test")}
    assert {k: ([(s.action, s.observation) for s in t.steps], t.reward, t.meta)
            for k, t in remote.items()} == \
        {k: ([(s.action, s.observation) for s in t.steps], t.reward, t.meta)
         for k, t in local.items()}
    # the stages reach it through $WEBSHOP_SERVER: an expert dump replayed on the server
    dump, again = tmp_path / "expert.jsonl", tmp_path / "again.jsonl"
    assert runner.invoke(app, ["collect", "--env", "webshop", "--split", "test", "-n", "5",
                               "--out", str(dump)]).exit_code == 0
    monkeypatch.setenv("WEBSHOP_SERVER", server)
    result = runner.invoke(app, ["collect", "--env", "webshop", "--policy", f"replay:{dump}",
                                 "--out", str(again)])
    assert result.exit_code == 0, result.output
    before = {t.task_id: ([s.observation for s in t.steps], t.reward, t.meta["purchase"])
              for t in read_records(dump, Trajectory)}
    assert {t.task_id: ([s.observation for s in t.steps], t.reward, t.meta["purchase"])
            for t in read_records(again, Trajectory)} == before


def test_a_dead_server_ends_in_one_clear_line(webshop: WebShop, webshop_data: Path,
                                              tmp_path: Path) -> None:
    process, url = _start(webshop_data)
    session = RemoteSession(url, 3, timeout=10)
    session.step("search[shoes]")
    process.kill()
    process.wait(timeout=30)
    with pytest.raises(ServerError, match="not reachable after 3 tries"):
        session.step("click[next >]")
    # from the command line: one line naming the server, no traceback
    result = subprocess.run([sys.executable, "-m", "hsl_tools.cli", "eval", "--env", "webshop",
                             "--policy", "random", "-n", "2", "--out", str(tmp_path)],
                            env={**os.environ, "WEBSHOP_SERVER": url,
                                 "WEBSHOP_DATA": str(webshop_data)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert f"WebShop server {url}/create: not reachable" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
