"""A WebShop session on a server speaking AgentGym's env-server protocol: the original WebShop
server a user starts (AgentGym's `webshop` env server), or ours (`hsl serve-env webshop`).

A request that never reached the server (connection refused or timed out) is tried again a
few times with backoff; one that may have reached it is not (a step is not idempotent), and
either way a server that stays away ends in one `EnvError` line naming it.
"""

from __future__ import annotations

from typing import Any

import httpx
from tenacity import (
    Retrying,
    retry_if_exception_type,
    stop_after_attempt,
    wait_exponential,
)

from hsl_tools.envs.base import EnvError
from hsl_tools.envs.webshop.site import Purchase, purchase_of

ATTEMPTS = 3


class ServerError(EnvError):
    """The WebShop server is unreachable, died, or refused a request."""


class RemoteSession:
    """One env of the server, reset to one goal; the same surface as a local `Session`."""

    def __init__(self, url: str, goal_index: int, timeout: float = 60.0) -> None:
        self.url = url.rstrip("/")
        self.client = httpx.Client(base_url=self.url,
                                   timeout=httpx.Timeout(timeout, connect=5.0))
        self.env_idx = self._call("POST", "/create")
        reply = self._call("POST", "/reset", {"env_idx": self.env_idx, "session_id": goal_index})
        self.observation: str = reply[0] if isinstance(reply, list) else reply
        self.purchase: Purchase | None = None

    def _call(self, method: str, path: str, body: dict[str, Any] | None = None) -> Any:
        where = f"WebShop server {self.url}{path}"
        retrying = Retrying(stop=stop_after_attempt(ATTEMPTS), reraise=True,
                            wait=wait_exponential(multiplier=0.2, max=2.0),
                            retry=retry_if_exception_type((httpx.ConnectError,
                                                           httpx.ConnectTimeout)))
        try:
            response = retrying(self.client.request, method, path, json=body,
                                params={"env_idx": self.env_idx} if method == "GET" else None)
        except (httpx.ConnectError, httpx.ConnectTimeout) as e:
            raise ServerError(f"{where}: not reachable after {ATTEMPTS} tries ({e})") from None
        except httpx.HTTPError as e:
            raise ServerError(f"{where}: {type(e).__name__} ({e}); the server may have died "
                              "mid-episode") from None
        if response.status_code != 200:
            raise ServerError(f"{where}: HTTP {response.status_code}: {response.text[:200]}")
        try:
            return response.json()
        except ValueError:
            raise ServerError(f"{where}: the reply is not JSON: {response.text[:200]}") from None

    def step(self, action: str) -> tuple[str, float | int, bool]:
        reply = self._call("POST", "/step", {"env_idx": self.env_idx, "action": action})
        try:
            observation, reward, done = reply["state"], reply["reward"], bool(reply["done"])
        except (TypeError, KeyError):
            raise ServerError(f"WebShop server {self.url}/step: want {{state, reward, done}}, "
                              f"got {str(reply)[:200]}") from None
        self.observation = observation
        if done and self.purchase is None:
            self.purchase = purchase_of(observation, reward)
        return observation, reward, done

    def available_actions(self) -> dict[str, Any]:
        return self._call("GET", "/available_actions")

    def clickables(self) -> list[str]:
        return list(self.available_actions().get("clickables", []))

    def close(self) -> None:
        self.client.close()
