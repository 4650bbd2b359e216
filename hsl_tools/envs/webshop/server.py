"""Our WebShop served on AgentGym's env-server protocol, so other stacks can train on it
without Java: `hsl serve-env webshop`.

POST /create -> env_idx; POST /reset {env_idx, session_id} -> [observation, null];
POST /step {env_idx, action} -> {state, reward, done, info}; GET /observation,
/available_actions and /instruction_text take ?env_idx=. A bad request is answered 400 with
{"error": …}. Starlette (a small, well-kept ASGI toolkit) under uvicorn.
"""

from __future__ import annotations

import random
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from hsl_tools.envs.webshop.site import Session


class BadRequest(ValueError):
    """What the client asked cannot be done; the message goes back as the error."""


class Shops:
    """The sessions of one server, by env_idx (the app runs on one event loop: requests are
    handled one at a time)."""

    def __init__(self, env: Any, seed: int = 0) -> None:
        self.env = env
        self.sessions: dict[int, Session | None] = {}
        self.rng = random.Random(seed)

    def create(self) -> int:
        env_idx = len(self.sessions)
        self.sessions[env_idx] = None
        return env_idx

    def reset(self, env_idx: int, session_id: int | None) -> Session:
        self._check(env_idx)
        goals = self.env.catalog.goals
        if session_id is None:  # as WebShop: a goal drawn by weight
            session_id = self.rng.choices(range(len(goals)), [g.weight for g in goals])[0]
        if not isinstance(session_id, int) or not 0 <= session_id < len(goals):
            raise BadRequest(f"session_id must be a goal index in 0..{len(goals) - 1}")
        session = Session(self.env.catalog, self.env.engine, goals[session_id])
        self.sessions[env_idx] = session
        return session

    def session(self, env_idx: int) -> Session:
        self._check(env_idx)
        session = self.sessions[env_idx]
        if session is None:
            raise BadRequest(f"env {env_idx} has not been reset")
        return session

    def _check(self, env_idx: Any) -> None:
        if not isinstance(env_idx, int) or env_idx not in self.sessions:
            raise BadRequest(f"no env {env_idx!r}: POST /create first")


def make_app(env: Any, seed: int = 0) -> Starlette:
    """The ASGI app over a WebShop environment (its data loaded once, shared by sessions)."""
    shops = Shops(env, seed)

    async def body(request: Request) -> dict[str, Any]:
        try:
            data = await request.json()
        except ValueError:
            raise BadRequest("the body is not JSON") from None
        if not isinstance(data, dict):
            raise BadRequest("the body must be a JSON object")
        return data

    def env_idx(request: Request) -> int:
        value = request.query_params.get("env_idx", "")
        if not value.lstrip("-").isdigit():
            raise BadRequest("want ?env_idx=<int>")
        return int(value)

    async def create(request: Request) -> JSONResponse:
        return JSONResponse(shops.create())

    async def reset(request: Request) -> JSONResponse:
        data = await body(request)
        session = shops.reset(data.get("env_idx"), data.get("session_id"))
        return JSONResponse([session.observation, None])

    async def step(request: Request) -> JSONResponse:
        data = await body(request)
        action = data.get("action")
        if not isinstance(action, str):
            raise BadRequest("want {env_idx, action}")
        observation, reward, done = shops.session(data.get("env_idx")).step(action)
        return JSONResponse({"state": observation, "reward": reward, "done": done,
                             "info": None})

    async def observation(request: Request) -> JSONResponse:
        return JSONResponse(shops.session(env_idx(request)).observation)

    async def available_actions(request: Request) -> JSONResponse:
        return JSONResponse(shops.session(env_idx(request)).available_actions())

    async def instruction_text(request: Request) -> JSONResponse:
        return JSONResponse(shops.session(env_idx(request)).goal.instruction_text)

    async def hello(request: Request) -> JSONResponse:
        return JSONResponse("This is environment WebShop (hsl-tools).")

    async def bad_request(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"error": str(exc)}, status_code=400)

    return Starlette(routes=[
        Route("/", hello), Route("/create", create, methods=["POST"]),
        Route("/reset", reset, methods=["POST"]), Route("/step", step, methods=["POST"]),
        Route("/observation", observation), Route("/available_actions", available_actions),
        Route("/instruction_text", instruction_text),
    ], exception_handlers={BadRequest: bad_request})


def serve(env: Any, host: str = "127.0.0.1", port: int = 36001, seed: int = 0) -> None:
    """Serve until interrupted (the data and search index are built before listening)."""
    import uvicorn

    env.engine  # noqa: B018 - build the index before the first request waits for it
    uvicorn.run(make_app(env, seed), host=host, port=port, log_level="warning")
