"""Relabeled goals as WebShop instructions: written from what a purchase showed, read back
into the structure WebShop's reward checks, and judged by that reward.

A relabeled goal is an instruction in WebShop's own goal style: the product, `with name:
value` for each option chosen, and a price bound ("i am looking for <title> with color:
black, and size: large, and price lower than 30.00 dollars"). Read back (`parse`), its product
words are the goal's name (the reward's product-type check compares their nouns with the bought
title), its option values and price bound are the goal's own; a relabeled goal carries no
query, category or attributes, which only a real goal has. A goal holds when the purchase scores 1.0
for it, exactly as WebShop scores a purchase.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from hsl_tools.envs.webshop.data import NO_PRICE_BOUND, PRICE_RANGE, Catalog, Goal
from hsl_tools.envs.webshop.reward import purchase_reward
from hsl_tools.envs.webshop.site import Purchase

if TYPE_CHECKING:
    from hsl_tools.envs.webshop import WebShop

_PRICE = re.compile(r"^(?P<head>.*?)(?:,?\s*and)?,?\s*(?:the\s+)?price\s+(?:lower|less)\s+"
                    r"than\s+\$?(?P<bound>\d+(?:\.\d+)?)\s*(?:dollars?)?\s*\.?$", re.IGNORECASE)
_OPTION = re.compile(r"^(?P<name>[^:,]{1,40}):\s*(?P<value>.+)$")


def price_bound(price: float) -> float | None:
    """The first step of WebShop's price ladder above a price (its goals draw their bounds
    from the four above it); None above the ladder's top."""
    return next((bound for bound in PRICE_RANGE if bound > price), None)


def instruction(title: str, options: dict[str, str], price: float | None) -> str:
    """The shopping instruction that a purchase of `title` with `options` at `price` (or at
    most `price`, for a price range) satisfies, in WebShop's goal style."""
    text = f"i am looking for {' '.join(title.lower().split())}"
    if options:
        text += " with " + ", and ".join(f"{name}: {value}" for name, value in options.items())
    bound = None if price is None else price_bound(price)
    if bound is not None:
        text += f", and price lower than {bound:.2f} dollars"
    return text


def _options(tail: str) -> dict[str, str] | None:
    """`name: value, and name: value` as a dict; None when the text is not only that."""
    options = {}
    for part in tail.split(", and "):
        m = _OPTION.match(part.strip())
        if m is None:
            return None
        options[m["name"].strip().lower()] = m["value"].strip().lower()
    return options


def parse(text: str) -> Goal:
    """The structure WebShop's reward checks, read from an instruction: its price bound
    (none: no bound), its options (the last `with name: value, and …` clause) and its product
    words (the rest)."""
    head, bound = " ".join(text.split()), float(NO_PRICE_BOUND)
    if m := _PRICE.match(head):
        head, bound = m["head"].strip().rstrip(","), float(m["bound"])
    options: dict[str, str] = {}
    for m in reversed(list(re.finditer(r"\swith\s", head))):
        found = _options(head[m.end():])
        if found is not None:
            head, options = head[:m.start()], found
            break
    name = head.strip()  # "i need" and the like stay: spaCy tags a bare word less surely
    # options as values, as WebShop keeps people's goals: its colour normalisation then
    # treats the goal's value as it treats the bought one (a `rectangular` shape reads "tan")
    return Goal(asin="", category="", query="", name=name, product_category="",
                instruction_text=text, attributes=[], price_upper=bound,
                goal_options=list(options.values()))


def chosen_options(catalog: Catalog, asin: str, goal: Goal) -> dict[str, str]:
    """The options a shopper wanting `goal` would click on product `asin`: each goal option
    value that the product offers, under the product's own option name."""
    offered = catalog.products[asin].options
    wanted = set(goal.option_values())
    return {name: value for name, values in offered.items() for value in values
            if value in wanted}


@dataclass
class PurchaseJudge:
    """What a WebShop trajectory achieved: at most one goal, the purchase, held from the step
    that bought it. A named goal holds when the purchase scores 1.0 for it."""

    env: WebShop
    purchase: Purchase | None
    step: int  # the step that bought (0 without a purchase)

    @property
    def achieved(self) -> dict[str, int]:
        p = self.purchase
        if p is None:
            return {}
        options = ", ".join(f"{k}: {v}" for k, v in p.options.items()) or "no options"
        return {f"bought {p.asin} ({options}), reward {p.reward:.2f}": self.step}

    def score(self, goal: str) -> tuple[float, dict[str, Any]]:
        assert self.purchase is not None
        return self.env.score(self.purchase, parse(goal))

    def judge(self, goal: str) -> tuple[str, int] | str:
        if self.purchase is None:
            return "the trajectory bought nothing"
        reward, info = self.score(goal)
        if reward < 1.0:
            return f"the purchase ({self.purchase.asin}) scores {reward:.2f} for {goal!r}: " \
                f"{_shortfall(info)}"
        return next(iter(self.achieved)), self.step

    def measures(self, goal: str) -> dict[str, float]:
        """The purchase's reward for the goal, which of its parts agree, and how many other
        products of the catalog would also score 1.0 for it (a goal anything satisfies is
        worth nothing)."""
        if self.purchase is None:
            return {"reward": 0.0}
        reward, info = self.score(goal)
        others = products_scoring_one(self.env, parse(goal), skip=self.purchase.asin)
        return {"reward": reward, "product": float(info["r_type"] == 1.0),
                "options": float(info.get("r_option", 1.0) == 1.0),
                "price": float(info.get("r_price", True)), "others scoring 1.0": float(others),
                "no other scores 1.0": float(others == 0)}


def _shortfall(info: dict[str, Any]) -> str:
    """Which parts of the reward fell short, in words."""
    parts = []
    if info["r_type"] < 1.0:
        parts.append(f"product type {info['r_type']:g} (title nouns "
                     f"{info['title_score']:.0%} shared)")
    if info.get("r_option", 1.0) < 1.0:
        parts.append(f"options {info['r_option']:.0%} matched")
    if not info.get("r_price", True):
        parts.append("price above the bound")
    return ", ".join(parts) or "rounding"


def products_scoring_one(env: WebShop, goal: Goal, skip: str = "") -> int:
    """How many products (other than `skip`) score 1.0 for a goal when bought with the goal's
    options they offer, at their own price."""
    catalog = env.catalog
    count = 0
    for asin, product in catalog.products.items():
        if asin == skip or catalog.prices[asin] > goal.price_upper:
            continue
        reward, _ = purchase_reward(product, goal, catalog.prices[asin],
                                    chosen_options(catalog, asin, goal))
        count += reward >= 1.0
    return count
