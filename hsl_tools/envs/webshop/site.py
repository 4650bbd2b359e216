"""The WebShop site as its text mode shows it: pages, clickables and what an action does.

One `Session` is one shopper on the site with one goal. Pages render as WebShop's `text`
observation mode renders them (the page's visible texts joined by " [SEP] "); actions are
parsed and dispatched as WebShop's text environment does, quirks included (see
`../shared/data/webshop/reference/README.md`): a no-op returns int 0, `Next >` is always
there, equal option values under two names collide and the later name wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from hsl_tools.envs.webshop.data import Catalog, Goal
from hsl_tools.envs.webshop.reward import purchase_reward
from hsl_tools.envs.webshop.search import SearchEngine

ACTION = re.compile(r"(.+)\[(.+)\]")
PER_PAGE = 10
SUB_PAGES = {"description": "Description", "features": "Features", "reviews": "Reviews"}


@dataclass
class Purchase:
    """What a shopper bought, and the reward the site gave for it (a purchase read off a
    remote site's done page has no price and no reward parts)."""

    asin: str
    options: dict[str, str]
    price: float | None
    reward: float
    info: dict[str, Any] = field(default_factory=dict)


@dataclass
class Page:
    """Where a session is: `kind` is start, results, item, sub or done."""

    kind: str
    query: str = ""
    page: int = 1
    asin: str = ""
    options: dict[str, str] = field(default_factory=dict)
    sub: str = ""


def parse_action(action: str) -> tuple[str, str | None]:
    """(name, lowercased argument) as WebShop parses an action; no brackets: no argument."""
    m = ACTION.match(action)
    return (action, None) if m is None else (m[1], m[2].lower())


def instruction_of(observation: str) -> str:
    """The instruction a page shows ("Instruction: [SEP] <text> [SEP] …")."""
    parts = observation.split(" [SEP] ")
    if "Instruction:" not in parts[:-1]:
        raise ValueError(f"no instruction on the page: {observation[:120]!r}")
    return parts[parts.index("Instruction:") + 1]


def brief(page: str, words: int = 10) -> str:
    """A page shortened for a prompt (see `WebShop.brief`)."""
    texts = page.split(" [SEP] ")
    if texts[:1] == ["Instruction:"]:
        texts = texts[3:]  # the instruction and "Back to Search"
    if "Buy Now" in texts or texts[:1] != ["< Prev"] and not texts[0].startswith("Page "):
        return " [SEP] ".join(texts)  # a product page, the start or the done page

    def cut(text: str) -> str:
        split = text.split()
        return " ".join(split[:words]) + (" …" if len(split) > words else "")

    return " [SEP] ".join(cut(t) for t in texts)


def purchase_of(done_page: str, reward: float) -> Purchase | None:
    """What the done page says was bought; None for a page that is not one."""
    parts = done_page.split(" [SEP] ")
    try:
        bought = parts.index("Purchased")
        asin = parts[parts.index("asin", bought) + 1]
        options = json.loads(parts[parts.index("options", bought) + 1])
    except (ValueError, IndexError):
        return None
    return Purchase(asin, options, None, float(reward))


def _json(options: dict[str, str]) -> str:
    """Options as Flask's `tojson` prints them on the done page."""
    text = json.dumps(options, sort_keys=True)
    for char, code in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("'", "\\u0027")):
        text = text.replace(char, code)
    return text


class Session:
    """One shopper with one goal; `step` answers (observation, reward, done)."""

    def __init__(self, catalog: Catalog, engine: SearchEngine, goal: Goal) -> None:
        self.catalog, self.engine, self.goal = catalog, engine, goal
        self.page = Page("start")
        self.results: list[str] = []
        self.purchase: Purchase | None = None

    # -- what the page shows
    def texts(self) -> list[str]:
        """The page's visible texts, in order, as WebShop's templates print them."""
        p, instruction = self.page, self.goal.instruction_text
        if p.kind == "start":
            return ["WebShop", "Instruction:", instruction, "Search"]
        if p.kind == "done":
            assert self.purchase is not None
            return ["Thank you for shopping with us!", "Your code:", "None",
                    "(Paste it in your MTurk interface.)", "Purchased", "asin", p.asin,
                    "options", _json(p.options), "attrs", "None", "category", "None", "query",
                    "None", "product category", "None", "Target", "asin", "options", "attrs",
                    "price upper", "instuction text", "category", "product category", "query",
                    "Goal", "None", "Reward", "Your score (min 0.0, max 1.0)",
                    str(self.purchase.reward), "Reward Details", "None"]
        texts = ["Instruction:", instruction, "Back to Search"]
        if p.kind == "results":
            texts.append(f"Page {p.page} (Total results: {len(self.results)})")
            texts += ["< Prev"] if p.page > 1 else []
            texts.append("Next >")
            for asin in self._listed():
                product = self.catalog.products[asin]
                texts += [asin, product.title, product.price_tag]
            return texts
        product = self.catalog.products[p.asin]
        texts.append("< Prev")
        if p.kind == "sub":
            if p.sub == "Description":
                texts.append(product.description)
            elif p.sub == "Features":
                texts += product.bullet_points
            return texts
        for name, values in product.options.items():
            texts += [name, *values]
        return texts + [product.title, f"Price: {product.price_tag}", "Rating: N.A.",
                        "Description", "Features", "Reviews", "Buy Now"]

    @property
    def observation(self) -> str:
        """The page in WebShop's text mode: non-empty texts stripped and joined by [SEP]."""
        return " [SEP] ".join(t.strip() for t in self.texts() if t and t != "\n")

    def clickables(self) -> dict[str, str]:
        """Clickable text -> what it is ("button", "product", or an option's name); the
        later of two equal option values wins, as on the site."""
        p = self.page
        if p.kind in ("start",):
            return {"search": "button"}
        if p.kind == "done":
            return {}
        found = {"back to search": "button"}
        if p.kind == "results":
            if p.page > 1:
                found["< prev"] = "button"
            found["next >"] = "button"
            found.update((asin.lower(), "product") for asin in self._listed())
            return found
        found["< prev"] = "button"
        if p.kind == "item":
            found.update(dict.fromkeys(("description", "features", "reviews", "buy now"),
                                       "button"))
            for name, values in self.catalog.products[p.asin].options.items():
                found.update(dict.fromkeys(values, name))
        return found

    def available_actions(self) -> dict[str, Any]:
        """As WebShop's `get_available_actions` reports them."""
        return {"has_search_bar": self.page.kind == "start",
                "clickables": list(self.clickables())}

    def _listed(self) -> list[str]:
        start = (self.page.page - 1) * PER_PAGE
        return self.results[start:start + PER_PAGE]

    # -- what an action does
    def step(self, action: str) -> tuple[str, float | int, bool]:
        """Do one action; a no-op (unknown, malformed or not clickable here) returns int 0
        and leaves the page as it was, as WebShop does."""
        name, arg = parse_action(action)
        clickables = self.clickables()
        done = False
        reward: float | int = 0.0
        if name == "search" and arg:
            self.results = [asin for asin, _ in self.engine.search(arg)]
            self.page = Page("results", query=arg)
        elif name == "click" and arg in clickables and arg != "search":
            done, reward = self._click(arg, clickables[arg])
        else:
            reward = 0
        return self.observation, reward, done

    def _click(self, target: str, kind: str) -> tuple[bool, float]:
        p = self.page
        if target == "back to search":
            self.page = Page("start")
        elif target == "< prev":
            self.page = {"results": Page("results", p.query, p.page - 1),
                         "item": Page("results", p.query, p.page),
                         "sub": Page("item", p.query, p.page, p.asin, p.options)}[p.kind]
        elif target == "next >":
            self.page = Page("results", p.query, p.page + 1)
        elif kind == "product":
            self.page = Page("item", p.query, p.page, target.upper())
        elif target in SUB_PAGES:
            self.page = Page("sub", p.query, p.page, p.asin, p.options, SUB_PAGES[target])
        elif target == "buy now":
            product = self.catalog.products[p.asin]
            price = self.catalog.prices[p.asin]
            total, info = purchase_reward(product, self.goal, price, p.options)
            self.purchase = Purchase(p.asin, dict(p.options), price, total, info)
            self.page = Page("done", asin=p.asin, options=dict(p.options))
            return True, total
        else:  # an option value: the option it belongs to takes it
            self.page.options = {**p.options, kind: target}
        return False, 0.0
