"""How an expected failure reaches the user: one line, short, with no secret in it.

Every message the command line prints for an input, output, data or server problem goes
through `one_line`: an OS error names its file, whitespace and newlines collapse, anything
past `LIMIT` characters is cut (a 10 MB observation quoted in an error stays a line), and
API keys and `Authorization` values are masked, wherever they came from (a server that echoes
the key in its reply, an exception that quotes a header).
"""

from __future__ import annotations

import os
import re

LIMIT = 400
MASK = "***"
_SECRET_VARS = re.compile(r"(API_KEY|TOKEN|SECRET)$")
_AUTHORIZATION = re.compile(r"(?i)(authorization['\"]?\s*[:=]\s*['\"]?(?:bearer\s+)?)[^\s'\",}]+")
_KEY_SHAPES = re.compile(r"\b(sk|hf)[-_][A-Za-z0-9_-]{8,}")


def secrets() -> list[str]:
    """Values of the environment's API keys and tokens (long enough to be secrets)."""
    return [v for k, v in os.environ.items() if _SECRET_VARS.search(k) and len(v) >= 8]


def redact(text: str) -> str:
    for value in secrets():
        text = text.replace(value, MASK)
    text = _AUTHORIZATION.sub(rf"\1{MASK}", text)
    return _KEY_SHAPES.sub(rf"\1-{MASK}", text)


def one_line(error: BaseException) -> str:
    """The error as one line of at most `LIMIT` characters, secrets masked."""
    if isinstance(error, OSError) and error.filename is not None:
        text = f"{error.filename}: {error.strerror or error}"
    else:
        text = str(error) or type(error).__name__
    text = redact(" ".join(text.split()))
    return text if len(text) <= LIMIT else text[:LIMIT - 1] + "…"
