"""Versioned prompt templates: `prompts/<family>/<task>/v<N>.md`, addressed as
`family/task@vN` (newest version when `@vN` is left out)."""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from string import Template

from hsl_tools.llm.base import Conversation
from hsl_tools.records import Step

# The repository's prompts/ folder; HSL_PROMPTS points elsewhere (an installed copy, a fork).
PROMPTS_DIR = Path(os.environ.get("HSL_PROMPTS", Path(__file__).resolve().parents[2] / "prompts"))


@dataclass(frozen=True)
class Prompt:
    id: str  # family/task@vN, as written into every output record
    system: str
    user: str

    def render(self, **fields: object) -> Conversation:
        values = {k: str(v) for k, v in fields.items()}
        return [{"role": "system", "content": Template(self.system).safe_substitute(values)},
                {"role": "user", "content": Template(self.user).safe_substitute(values)}]


def load_prompt(name: str, root: Path = PROMPTS_DIR) -> Prompt:
    """A prompt by `family/task@vN` or `family/task` (the newest version). A file whose front
    matter says `opens_with: family/part@vN` is only the end of its user message: that part's
    system message and user message come first, so that two tasks opening alike share a
    prompt prefix (which a serving engine computes once: prefix caching)."""
    base, _, version = name.partition("@")
    folder = root / base
    versions = sorted((int(m[1]) for p in folder.glob("v*.md")
                       if (m := re.fullmatch(r"v(\d+)\.md", p.name))), reverse=True)
    if not versions:
        known = sorted(str(p.parent.relative_to(root)) for p in root.glob("*/*/v*.md"))
        raise ValueError(f"no prompt {base!r} in {root} (known: {', '.join(sorted(set(known)))})")
    number = versions[0] if not version else int(version.lstrip("v"))
    path = folder / f"v{number}.md"
    if not path.exists():
        raise ValueError(f"no version {version} of prompt {base!r} (have: "
                         f"{', '.join(f'v{v}' for v in versions)})")
    text = path.read_text(encoding="utf-8")
    front = re.match(r"---\n(.*?)\n---\n", text, re.DOTALL)
    opens = re.search(r"^opens_with:\s*(\S+)\s*$", front[1], re.MULTILINE) if front else None
    if opens is not None and front is not None:
        if "@" not in opens[1]:  # a moving opening would change this version's text
            raise ValueError(f"{path}: opens_with {opens[1]!r} must name a version (@vN)")
        opening = load_prompt(opens[1], root)
        return Prompt(f"{base}@v{number}", opening.system,
                      f"{opening.user}\n\n{text[front.end():].strip()}")
    m = re.match(r"---\n.*?\n---\n(.*?)\n===\n(.*)\Z", text, re.DOTALL)
    if m is None:
        raise ValueError(f"{path}: want front matter, system text, a '===' line, user text")
    return Prompt(f"{base}@v{number}", m[1].strip(), m[2].strip())


def numbered(steps: list[Step], brief: Callable[[str], str] = str) -> str:
    """A trajectory as numbered action/observation pairs, each observation as `brief` puts
    it (an environment's long pages shortened for a prompt)."""
    return "\n".join(f"Step {i}. Action: {s.action}\n        Observation: {brief(s.observation)}"
                     for i, s in enumerate(steps, 1))
