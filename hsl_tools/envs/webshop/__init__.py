"""WebShop in-process, from its own data files (`$WEBSHOP_DATA`): the same pages, search
ranking and reward as the real site, without Java (the `webshop` extra for spaCy's nouns).

Task ids are WebShop's session names, `fixed_<i>` for goal index i; splits as WebShop's own
code splits the goals: `test` 0-499, `dev` 500-1499, `train` 1500 on. An episode ends at
`buy now` or after T = 10 steps; its reward is the purchase's reward (0 without one) and
success is reward 1. The score of a split is 100 x its mean reward.
"""

from __future__ import annotations

import os
from functools import cached_property
from typing import Any

from hsl_tools.envs.base import EnvError, StepResult, check_split
from hsl_tools.envs.webshop import rules, site
from hsl_tools.envs.webshop.client import RemoteSession
from hsl_tools.envs.webshop.data import Catalog, DataMissing, Goal, data_folder, load_catalog
from hsl_tools.envs.webshop.goals import PurchaseJudge
from hsl_tools.envs.webshop.reward import purchase_reward, require_nouns
from hsl_tools.envs.webshop.search import SearchEngine
from hsl_tools.envs.webshop.site import PER_PAGE, Purchase, Session, instruction_of
from hsl_tools.records import Trajectory

SPLITS = {"test": (0, 500), "dev": (500, 1500), "train": (1500, None)}

SYSTEM = """You are shopping on a web store to buy what the instruction asks for. Each turn, \
reply with one action; the next message shows the page you reach.
Actions:
search[KEYWORDS]  (on a page with a search bar)
click[TEXT]  (TEXT is a button, product id or option shown on the page, e.g. click[buy now], \
click[< prev], click[next >], click[b09qcp4579], click[large])
Pages show their texts separated by [SEP]. Choose the product and its options, then \
click[buy now]: the episode ends when you buy."""


def task_id(index: int) -> str:
    return f"fixed_{index}"


def goal_index(task: str) -> int:
    """The goal index of a session name `fixed_<i>` (a bare integer is taken too)."""
    number = task.removeprefix("fixed_")
    if not number.isdigit():
        raise ValueError(f"not a WebShop task id: {task!r} (want fixed_<goal index>)")
    return int(number)


class WebShopEpisode:
    """One shopper session with its goal, in-process or on a server; the purchase goes to
    `meta["purchase"]`."""

    def __init__(self, env: WebShop, task: str, local: bool = False) -> None:
        index = goal_index(task)
        self.env, self.task_id, self.max_steps = env, task, env.max_steps
        self.goal = env.goal(index)
        self.session: Session | RemoteSession = (
            Session(env.catalog, env.engine, self.goal) if env.server is None or local else
            RemoteSession(env.server, index, env.timeout))
        self.observation = self.session.observation
        self.instruction = instruction_of(self.observation)
        self.meta: dict[str, Any] = {} if self.goal is None else {
            "goal_type": self.goal.category, "asin": self.goal.asin}
        self.steps = 0
        self.done = self.won = False
        self.reward = 0.0

    def step(self, action: str) -> StepResult:
        if self.done:
            raise RuntimeError(f"episode {self.task_id} is over")
        observation, reward, bought = self.session.step(action)
        self.steps += 1
        if bought:
            self.reward = float(reward)
            purchase = self.session.purchase
            if purchase is not None:
                price = purchase.price if purchase.price is not None else \
                    self.env.price(purchase.asin)
                self.meta["purchase"] = {"asin": purchase.asin, "options": purchase.options,
                                         "price": price, "reward": self.reward}
        self.won = bought and self.reward == 1.0
        self.done = bought or self.steps >= self.max_steps
        if self.done and isinstance(self.session, RemoteSession):
            self.session.close()
        return StepResult(observation, self.done, self.won, {"reward": reward})

    def admissible_actions(self) -> list[str]:
        """Clicks on what the page shows; on the search page, a search for the instruction."""
        available = self.session.available_actions()
        actions = [f"click[{c}]" for c in available["clickables"] if c != "search"]
        if available["has_search_bar"]:
            actions.append(f"search[{self.instruction.lower()}]")
        return actions

    def expert_action(self, variant: str | None = None) -> str:
        """The expert knows the goal product: it searches the instruction (or, where that
        does not list the product, its title), pages to it, opens it, clicks each goal
        option and buys."""
        if variant is not None:
            raise ValueError(f"WebShop has one expert (no variant {variant!r})")
        if not isinstance(self.session, Session) or self.goal is None:
            raise EnvError("the WebShop expert plays in-process (it reads the page state): "
                           "collect expert demos without WEBSHOP_SERVER")
        page, goal = self.session.page, self.goal
        if page.kind in ("start", "done"):
            return f"search[{self.env.expert_query(goal.asin, self.instruction)}]"
        if page.kind == "results":
            listed = self.session.results
            if goal.asin not in listed:
                return "click[back to search]"
            target_page = listed.index(goal.asin) // PER_PAGE + 1
            if target_page == page.page:
                return f"click[{goal.asin.lower()}]"
            return "click[next >]" if target_page > page.page else "click[< prev]"
        if page.kind == "sub" or page.asin != goal.asin:
            return "click[< prev]"
        for value in goal.option_values():
            if value not in page.options.values() and value in self.session.clickables():
                return f"click[{value}]"
        return "click[buy now]"


class WebShop:
    """The WebShop environment (data loaded on first use, then shared by episodes). With a
    `server` (or `$WEBSHOP_SERVER`), episodes play on that AgentGym-protocol server; the data,
    where present, still gives goals to the expert and prices to purchases."""

    name = "webshop"
    splits = tuple(SPLITS)
    train_split = "train"
    eval_splits: tuple[str, ...] = ("test",)
    prompt_family = "webshop"
    graded = True  # partial credit: a split's score is 100 x its mean reward
    reply_tokens = 96  # a search can be as long as the instruction
    system = SYSTEM
    no_effect = None  # an action that does nothing leaves the page as it was: no message
    max_goals = 1  # the purchase, if any
    goal_chars = 400  # an instruction naming a product title, its options and a price bound
    live_episodes = None  # an episode is a page state in-process (or a server's session)
    rule_goals = staticmethod(rules.rule_goals)
    rule_relevance = staticmethod(rules.rule_relevance)

    def close(self) -> None:
        """Nothing held between episodes (a remote episode closes its own session)."""

    # -- the goal space: shopping instructions, free text (what one purchase satisfies)
    @staticmethod
    def canonical_goal(text: str) -> str | None:
        return " ".join(text.split()) or None

    @staticmethod
    def goal_type(text: str) -> str:
        return "purchase"

    @staticmethod
    def goal_forms() -> str:
        return "a shopping instruction: the product, its attributes and options, a price bound"

    @staticmethod
    def goal_choices(trajectory: Trajectory) -> None:
        """Instructions are free text: a relabeler writes its own (the reward judges it)."""
        return None

    @staticmethod
    def ungrounded(goal: str, trajectory: Trajectory) -> str | None:
        """Any instruction could describe a purchase: the reward checks it, not the text."""
        return None

    @staticmethod
    def task_message(instruction: str, initial_observation: str) -> str:
        """The start page; it shows the instruction itself."""
        return initial_observation

    @staticmethod
    def brief(observation: str) -> str:
        """A page for a relabeler's prompt: without the instruction and its search button
        (every page repeats them), results' titles and description or features cut to ten
        words; a product page whole (its title, options and price say what was bought)."""
        return site.brief(observation)

    @staticmethod
    def restated(observation: str, instruction: str, goal: str) -> str:
        """A page as it would read for another goal: every page but the last shows it."""
        return observation.replace(f"Instruction: [SEP] {instruction} [SEP]",
                                   f"Instruction: [SEP] {goal} [SEP]", 1)

    @staticmethod
    def task_of(message: str) -> tuple[str, str] | None:
        """(instruction, start page) from a dump's user turn (ETO's and AgentGym's show the
        page as the site renders it); None if it shows no instruction."""
        try:
            return instruction_of(message), message
        except ValueError:
            return None

    @staticmethod
    def dump_task(instruction: str, initial_observation: str) -> str:
        return f"Observation:\n{initial_observation}"

    @staticmethod
    def imported_task(item: dict[str, Any], default_split: str) -> tuple[str, str]:
        """(split, task id) of a dump's item: its id names the goal (ETO: an index or
        `fixed_<i>`; AgentGym: `webshop_<i>`); the split is the one that holds that goal."""
        ident = str(item.get("id", item.get("item_id", "")))
        number = ident.rsplit("_", 1)[-1]
        if not number.isdigit():
            return default_split, ident
        index = int(number)
        split = next(name for name, (start, end) in SPLITS.items()
                     if start <= index and (end is None or index < end))
        return split, task_id(index)

    def __init__(self, max_steps: int = 10, server: str | None = None,
                 timeout: float = 60.0, goals: str | None = None) -> None:
        self.max_steps = max_steps
        self.server = server or os.environ.get("WEBSHOP_SERVER") or None
        self.timeout = timeout
        # synthetic (WebShop's generated instructions) or human (people's: its benchmark)
        self.goal_kind = goals or os.environ.get("WEBSHOP_GOALS") or "synthetic"

    def has_data(self) -> bool:
        try:
            self.catalog  # noqa: B018 - loads it once
        except DataMissing:
            if self.server is None:
                raise
            return False
        return True

    def goal(self, index: int) -> Goal | None:
        """Goal `index` from the data (None when playing on a server without the data)."""
        if not self.has_data():
            return None
        if index >= len(self.catalog.goals):
            raise ValueError(f"task fixed_{index}: the data has {len(self.catalog.goals)} "
                             "goals")
        return self.catalog.goals[index]

    def price(self, asin: str) -> float | None:
        return self.catalog.prices.get(asin) if self.has_data() else None

    def goal_sentences(self) -> list[str]:
        """Every product title (text a tokenizer should know; instructions come with the
        episodes)."""
        return [p.title for p in self.catalog.products.values()]

    @cached_property
    def catalog(self) -> Catalog:
        catalog = load_catalog(data_folder(), self.goal_kind)
        require_nouns()  # with the data here, rewards are computed here
        return catalog

    @cached_property
    def engine(self) -> SearchEngine:
        products = self.catalog.products
        return SearchEngine(list(products), (p.document() for p in products.values()))

    def task_ids(self, split: str, n: int | None = None) -> list[str]:
        check_split(self, split)
        start, end = SPLITS[split]
        if self.has_data():
            end = len(self.catalog.goals) if end is None else min(end, len(self.catalog.goals))
        elif end is None:
            if n is None:
                raise EnvError("how many train goals the server has is unknown without "
                               "WEBSHOP_DATA: give -n")
            end = start + n
        size = max(end - start, 0)
        if n is not None and n > size:
            raise ValueError(f"split {split!r} has {size} goals, asked for {n}")
        return [task_id(i) for i in range(start, start + (size if n is None else n))]

    def reset(self, task_id: str) -> WebShopEpisode:
        return WebShopEpisode(self, task_id)

    def expert_query(self, asin: str, instruction: str) -> str:
        """The instruction if its search lists the product within the pages the expert
        turns, else the product's title."""
        query = instruction.lower()
        if asin in [a for a, _ in self.engine.search(query)]:
            return query
        return self.catalog.products[asin].title.lower()

    def serve(self, host: str = "127.0.0.1", port: int = 36001, seed: int = 0) -> None:
        """This WebShop on AgentGym's env-server protocol, until interrupted."""
        from hsl_tools.envs.webshop.server import serve

        serve(self, host, port, seed)

    def replay(self, trajectory: Trajectory) -> WebShopEpisode:
        """Play a trajectory's actions again in its own task, in-process, to its last step
        (ValueError at the first page that differs from the recorded one)."""
        episode = WebShopEpisode(self, trajectory.task_id, local=True)
        episode.max_steps = max(len(trajectory.steps), 1)
        if episode.observation != trajectory.initial_observation:
            raise ValueError(f"{trajectory.id}: the start page differs from the recorded one")
        for i, step in enumerate(trajectory.steps, 1):
            result = episode.step(step.action)
            if result.observation != step.observation:
                raise ValueError(f"{trajectory.id}: step {i} ({step.action}) shows another page "
                                 "than the recorded one")
            if result.done:
                break
        return episode

    def purchase(self, trajectory: Trajectory) -> Purchase | None:
        """What a trajectory bought (product, options, price) and its reward for its own goal,
        by replaying it; None when it bought nothing."""
        return self.replay(trajectory).session.purchase

    def judge(self, trajectory: Trajectory) -> PurchaseJudge:
        """The purchase, replayed: a named goal holds when the purchase scores 1.0 for it."""
        episode = self.replay(trajectory)
        purchase = episode.session.purchase
        return PurchaseJudge(self, purchase, episode.steps if purchase is not None else 0)

    def score(self, purchase: Purchase, goal: Goal) -> tuple[float, dict[str, Any]]:
        """The reward a purchase earns for any goal, and its parts, as WebShop computes them."""
        price = purchase.price if purchase.price is not None else \
            self.catalog.prices[purchase.asin]
        product = self.catalog.products[purchase.asin]
        return purchase_reward(product, goal, price, purchase.options)

    @staticmethod
    def outcome(trajectory: Trajectory) -> str:
        """won; bought with partial credit; bought what scores 0; bought nothing."""
        if trajectory.success:
            return "won"
        if rules.bought(trajectory.steps) is None:
            return "bought nothing"
        return "bought, partly right" if trajectory.reward > 0 else "bought, scoring 0"
