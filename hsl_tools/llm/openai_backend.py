"""OpenAI-compatible backend (`vllm serve`, vLLM's api_server, or any such server).

Spec `openai:URL#MODEL`. A batch becomes concurrent requests. Transport errors are retried
with exponential backoff (tenacity); a server still down after that is one clear error.
Time limits: `$HSL_CONNECT_TIMEOUT` (default 5 s) to connect and `$HSL_READ_TIMEOUT` (default
30 s) for the reply, so a server that accepts and never answers fails a request in well under
a minute, and a stage within `attempts` x that; raise the read limit for long replies from a
large model.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
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


class OpenAIChatModel:
    supports_json_schema = True

    def __init__(self, target: str, concurrency: int = 16, attempts: int = 3,
                 backoff: float = 1.0) -> None:
        try:
            import openai
        except ImportError:
            raise ModelError("openai backend needs: pip install 'hsl-tools[vllm]'") from None
        url, sep, model = target.partition("#")
        if not sep or not model or not url.startswith(("http://", "https://")):
            raise ModelError(f"bad openai spec {target!r}: want openai:http://HOST:PORT/v1#MODEL")
        self.spec, self.url, self.model = f"openai:{target}", url, model
        # the client's own Timeout class: openai 3 moved from httpx to httpx2, whose clients
        # refuse an httpx.Timeout
        timeout = openai.Timeout(_seconds("HSL_READ_TIMEOUT", 30.0),
                                 connect=_seconds("HSL_CONNECT_TIMEOUT", 5.0))
        self.client = openai.OpenAI(base_url=url, api_key=os.environ.get("OPENAI_API_KEY", "EMPTY"),
                                    max_retries=0, timeout=timeout)
        self._transient = (openai.APIConnectionError, openai.APITimeoutError,
                           openai.RateLimitError, openai.InternalServerError)
        self._status_error = openai.APIStatusError
        self.concurrency, self.attempts, self.backoff = concurrency, attempts, backoff

    def generate(self, conversations: list[Conversation], params: GenerationParams,
                 sessions: list[str] | None = None) -> list[str]:
        with ThreadPoolExecutor(self.concurrency) as pool:
            return list(pool.map(lambda ic: self._one(ic[1], params, params.schema(ic[0])),
                                 enumerate(conversations)))

    def _one(self, conversation: Conversation, params: GenerationParams,
             schema: dict[str, Any] | None) -> str:
        extra = {}
        if schema:
            extra["response_format"] = {"type": "json_schema", "json_schema": {
                "name": schema.get("title", "reply"), "schema": schema}}
        retrying = Retrying(stop=stop_after_attempt(self.attempts),
                            wait=wait_exponential(multiplier=self.backoff, max=30),
                            retry=retry_if_exception_type(self._transient))
        try:
            reply = retrying(self.client.chat.completions.create, model=self.model,
                             messages=conversation, max_tokens=params.max_new_tokens,
                             temperature=params.temperature, top_p=params.top_p,
                             seed=conversation_seed(params.seed, conversation),
                             stop=list(params.stop) or None, **extra)
        except self._status_error as e:  # the server answered, with an error: not transient
            raise ModelError(f"openai: {self.url} answered {e.status_code}: "
                             f"{str(e.message).splitlines()[0]}") from None
        except RetryError as e:
            cause = e.last_attempt.exception()
            raise ModelError(f"openai: {self.url} unreachable after {self.attempts} tries "
                             f"({type(cause).__name__}: {cause})") from None
        return strip_at_stop(reply.choices[0].message.content or "", params.stop)
