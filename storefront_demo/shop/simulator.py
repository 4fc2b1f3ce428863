"""A seeded, simulated gift shop: catalog, visitors with known tastes, and their click-stream.

Pure pandas/numpy (no Django), so tests and benchmarks can use it anywhere::

    shop = simulate_shop(n_products=400, n_visitors=600, days=60, seed=7)
    shop.catalog   # sku, name, description, category, brand, price
    shop.events    # visitor, user, item, event, timestamp, value, device, os, browser, country, is_bot
    shop.truth     # visitor, primary, secondary, preferred, is_bot, user, + one taste column per category

How the traffic is made:

* every category has a base price and a popularity curve (a few best-sellers, a long tail);
* every human visitor has a latent taste over the 8 categories, concentrated on two preferred categories
  (``truth``); most of their views, and even more of their carts and purchases, fall into those;
* visitors come back in sessions; sessions start more often in the evening and at lunch time, and more on
  weekends; inside a session views follow each other by seconds to minutes, some viewed items go to the cart
  (more often in preferred categories), and some carts are bought at the end of the session;
* visitors have a device (desktop/mobile/tablet) with a matching OS and browser, and a country;
* about 3% of visitors are bots: headless browsers that view many random items a second or two apart, at any
  hour, and never buy;
* about a third of the human visitors sign up at some session; from then on their events carry ``user``.

The same arguments always give the same frames (``end`` defaults to a fixed date so the output does not depend
on the clock; the demo passes today's date).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

CATEGORIES = ["candles", "mugs", "cushions", "lanterns", "cards", "bags", "toys", "kitchen"]
CATEGORY_NAMES = {
    "candles": "Candles", "mugs": "Mugs", "cushions": "Cushions", "lanterns": "Lanterns",
    "cards": "Cards", "bags": "Bags", "toys": "Toys", "kitchen": "Kitchen",
}
_NOUNS = {
    "candles": ["Scented Candle", "Pillar Candle", "Tea Light Set", "Candle Jar", "Taper Candles", "Soy Candle"],
    "mugs": ["Mug", "Espresso Cup", "Tea Cup and Saucer", "Travel Mug", "Latte Mug", "Enamel Mug"],
    "cushions": ["Cushion", "Cushion Cover", "Floor Cushion", "Bolster Cushion", "Seat Pad", "Knitted Cushion"],
    "lanterns": ["Lantern", "Hanging Lantern", "Storm Lantern", "Paper Lantern", "Moroccan Lantern", "Fairy Lights"],
    "cards": ["Greeting Card", "Birthday Card", "Thank You Cards", "Gift Tags", "Wrapping Paper", "Postcard Set"],
    "bags": ["Tote Bag", "Shopper Bag", "Lunch Bag", "Jumbo Bag", "Wash Bag", "Gift Bag"],
    "toys": ["Wooden Train", "Rag Doll", "Jigsaw Puzzle", "Spinning Top", "Soft Bunny", "Skittles Set"],
    "kitchen": ["Tea Towel", "Cake Tin", "Apron", "Storage Jar", "Baking Set", "Egg Cup Set"],
}
_ADJECTIVES = [
    "Vintage", "Rose", "Nordic", "Woodland", "Polka Dot", "Botanical", "Retro", "Lavender", "Sage", "Honeycomb",
    "Moonlight", "Cottage", "Strawberry", "Starry", "Linen", "Copper", "Seaside", "Meadow", "Scandi", "Paisley",
]
_MATERIALS = {
    "candles": "soy wax", "mugs": "stoneware", "cushions": "cotton", "lanterns": "metal and glass",
    "cards": "recycled card", "bags": "canvas", "toys": "beech wood", "kitchen": "enamel",
}
_BASE_PRICE = {
    "candles": 8.0, "mugs": 9.0, "cushions": 22.0, "lanterns": 18.0, "cards": 3.5, "bags": 12.0, "toys": 15.0,
    "kitchen": 11.0,
}
BRANDS = [
    "Hearth & Home", "Little Lark", "Paper Moon", "Willow Lane", "Copper Fox", "Bramble", "Maple & Moss",
    "Tiny Harbour", "Nook", "Juniper", "Kettle & Co", "Bluebell",
]
#: ISO 3166 codes, as live tracking records them (the CDN's country header, ``COUNTRY_HEADER``)
_COUNTRIES = ["GB", "DE", "FR", "NL", "IE", "ES", "US", "NO"]
_COUNTRY_P = [0.55, 0.1, 0.09, 0.06, 0.06, 0.05, 0.06, 0.03]
_DEVICES = ["desktop", "mobile", "tablet"]
_DEVICE_P = [0.45, 0.45, 0.10]
_OS = {"desktop": (["Windows", "macOS", "Linux"], [0.62, 0.32, 0.06]),
       "mobile": (["iOS", "Android"], [0.5, 0.5]),
       "tablet": (["iPadOS", "Android"], [0.7, 0.3])}
_BROWSER = {"Windows": (["Chrome", "Edge", "Firefox"], [0.6, 0.3, 0.1]),
            "macOS": (["Safari", "Chrome", "Firefox"], [0.55, 0.4, 0.05]),
            "Linux": (["Firefox", "Chrome"], [0.55, 0.45]),
            "iOS": (["Mobile Safari", "Chrome Mobile"], [0.85, 0.15]),
            "iPadOS": (["Mobile Safari"], [1.0]),
            "Android": (["Chrome Mobile", "Samsung Internet"], [0.8, 0.2])}
# Relative chance that a session starts in each hour (UTC) and on each weekday (Monday first).
_HOUR_W = np.array([1, 0.6, 0.4, 0.3, 0.3, 0.5, 1, 2, 3, 3.5, 4, 4.5, 6, 6, 4.5, 4, 4, 4.5, 5.5, 7, 8, 7, 4.5, 2])
_WEEKDAY_W = np.array([1.0, 0.95, 0.95, 1.0, 1.05, 1.35, 1.4])
DEFAULT_END = pd.Timestamp("2024-06-30", tz="UTC")

EVENT_COLUMNS = ["visitor", "user", "item", "event", "timestamp", "value", "device", "os", "browser", "country",
                 "is_bot"]


@dataclass
class SimulatedShop:
    """What :func:`simulate_shop` returns."""

    catalog: pd.DataFrame  # sku, name, description, category, brand, price
    events: pd.DataFrame  # EVENT_COLUMNS, sorted by timestamp
    truth: pd.DataFrame  # one row per visitor: primary, secondary, preferred, is_bot, user, taste_<category>
    categories: list[str] = field(default_factory=lambda: list(CATEGORIES))

    def preferred(self, visitor: str) -> tuple[str, ...]:
        """The visitor's preferred categories, most preferred first (empty for bots)."""
        return self.truth.loc[self.truth["visitor"] == visitor, "preferred"].iloc[0]


def _catalog(rng: np.random.Generator, n_products: int) -> pd.DataFrame:
    cats = np.array(CATEGORIES)[np.arange(n_products) % len(CATEGORIES)]
    rng.shuffle(cats)
    rows = []
    used: set[str] = set()
    for i, cat in enumerate(cats):
        for _ in range(20):
            adjective = _ADJECTIVES[rng.integers(len(_ADJECTIVES))]
            noun = _NOUNS[cat][rng.integers(len(_NOUNS[cat]))]
            name = f"{adjective} {noun}"
            if name not in used:
                break
            name = f"{name} No. {i + 1}"
        used.add(name)
        brand = BRANDS[rng.integers(len(BRANDS))] if rng.random() < 0.9 else None
        price = round(float(_BASE_PRICE[cat] * rng.lognormal(0.0, 0.35)), 1) - 0.01
        rows.append({
            "sku": f"GS-{i + 1:05d}",
            "name": name,
            "description": f"{name} in {_MATERIALS[cat]}. A little {adjective.lower()} something for the home, "
            f"gift-wrapped on request.",
            "category": str(cat),
            "brand": brand,
            "price": max(price, 0.99),
        })
    return pd.DataFrame(rows, columns=["sku", "name", "description", "category", "brand", "price"])


def _choice(rng: np.random.Generator, options: list[str], p: list[float]) -> str:
    return options[rng.choice(len(options), p=p)]


def simulate_shop(
    n_products: int = 400,
    n_visitors: int = 600,
    days: int = 60,
    seed: int = 7,
    end: pd.Timestamp | str | None = None,
) -> SimulatedShop:
    """Simulate ``days`` of traffic of ``n_visitors`` over ``n_products``, ending at ``end`` (UTC, exclusive).

    Deterministic for given arguments. ``events.timestamp`` is tz-aware UTC; ``events.user`` is None for visitors
    who have not signed up (yet) and a 0-based integer per signed-up visitor otherwise; ``value`` is the price of
    the item for carts and the line total for purchases (NaN for views).
    """
    if n_products < len(CATEGORIES) or n_visitors < 1 or days < 1:
        raise ValueError(f"Need n_products >= {len(CATEGORIES)}, n_visitors >= 1 and days >= 1.")
    rng = np.random.default_rng(seed)
    end_ts = DEFAULT_END if end is None else pd.Timestamp(end)
    end_ts = end_ts.tz_localize("UTC") if end_ts.tzinfo is None else end_ts.tz_convert("UTC")
    start_ts = end_ts - pd.Timedelta(days=days)

    catalog = _catalog(rng, n_products)
    skus = catalog["sku"].to_numpy()
    prices = catalog["price"].to_numpy()
    by_cat: dict[str, np.ndarray] = {}
    pop_by_cat: dict[str, np.ndarray] = {}
    for cat in CATEGORIES:
        idx = np.flatnonzero(catalog["category"].to_numpy() == cat)
        by_cat[cat] = idx
        weights = 1.0 / np.arange(1, len(idx) + 1) ** 0.8  # Zipf-like: a few best-sellers per category
        rng.shuffle(weights)
        pop_by_cat[cat] = weights / weights.sum()

    # Day-level weights: weekday pattern over the window.
    day_index = start_ts + pd.to_timedelta(np.arange(days), unit="D")
    day_w = _WEEKDAY_W[day_index.day_of_week]
    day_starts = start_ts.value / 1e9 + np.arange(days) * 86400.0  # seconds since the epoch
    end_s = end_ts.value / 1e9
    day_p = day_w / day_w.sum()
    hour_p = _HOUR_W / _HOUR_W.sum()

    n_bots = max(1, round(n_visitors * 0.03)) if n_visitors >= 20 else 0
    bot_ids = set(rng.choice(n_visitors, size=n_bots, replace=False).tolist()) if n_bots else set()

    cols: dict[str, list] = {c: [] for c in EVENT_COLUMNS}
    truth_rows = []
    next_user = 0
    n_cat = len(CATEGORIES)
    for v in range(n_visitors):
        visitor = f"sim-{seed}-{v:06d}"
        is_bot = v in bot_ids
        if is_bot:
            device, os_name = "desktop", "Linux"
            browser = _choice(rng, ["HeadlessChrome", "python-requests", "Scrapy"], [0.5, 0.3, 0.2])
            country = _choice(rng, ["US", "NL", "DE"], [0.6, 0.2, 0.2])
            taste = np.full(n_cat, 1.0 / n_cat)
            order = np.array([], dtype=int)
        else:
            device = _choice(rng, _DEVICES, _DEVICE_P)
            os_name = _choice(rng, *_OS[device])
            browser = _choice(rng, *_BROWSER[os_name])
            country = _choice(rng, _COUNTRIES, _COUNTRY_P)
            primary, secondary = rng.choice(n_cat, size=2, replace=False)
            taste = rng.dirichlet(np.full(n_cat, 0.5)) * 0.25
            taste[primary] += 0.5
            taste[secondary] += 0.25
            taste /= taste.sum()
            order = np.array([primary, secondary])
        n_sessions = int(rng.integers(1, 4)) if is_bot else 1 + int(rng.geometric(0.35))
        signs_up_at = int(rng.integers(n_sessions)) if (not is_bot and rng.random() < 0.35) else None
        user = None
        if signs_up_at is not None:
            user = next_user
            next_user += 1
        preferred = tuple(CATEGORIES[i] for i in order)
        truth_rows.append({
            "visitor": visitor, "primary": preferred[0] if preferred else None,
            "secondary": preferred[1] if preferred else None, "preferred": preferred, "is_bot": is_bot,
            "user": user, **{f"taste_{c}": float(taste[i]) for i, c in enumerate(CATEGORIES)},
        })

        session_days = np.sort(rng.choice(days, size=n_sessions, p=day_p))
        for s, day in enumerate(session_days):
            hour = int(rng.integers(24)) if is_bot else int(rng.choice(24, p=hour_p))
            t = day_starts[day] + hour * 3600.0 + float(rng.integers(3600))
            session_user = user if (user is not None and s >= signs_up_at) else None
            if is_bot:
                n_views = int(rng.integers(30, 90))
                items = rng.integers(len(skus), size=n_views)
                gaps = rng.uniform(0.5, 3.0, size=n_views)
            else:
                n_views = 1 + int(rng.geometric(0.2))
                cats = rng.choice(n_cat, size=n_views, p=taste)
                items = np.array([by_cat[CATEGORIES[c]][rng.choice(len(by_cat[CATEGORIES[c]]),
                                                                    p=pop_by_cat[CATEGORIES[c]])] for c in cats])
                gaps = rng.exponential(45.0, size=n_views) + 3.0
            times = t + np.cumsum(gaps)
            cart: list[tuple[int, float]] = []
            for item, ts in zip(items, times, strict=True):
                if ts >= end_s:
                    break
                _append(cols, visitor, session_user, skus[item], "view", ts, np.nan, device, os_name, browser,
                        country, is_bot)
                if is_bot:
                    continue
                liked = CATEGORIES.index(catalog["category"].iat[item]) in order
                if rng.random() < (0.16 if liked else 0.04):
                    ts_cart = ts + float(rng.uniform(5, 40))
                    if ts_cart < end_s:
                        _append(cols, visitor, session_user, skus[item], "add_to_cart", ts_cart, prices[item],
                                device, os_name, browser, country, is_bot)
                        cart.append((item, ts_cart))
            if cart and rng.random() < 0.55:
                ts_buy = max(ts for _, ts in cart) + float(rng.uniform(60, 300))
                if ts_buy < end_s:
                    for item, _ in cart:
                        quantity = 1 + int(rng.random() < 0.2)
                        _append(cols, visitor, session_user, skus[item], "purchase", ts_buy,
                                round(float(prices[item] * quantity), 2), device, os_name, browser, country, is_bot)

    events = pd.DataFrame(cols, columns=EVENT_COLUMNS)
    events["timestamp"] = pd.to_datetime(np.round(np.asarray(events["timestamp"], dtype=float) * 1000), unit="ms",
                                         utc=True)
    events["value"] = events["value"].astype(float)
    events["is_bot"] = events["is_bot"].astype(bool)
    events["user"] = events["user"].astype(object)
    events = events.sort_values(["timestamp", "visitor"], kind="stable").reset_index(drop=True)
    truth = pd.DataFrame(truth_rows)
    truth["user"] = truth["user"].astype(object)
    return SimulatedShop(catalog=catalog, events=events, truth=truth)


def _append(cols: dict[str, list], visitor, user, item, event, ts, value, device, os_name, browser, country,
            is_bot) -> None:
    cols["visitor"].append(visitor)
    cols["user"].append(user)
    cols["item"].append(item)
    cols["event"].append(event)
    cols["timestamp"].append(ts)
    cols["value"].append(value)
    cols["device"].append(device)
    cols["os"].append(os_name)
    cols["browser"].append(browser)
    cols["country"].append(country)
    cols["is_bot"].append(is_bot)


# == live traffic with a taste shift (the drift acceptance test and benchmarks/drift.py) ===========================
@dataclass
class Visit:
    """One simulated visit: who, their category taste at that moment, and the items they browse on their own."""

    index: int
    visitor: str
    taste: np.ndarray  # probability over the shop's categories
    shifted: bool
    browsed: list[str]  # SKUs viewed organically (from the category taste and each category's popularity)


class LiveTraffic:
    """Visitors of a :func:`simulate_shop` (or :func:`catalog_shop`) shop coming back, one visit at a time,
    optionally changing their tastes.

    ``shift_at`` (a fraction of ``n_visits``, or None): from that visit on every visitor's taste moves towards the
    categories ``shift_to`` (``shift_weight`` of it goes there, the rest keeps the old taste), as when a season or
    a fashion turns. A visitor clicks a shown item with probability ``click_liked`` when its category is one of
    their two preferred ones now, else ``click_other``. Pure numpy; deterministic for a seed.
    """

    def __init__(self, shop: SimulatedShop, n_visits: int, *, shift_at: float | None = None,
                 shift_to: tuple[str, ...] = ("lanterns", "toys"), shift_weight: float = 0.8,
                 click_liked: float = 0.4, click_other: float = 0.02, browse: int = 3, seed: int = 0,
                 visitors: list[str] | None = None):
        if shift_at is not None and not 0 < shift_at < 1:
            raise ValueError("shift_at is a fraction of the visits, between 0 and 1.")
        self.shop = shop
        self.n_visits = n_visits
        self.shift_visit = None if shift_at is None else int(round(shift_at * n_visits))
        self.categories = list(shop.categories)
        if not set(shift_to) <= set(self.categories) or not shift_to:
            raise ValueError(f"shift_to names categories among {self.categories}.")
        self.season = np.array([1.0 if c in shift_to else 0.0 for c in self.categories]) / len(shift_to)
        self.shift_weight = shift_weight
        self.click_liked, self.click_other, self.browse = click_liked, click_other, browse
        self.rng = np.random.default_rng(seed)
        humans = shop.truth[~shop.truth["is_bot"]]
        self.visitors = visitors if visitors is not None else humans["visitor"].tolist()
        tastes = humans.set_index("visitor")[[f"taste_{c}" for c in self.categories]]
        self.tastes = {v: tastes.loc[v].to_numpy(dtype=float) for v in self.visitors}
        self.category_of = dict(zip(shop.catalog["sku"], shop.catalog["category"], strict=True))
        self.by_cat = {c: shop.catalog.loc[shop.catalog["category"] == c, "sku"].to_numpy() for c in self.categories}

    def taste(self, visitor: str, shifted: bool) -> np.ndarray:
        base = self.tastes[visitor]
        return (1 - self.shift_weight) * base + self.shift_weight * self.season if shifted else base

    def liked(self, taste: np.ndarray) -> set[str]:
        """The two categories a taste prefers."""
        return {self.categories[i] for i in np.argsort(-taste)[:2]}

    def visit(self, index: int) -> Visit:
        visitor = self.visitors[int(self.rng.integers(len(self.visitors)))]
        shifted = self.shift_visit is not None and index >= self.shift_visit
        taste = self.taste(visitor, shifted)
        cats = self.rng.choice(len(self.categories), size=self.browse, p=taste)
        browsed = [str(self.rng.choice(self.by_cat[self.categories[c]])) for c in cats]
        return Visit(index, visitor, taste, shifted, browsed)

    def clicks(self, visit: Visit, shown_categories: list[str | None]) -> list[bool]:
        """Which of the shown items (by category) the visitor clicks."""
        liked = self.liked(visit.taste)
        return [bool(self.rng.random() < (self.click_liked if c in liked else self.click_other))
                for c in shown_categories]


def catalog_shop(catalog: pd.DataFrame, n_visitors: int, *, seed: int = 0, prefix: str = "live-") -> SimulatedShop:
    """Simulated visitors for any catalog (columns ``sku`` and ``category``): what :class:`LiveTraffic` needs to send
    traffic to a shop built from real data, whose categories are not the simulated shop's.

    Each visitor's taste is a Dirichlet draw over the catalog's categories (concentration 0.3: most of it on a few
    categories); ``events`` is empty (the visitors have no past here)."""
    catalog = catalog.loc[catalog["category"].notna(), ["sku", "category"]].astype(str)
    categories = sorted(catalog["category"].unique())
    if len(categories) < 2:
        raise ValueError("The catalog needs products in at least two categories.")
    rng = np.random.default_rng(seed)
    tastes = rng.dirichlet(np.full(len(categories), 0.3), size=n_visitors)
    truth = pd.DataFrame({"visitor": [f"{prefix}{i:05d}" for i in range(n_visitors)], "is_bot": False})
    for j, c in enumerate(categories):
        truth[f"taste_{c}"] = tastes[:, j]
    return SimulatedShop(catalog=catalog.reset_index(drop=True), events=pd.DataFrame(), truth=truth,
                         categories=categories)
