"""WebShop's own data files under `$WEBSHOP_DATA`, loaded as WebShop's engine loads them.

Products come from `items_shuffle*.json`, their attributes and synthetic instructions from
`items_ins_v2*.json`, and people's instructions (the `human` goals of WebShop's benchmark)
from `items_human_ins*.json`; prices of products with a price range and the price bounds of
goals are drawn from Python's `random` seeded with 0, and the goals are shuffled with seed
233, in the engine's order, so goal index i (session `fixed_i`) is the real WebShop's goal i.
"""

from __future__ import annotations

import itertools
import json
import os
import random
import re
from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from hsl_tools.envs.base import EnvError

PRICE_RANGE = [10.0 * i for i in range(1, 100)]
NO_PRICE_BOUND = 1000000
GOAL_KINDS = ("synthetic", "human")


class DataMissing(EnvError):
    """The WebShop data files are not where `$WEBSHOP_DATA` says."""


@dataclass
class Product:
    """One product as the site shows and the reward reads it."""

    asin: str
    title: str  # WebShop's `name`, shown as the Title
    description: str
    bullet_points: list[str]
    category: str
    query: str
    product_category: str
    pricing: list[float]
    price_tag: str  # "$12.5" or "$3.0 to $9.99", as the pages print it
    options: dict[str, list[str]]  # option name -> values (lowercased, "/" shown as " | ")
    attributes: list[str]
    instruction: str | None = None
    instruction_attributes: list[str] | None = None
    human_instructions: list[dict[str, Any]] = field(default_factory=list)

    def document(self) -> str:
        """The text WebShop's search index holds for this product."""
        option_text = ", and ".join(f"{name}: {', '.join(values)}"
                                    for name, values in self.options.items())
        return " ".join([self.title, self.description, self.bullet_points[0],
                         option_text]).lower()


@dataclass
class Goal:
    """One synthetic WebShop goal: what to buy and the bounds the reward checks."""

    asin: str
    category: str
    query: str
    name: str
    product_category: str
    instruction_text: str
    attributes: list[str]
    price_upper: float
    goal_options: dict[str, str] | list[str]  # synthetic: name -> value; human: values
    weight: float = 0.0

    def option_values(self) -> list[str]:
        options = self.goal_options
        return list(options.values()) if isinstance(options, dict) else list(options)


@dataclass
class Catalog:
    """Products by asin (in file order), the prices the reward uses, and the goals."""

    products: dict[str, Product]
    prices: dict[str, float]
    goals: list[Goal]
    folder: Path = field(default_factory=Path)


def data_folder() -> Path:
    """`$WEBSHOP_DATA`, or a one-line error saying how to get the files."""
    value = os.environ.get("WEBSHOP_DATA")
    if not value:
        raise DataMissing("WEBSHOP_DATA is not set: download WebShop's data (its setup.sh, "
                          "or the 1000-product subset) and export WEBSHOP_DATA=<that folder>")
    folder = Path(value).expanduser()
    if not folder.is_dir():
        raise DataMissing(f"WEBSHOP_DATA={value} is not a folder")
    return folder


def _one_file(folder: Path, full: str, pattern: str) -> Path:
    """The full data file if present, else the only subset file matching `pattern`."""
    if (folder / full).is_file():
        return folder / full
    found = sorted(folder.glob(pattern))
    if len(found) != 1:
        what = "none" if not found else ", ".join(p.name for p in found)
        raise DataMissing(f"{folder}: want {full} or one {pattern} (found {what})")
    return found[0]


def _read_json(path: Path) -> Any:
    try:
        with path.open(encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError) as e:
        raise DataMissing(f"{path}: {e}") from None


def _pricing(text: str | None) -> tuple[list[float], str]:
    if not text:
        return [100.0], "$100.0"
    pricing = [float(Decimal(re.sub(r"[^\d.]", "", p))) for p in text.split("$")[1:]]
    if len(pricing) == 1:
        return pricing, f"${pricing[0]}"
    return pricing[:2], f"${pricing[0]} to ${pricing[1]}"


def _product(raw: dict[str, Any], attributes: dict[str, Any]) -> Product:
    options: dict[str, list[str]] = {}
    for name, contents in (raw.get("customization_options") or {}).items():
        if contents is None:
            continue
        options[name.lower()] = [c["value"].strip().replace("/", " | ").lower()
                                 for c in contents]
    small = raw.get("small_description")
    pricing, tag = _pricing(raw.get("pricing"))
    info = attributes.get(raw["asin"], {})
    return Product(
        asin=raw["asin"], title=raw["name"], description=raw["full_description"],
        bullet_points=small if isinstance(small, list) else [small],
        category=raw["category"], query=raw["query"].lower().strip(),
        product_category=raw["product_category"], pricing=pricing, price_tag=tag,
        options=options,
        attributes=info["attributes"] if "attributes" in info else ["DUMMY_ATTR"],
        instruction=info.get("instruction"),
        instruction_attributes=info.get("instruction_attributes"))


def _price_bound(price: float, rng: random.Random) -> tuple[float, str]:
    """A price bound drawn above the price (WebShop's draw), and how the instruction says it."""
    price_range = [x for x in PRICE_RANGE if x > price][:4]
    if len(price_range) < 2:
        return NO_PRICE_BOUND, ""
    _, upper = sorted(rng.sample(price_range, 2))
    return upper, f", and price lower than {upper:.2f} dollars"


def _human_goals(products: list[Product], prices: dict[str, float], rng: random.Random
                 ) -> list[Goal]:
    """WebShop's human goals: every instruction people wrote for a product (those naming no
    attribute left out), its options as a list of values, weight 1."""
    goals = []
    for p in products:
        for written in p.human_instructions:
            attributes = written.get("instruction_attributes") or []
            if not attributes:
                continue
            upper, price_text = _price_bound(prices[p.asin], rng)
            goals.append(Goal(p.asin, p.category, p.query, p.title, p.product_category,
                              written["instruction"].strip(".") + price_text, attributes,
                              upper, list(written.get("instruction_options") or []), 1.0))
    return goals


def _goals(products: list[Product], prices: dict[str, float], rng: random.Random) -> list[Goal]:
    """WebShop's synthetic goals: one per option combination of every product with an
    instruction, a price bound drawn above its price, weighted by attribute rarity."""
    goals: list[Goal] = []
    counts: dict[str, int] = defaultdict(int)
    for p in products:
        if p.instruction is None:
            continue
        attributes = p.instruction_attributes or []
        upper, price_text = _price_bound(prices[p.asin], rng)
        names = sorted(p.options)
        for combination in itertools.product(*(p.options[n] for n in names)):
            chosen = dict(zip(names, combination, strict=True))
            option_text = ", and ".join(f"{k}: {v}" for k, v in chosen.items())
            option_text = " with " + option_text if option_text else ""
            goals.append(Goal(p.asin, p.category, p.query, p.title, p.product_category,
                              f"{p.instruction.strip('.')}{option_text}{price_text}",
                              attributes, upper, chosen))
            for a in attributes:
                counts[a] += 1
    for g in goals:
        g.weight = sum(1.0 / counts[a] for a in g.attributes) / len(g.attributes)
    return goals


@cache
def load_catalog(folder: Path, goal_kind: str = "synthetic") -> Catalog:
    """Products, prices and goals (`synthetic` or `human`) from a WebShop data folder,
    exactly as the engine builds them (same draws from the same seeds), so goal indices are
    WebShop's."""
    if goal_kind not in GOAL_KINDS:
        raise DataMissing(f"unknown WebShop goals {goal_kind!r} (valid: {', '.join(GOAL_KINDS)})")
    items = _read_json(_one_file(folder, "items_shuffle.json", "items_shuffle*.json"))
    attributes = _read_json(_one_file(folder, "items_ins_v2.json", "items_ins_v2*.json"))
    human = _read_json(_one_file(folder, "items_human_ins.json", "items_human_ins*.json")) \
        if goal_kind == "human" else {}
    products: dict[str, Product] = {}
    for raw in items:
        asin = raw.get("asin")
        if asin == "nan" or not asin or len(asin) > 10 or asin in products:
            continue
        products[asin] = _product(raw, attributes)
        products[asin].human_instructions = human.get(asin, [])
    rng = random.Random(0)
    prices = {a: p.pricing[0] if len(p.pricing) == 1 else rng.uniform(*p.pricing[:2])
              for a, p in products.items()}
    make = _human_goals if goal_kind == "human" else _goals
    goals = make(list(products.values()), prices, rng)
    random.Random(233).shuffle(goals)
    return Catalog(products, prices, goals, folder)
