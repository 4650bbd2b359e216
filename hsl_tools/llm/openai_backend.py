"""OpenAI-compatible backend (`vllm serve`, vLLM's api_server, or any such server).

Spec `openai:URL#MODEL`, or several servers of the same model: `openai:URL1,URL2#MODEL` or
`openai:@FILE#MODEL` (a file of URLs, one a line). A batch becomes concurrent requests, spread
over the servers; a server that stays unreachable through its retries is dropped and its
requests go to the others, so a stage keeps going while one server lives. Transport errors are
retried with exponential backoff (tenacity); with every server down it is one clear error.
Time limits: `$HSL_CONNECT_TIMEOUT` (default 5 s) to connect and `$HSL_READ_TIMEOUT` (default
30 s) for the reply, so a server that accepts and never answers fails a request in well under
a minute, and a stage within `attempts` x that; raise the read limit for long replies from a
large model.
"""

from __future__ import annotations

import os
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tenacity import (
    RetryError,
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from hsl_tools.llm.base import (
    Conversation,
    GenerationParams,
    ModelError,
    conversation_seed,
    strip_at_stop,
)


def _seconds(variable: str, default: float) -> float:
    value = os.environ.get(variable)
    try:
        seconds = float(value) if value else default
    except ValueError:
        raise ModelError(f"{variable}={value!r}: want seconds, e.g. 30") from None
    if seconds <= 0:
        raise ModelError(f"{variable}={value!r}: want a positive number of seconds")
    return seconds


class _Down(Exception):
    """A server that did not answer through its retries."""


def _urls(part: str) -> list[str]:
    """The server URLs of a spec: comma-separated, or @FILE with one a line."""
    if part.startswith("@"):
        path = Path(part[1:]).expanduser()
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as e:
            raise ModelError(f"{path}: {e.strerror or e}") from None
        urls = [x.strip() for x in text.splitlines() if x.strip() and not x.startswith("#")]
        if not urls:
            raise ModelError(f"{path}: no server URL in it")
        return urls
    return [x.strip() for x in part.split(",") if x.strip()]


class OpenAIChatModel:
    supports_json_schema = True

    def __init__(self, target: str, concurrency: int = 16, attempts: int = 3,
                 backoff: float = 1.0) -> None:
        try:
            import openai
        except ImportError:
            raise ModelError("openai backend needs: pip install 'hsl-tools[vllm]'") from None
        servers, sep, model = target.partition("#")
        urls = _urls(servers) if sep else []
        if not model or not urls or not all(u.startswith(("http://", "https://")) for u in urls):
            raise ModelError(f"bad openai spec {target!r}: want openai:http://HOST:PORT/v1#MODEL "
                             "(or URL1,URL2#MODEL, or @FILE#MODEL)")
        self.spec, self.urls, self.model = f"openai:{target}", urls, model
        # the client's own Timeout class: openai 3 moved from httpx to httpx2, whose clients
        # refuse an httpx.Timeout
        timeout = openai.Timeout(_seconds("HSL_READ_TIMEOUT", 30.0),
                                 connect=_seconds("HSL_CONNECT_TIMEOUT", 5.0))
        key = os.environ.get("OPENAI_API_KEY", "EMPTY")
        self.clients = [openai.OpenAI(base_url=u, api_key=key, max_retries=0, timeout=timeout)
                        for u in urls]
        self.down: dict[int, str] = {}  # server index -> what it last failed with
        self._lock = threading.Lock()
        self._transient = (openai.APIConnectionError, openai.APITimeoutError,
                           openai.RateLimitError, openai.InternalServerError)
        self._status_error = openai.APIStatusError
        self.concurrency, self.attempts, self.backoff = concurrency, attempts, backoff

    def generate(self, conversations: list[Conversation], params: GenerationParams,
                 sessions: list[str] | None = None) -> list[str]:
        with ThreadPoolExecutor(self.concurrency * len(self.clients)) as pool:
            return list(pool.map(lambda ic: self._one(ic[0], ic[1], params,
                                                      params.schema(ic[0])),
                                 enumerate(conversations)))

    def _one(self, i: int, conversation: Conversation, params: GenerationParams,
             schema: dict[str, Any] | None) -> str:
        """Request i on its server (i-th of the live ones), on another while servers die."""
        while True:
            with self._lock:
                live = [s for s in range(len(self.clients)) if s not in self.down]
            if not live:
                raise ModelError(self._all_down())
            server = live[i % len(live)]
            try:
                return self._ask(server, conversation, params, schema)
            except _Down as e:
                with self._lock:
                    self.down[server] = str(e)

    def _ask(self, server: int, conversation: Conversation, params: GenerationParams,
             schema: dict[str, Any] | None) -> str:
        extra = {}
        if schema:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema.get("title", "reply"), "schema": schema}}
        retrying = Retrying(stop=stop_after_attempt(self.attempts),
                            wait=wait_exponential(multiplier=self.backoff, max=30),
                            retry=retry_if_exception_type(self._transient))
        try:
            reply = retrying(self.clients[server].chat.completions.create, model=self.model,
                             messages=conversation, max_tokens=params.max_new_tokens,
                             temperature=params.temperature, top_p=params.top_p,
                             seed=conversation_seed(params.seed, conversation),
                             stop=list(params.stop) or None, **extra)
        except self._status_error as e:  # the server answered, with an error: not transient
            raise ModelError(f"openai: {self.urls[server]} answered {e.status_code}: "
                             f"{str(e.message).splitlines()[0]}") from None
        except RetryError as e:
            cause = e.last_attempt.exception()
            raise _Down(f"{type(cause).__name__}: {cause}") from None
        return strip_at_stop(reply.choices[0].message.content or "", params.stop)

    def _all_down(self) -> str:
        if len(self.urls) == 1:
            return f"openai: {self.urls[0]} unreachable after {self.attempts} tries " \
                   f"({self.down[0]})"
        return f"openai: every server unreachable after {self.attempts} tries: " + "; ".join(
            f"{url} ({self.down[s]})" for s, url in enumerate(self.urls))
