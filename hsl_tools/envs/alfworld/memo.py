"""Memoized textworld parsing for ALFWorld workers: the same game text, a third of the time.

Profiled on `seen` games (2 cores), a textworld step spends most of its ~45 ms parsing with
tatsu: every step re-derives each admissible command's template and each grammar rule's
condition from its source text, though the texts are a few hundred fixed strings. A load
translates the game's PDDL to SAS four times (in `load` and again in `reset`, each time once
as is and once optimized for its replanner), the same problem text each time. Parses and
translations are pure functions of their text, so a worker computes each once: parses are kept
and deep-copied on use (textgen sets the copies' contexts), translations kept for the last few
problems (their results are only read), and the optimized translation is not made at all (the
replanner it serves is for games without a walkthrough; it plans on the full translation
instead). Steps then take ~14 ms and loads a quarter of the time, and every observation,
admissible list and fact is the same (tests/test_alfworld).
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Callable
from typing import Any


def _copied(parse: Callable[..., Any]) -> Callable[..., Any]:
    """`parse(text, **options)` computed once per (text, options), a fresh copy each call."""
    kept: dict[tuple[str, tuple[tuple[str, Any], ...]], Any] = {}

    def parse_once(text: str, **options: Any) -> Any:
        key = (text, tuple(sorted(options.items())))
        if key not in kept:
            kept[key] = parse(text, **options)
        return copy.deepcopy(kept[key])

    return parse_once


def memoize_textworld() -> None:
    """Replace textworld's template and rule parsers and fast-downward's PDDL translation in
    this process by memoized ones (idempotent; call it in a worker, before any game loads)."""
    import fast_downward
    import textworld.envs.pddl.textgen as textgen
    import textworld.logic as logic

    if getattr(fast_downward.pddl2sas, "memoized", False):
        return
    textgen._parse_and_convert = _copied(textgen._parse_and_convert)
    logic._parse_and_convert = _copied(logic._parse_and_convert)
    full = functools.lru_cache(maxsize=4)(fast_downward.pddl2sas)

    def translate(domain: str, problem: str, verbose: bool = False, optimize: bool = False
                  ) -> Any:
        # the optimized translation serves only textworld's replanner, which a game with a
        # walkthrough (every ALFWorld game) never calls; it may plan on the full one
        return full(domain, problem, verbose)

    translate.memoized = True  # type: ignore[attr-defined]
    fast_downward.pddl2sas = translate
