"""``manage.py demo_traffic``: simulated shoppers browsing the running demo over HTTP, so the learning loop has
traffic to measure: per-version click-through in the admin, A/B tests, updates between retrains, drift.

Each simulated visitor keeps its own cookies (the site's visitor cookie) and, per visit, does what a browser with
the tracker does: opens a few product pages of the categories it likes (the middleware records the views), asks
the recommendations API for a slot's list, reports the list's impressions and its clicks to ``events/`` with the
list's ``recommendation_id`` (as ``tracker.js`` does), and opens the clicked products. A visitor clicks a shown
item with probability 0.4 when its category is one of its two preferred ones, else 0.02
(``storefront_demo.shop.simulator.LiveTraffic``); ``--shift-after`` moves every visitor's taste to two other
categories, as a season would.

Without a Celery beat (the embedded demo runs tasks eagerly and has none), every ``--periodic-seconds`` this
command runs the periodic tasks the loop needs in its own process: ``aggregate_list_stats`` (what the admin's
*List statistics* and the dashboard read), ``update_models`` and ``detect_drift``. With a beat running
(``--no-periodic``), it only sends traffic.
"""

from __future__ import annotations

import http.cookies
import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any

from django.core.management.base import BaseCommand, CommandError, CommandParser

#: Browsers' User-Agents by device class (the site's bot filter drops automation clients), the simulator's name
#: after each; a shopper keeps one, like its country (sent as the CDN's country header, ``COUNTRY_HEADER``).
USER_AGENTS = {
    "desktop": "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 "
               "Safari/537.36 storefront-demo-traffic",
    "mobile": "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.4 Mobile/15E148 Safari/604.1 storefront-demo-traffic",
    "tablet": "Mozilla/5.0 (iPad; CPU OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
              "Version/17.4 Mobile/15E148 Safari/604.1 storefront-demo-traffic",
}
#: the simulated shop's shares (``storefront_demo.shop.simulator``), so its history and the live traffic agree
DEVICE_SHARES = {"desktop": 0.45, "mobile": 0.45, "tablet": 0.10}
COUNTRY_SHARES = {"GB": 0.55, "DE": 0.1, "FR": 0.09, "NL": 0.06, "IE": 0.06, "ES": 0.05, "US": 0.06, "NO": 0.03}
TIMEOUT = 10.0  # seconds per HTTP request


class Command(BaseCommand):
    help = ("Send simulated shoppers to the running demo over HTTP (views, recommendation lists, impressions, "
            "clicks) and run the learning loop's periodic tasks, so the admin shows per-version click-through.")

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--url", default="http://127.0.0.1:8000", help="the running demo (default: %(default)s)")
        parser.add_argument("--visits", type=int, default=0, help="visits to send; 0 (default): until Ctrl-C")
        parser.add_argument("--rate", type=float, default=60.0, help="visits per minute (default: %(default)s)")
        parser.add_argument("--visitors", type=int, default=200, help="simulated shoppers (default: %(default)s)")
        parser.add_argument("--slot", default="home", help="the slot whose list each visit is shown (default: home)")
        parser.add_argument("--shift-after", type=int, default=None,
                            help="from this visit on, every shopper's taste moves to two other categories")
        parser.add_argument("--shift-to", default=None,
                            help="comma-separated category slugs the taste moves to (default: the two least liked)")
        parser.add_argument("--periodic-seconds", type=float, default=60.0,
                            help="run list statistics, model updates and drift checks this often (default: 60)")
        parser.add_argument("--no-periodic", action="store_true", help="a Celery beat runs them: send traffic only")
        parser.add_argument("--seed", type=int, default=0)

    def handle(self, *args: Any, **options: Any) -> None:
        from storefront_demo.shop.simulator import LiveTraffic

        if options["visits"] < 0 or options["rate"] <= 0 or options["visitors"] < 1:
            raise CommandError("--visits must be >= 0, --rate > 0 and --visitors >= 1.")
        base = options["url"].rstrip("/")
        shop, pk_of = self._shop(options["visitors"], options["seed"])
        shift_to = self._shift_to(options["shift_to"], shop)
        total = options["visits"] or 10**9
        shift_at = None
        if options["shift_after"] is not None:
            if not 0 < options["shift_after"] < total:
                raise CommandError("--shift-after must be between 1 and --visits - 1.")
            shift_at = options["shift_after"] / total
        traffic = LiveTraffic(shop, total, shift_at=shift_at, shift_to=shift_to, seed=options["seed"])
        client = _Client(base, seed=options["seed"])
        client.check()
        self.stdout.write(f"Sending {'visits' if not options['visits'] else f'{total:,} visits'} to {base} at "
                          f"{options['rate']:g} per minute, slot {options['slot']!r}"
                          + (f", tastes shift to {', '.join(shift_to)} at visit {traffic.shift_visit}"
                             if traffic.shift_visit is not None else "") + ". Ctrl-C stops.")
        gap = 60.0 / options["rate"]
        periodic = None if options["no_periodic"] else options["periodic_seconds"]
        last_periodic = time.monotonic()
        shown = clicked = 0
        try:
            for index in range(total):
                started = time.monotonic()
                n_shown, n_clicked = self._visit(client, traffic, index, pk_of, options["slot"])
                shown, clicked = shown + n_shown, clicked + n_clicked
                if (index + 1) % 50 == 0:
                    self.stdout.write(f"{index + 1:,} visits: {shown:,} items shown, {clicked:,} clicked "
                                      f"(CTR {clicked / max(shown, 1):.3f})")
                if periodic is not None and time.monotonic() - last_periodic >= periodic:
                    self._run_periodic()
                    last_periodic = time.monotonic()
                time.sleep(max(0.0, gap - (time.monotonic() - started)))
        except KeyboardInterrupt:
            self.stdout.write("Stopped.")
        if periodic is not None:
            self._run_periodic()
        self.stdout.write(self.style.SUCCESS(f"Done: {shown:,} items shown, {clicked:,} clicked."))

    def _shop(self, n_visitors: int, seed: int):
        """Simulated shoppers for the products in the database (any demo catalog), and each SKU's product id."""
        import pandas as pd

        from storefront_demo.shop.models import Product
        from storefront_demo.shop.simulator import catalog_shop

        rows = list(Product.objects.filter(category__isnull=False).values_list("pk", "sku", "category__slug"))
        if not rows:
            raise CommandError("The shop has no products yet: run `manage.py demo` first.")
        catalog = pd.DataFrame(rows, columns=["pk", "sku", "category"])
        try:
            shop = catalog_shop(catalog, n_visitors, seed=seed, prefix="")
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        return shop, dict(zip(catalog["sku"], catalog["pk"], strict=True))

    def _shift_to(self, option: str | None, shop) -> tuple[str, ...]:
        if option:
            wanted = tuple(s.strip() for s in option.split(",") if s.strip())
            unknown = sorted(set(wanted) - set(shop.categories))
            if unknown or not wanted:
                raise CommandError(f"--shift-to: unknown categories {unknown}; the shop has {shop.categories}.")
            return wanted
        mean = shop.truth[[f"taste_{c}" for c in shop.categories]].mean().to_numpy()
        return tuple(shop.categories[i] for i in mean.argsort()[:2])

    def _visit(self, client: _Client, traffic, index: int, pk_of: dict[str, int], slot: str) -> tuple[int, int]:
        """One visit of one shopper: product pages, the slot's list, its impressions and clicks."""
        visit = traffic.visit(index)
        shopper = client.shopper(visit.visitor)
        for sku in visit.browsed:
            client.get(shopper, f"/p/{pk_of[sku]}/")
        query = urllib.parse.urlencode({"slot": slot})
        got = client.get_json(shopper, f"/api/personalization/recommendations/?{query}")
        if not got or not got.get("items"):
            return 0, 0
        items = got["items"]
        rec_id = got.get("recommendation_id", "")
        hits = traffic.clicks(visit, [row.get("category") for row in items])
        events = [_event("impression", row["key"], rec_id, slot, position) for position, row in enumerate(items)]
        events += [_event("click", row["key"], rec_id, slot, position)
                   for position, (row, hit) in enumerate(zip(items, hits, strict=True)) if hit]
        client.post_json(shopper, "/api/personalization/events/", {"events": events})
        for row, hit in zip(items, hits, strict=True):
            if hit and row.get("url"):
                client.get(shopper, row["url"])
        return len(items), sum(hits)

    def _run_periodic(self) -> None:
        """What the beat would run for the loop; a failing task is reported and the traffic goes on."""
        from personalization import tasks

        for name, task in (("list statistics", tasks.aggregate_list_stats), ("model updates", tasks.update_models),
                           ("drift checks", tasks.detect_drift)):
            try:
                task()
            except Exception as exc:  # noqa: BLE001 - the simulator keeps sending; the error is shown
                self.stderr.write(f"{name} failed: {exc}")


def _event(kind: str, item: str, rec_id: str, slot: str, position: int) -> dict[str, Any]:
    return {"event": kind, "item": item, "event_id": str(uuid.uuid4()), "recommendation_id": rec_id,
            "context": {"slot": slot, "position": position}}


@dataclass
class _Shopper:
    """One simulated shopper's browser: its cookies (name -> value) and headers (device, country)."""

    headers: dict[str, str]
    cookies: dict[str, str] = field(default_factory=dict)


class _Client:
    """HTTP to the running demo, one :class:`_Shopper` per simulated visitor (urllib: no dependency for a demo
    command).

    Cookies are kept by hand, not by ``http.cookiejar``: its policy drops cookies set by ``localhost`` and never
    returns ``Secure`` ones over plain HTTP (the visitor cookie is ``Secure`` with ``DEBUG`` off), and either would
    make every request a new visitor."""

    def __init__(self, base: str, seed: int = 0) -> None:
        from personalization.conf import settings

        self.base = base
        self.shoppers: dict[str, _Shopper] = {}
        self.rng = random.Random(seed)
        meta = settings.COUNTRY_HEADER or ""  # a META key (HTTP_CF_IPCOUNTRY): the header is CF-IPCOUNTRY
        self.country_header = meta[5:].replace("_", "-") if meta.startswith("HTTP_") else ""

    def shopper(self, visitor: str) -> _Shopper:
        """The visitor's browser; its device and country are drawn on its first visit and kept."""
        if visitor not in self.shoppers:
            device = self.rng.choices(list(DEVICE_SHARES), weights=list(DEVICE_SHARES.values()))[0]
            headers = {"User-Agent": USER_AGENTS[device]}
            if self.country_header:
                headers[self.country_header] = self.rng.choices(list(COUNTRY_SHARES),
                                                                weights=list(COUNTRY_SHARES.values()))[0]
            self.shoppers[visitor] = _Shopper(headers)
        return self.shoppers[visitor]

    def check(self) -> None:
        try:
            self._open(_Shopper({"User-Agent": USER_AGENTS["desktop"]}), "/")
        except (urllib.error.URLError, OSError) as exc:
            raise CommandError(f"Cannot reach the demo at {self.base} ({exc}). Start it first (`make demo`, or "
                               "`manage.py runserver`), or pass --url.") from exc

    def _open(self, shopper: _Shopper, path: str, body: bytes | None = None,
              headers: dict[str, str] | None = None) -> bytes:
        url = path if path.startswith("http") else self.base + path
        sent = {**shopper.headers, **(headers or {})}
        if shopper.cookies:
            sent["Cookie"] = "; ".join(f"{k}={v}" for k, v in shopper.cookies.items())
        request = urllib.request.Request(url, data=body, headers=sent)
        with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
            for header in response.headers.get_all("Set-Cookie") or ():
                for name, morsel in http.cookies.SimpleCookie(header).items():
                    shopper.cookies[name] = morsel.value
            return response.read()

    def get(self, shopper: _Shopper, path: str) -> None:
        try:
            self._open(shopper, path)
        except (urllib.error.URLError, OSError):
            pass  # a page that failed is a page not seen: the visit goes on

    def get_json(self, shopper: _Shopper, path: str) -> dict[str, Any] | None:
        try:
            return json.loads(self._open(shopper, path, headers={"Accept": "application/json"}))
        except (urllib.error.URLError, OSError, ValueError):
            return None

    def post_json(self, shopper: _Shopper, path: str, payload: dict[str, Any]) -> None:
        try:
            self._open(shopper, path, json.dumps(payload).encode(),
                       {"Content-Type": "application/json", "Origin": self.base, "Sec-Fetch-Site": "same-origin"})
        except (urllib.error.URLError, OSError):
            pass
