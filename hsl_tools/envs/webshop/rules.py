"""The rule relabeler for WebShop, from a trajectory's pages alone.

Goal: the done page names what was bought (product and options); the product page before it
shows its title and price; together they make the one instruction the purchase satisfies
(`goals.instruction`). Relevance: the search that listed the product, the page turns that
reached it, the click that opened it, the last click on each option it was bought with and
`buy now`; every other action (abandoned products, detours to description, features or
reviews, turns past it, options changed again, no-ops) is not.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from hsl_tools.envs.webshop.goals import instruction
from hsl_tools.envs.webshop.site import Purchase, parse_action, purchase_of
from hsl_tools.records import Step

SEP = " [SEP] "
_RESULTS_PAGE = re.compile(r"\[SEP\] Page (\d+) \(Total results: \d+\)")


def bought(steps: Sequence[Step]) -> tuple[int, Purchase] | None:
    """(0-based index of the step that bought, what it bought); None if nothing was."""
    for i, step in enumerate(steps):
        if parse_action(step.action) == ("click", "buy now"):
            purchase = purchase_of(step.observation, 0.0)
            if purchase is not None:
                return i, purchase
    return None


def _title_and_price(page: str) -> tuple[str, float | None] | None:
    """A product page's title and the most its price can be (the top of a range)."""
    texts = page.split(SEP)
    for i, text in enumerate(texts[1:], 1):
        if text.startswith("Price: "):
            prices = [float(p) for p in re.findall(r"\$([\d.]+)", text)]
            return texts[i - 1], max(prices) if prices else None
    return None


def rule_goals(steps: Sequence[Step]) -> list[tuple[str, int]]:
    """The purchase as an instruction, at the step that bought it (none without a purchase,
    or when the page before `buy now` is not the product's)."""
    found = bought(steps)
    if found is None or found[0] == 0:
        return []
    i, purchase = found
    shown = _title_and_price(steps[i - 1].observation)
    if shown is None:
        return []
    title, price = shown
    return [(instruction(title, purchase.options, price), i + 1)]


def _page_number(observation: str) -> int | None:
    m = _RESULTS_PAGE.search(observation)
    return int(m[1]) if m else None


def rule_relevance(steps: Sequence[Step], goal: str) -> list[tuple[bool, str]]:
    """A label for each step of a prefix that ends in the purchase (ValueError otherwise)."""
    found = bought(steps)
    if found is None or found[0] != len(steps) - 1:
        raise ValueError(f"the prefix for {goal!r} does not end in a purchase")
    buy, purchase = found
    actions = [parse_action(s.action) for s in steps]
    opened = max((i for i in range(buy) if actions[i] == ("click", purchase.asin.lower())),
                 default=None)
    searched = max((i for i in range(opened or 0) if actions[i][0] == "search"), default=None)
    if opened is None or searched is None:
        raise ValueError(f"the prefix for {goal!r} never searched and opened {purchase.asin}")
    labels = [(False, "did not lead to the purchase")] * len(steps)
    labels[searched] = (True, "the search that listed the product")
    labels[opened] = (True, "opened the product bought")
    labels[buy] = (True, "bought it")
    # turns that reached the listing page: the last turn onto each page up to it
    listing = _page_number(steps[opened - 1].observation) or 1
    for page in range(2, listing + 1):
        turn = max((i for i in range(searched + 1, opened)
                    if actions[i] == ("click", "next >")
                    and _page_number(steps[i].observation) == page
                    and _page_number(steps[i - 1].observation) == page - 1), default=None)
        if turn is not None:
            labels[turn] = (True, f"turned to page {page}, which lists the product")
    for name, value in purchase.options.items():
        last = max((i for i in range(opened + 1, buy) if actions[i] == ("click", value)),
                   default=None)
        if last is not None:
            labels[last] = (True, f"chose {name}: {value}")
    return labels
