"""``manage.py demo``: build a working demo shop with history, in one command.

    python manage.py demo                       # simulated gift shop (400 products, 600 visitors, 60 days)
    python manage.py demo --data                # the real UCI Online Retail data from PERSONALIZATION_DATASETS
    python manage.py demo --data PATH --fresh   # ... from PATH, after deleting the shop's products and events

Migrates the database, creates the catalog (products keyed so their item keys are ``product:<pk>``), writes the
history as ``Event`` rows through ``personalization.importing.import_events``, creates the staff user
``admin`` / ``admin`` and trains the first models. Re-running it adds nothing twice.
"""

from __future__ import annotations

import time
from decimal import Decimal
from pathlib import Path

import pandas as pd
from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import make_password
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction
from django.utils import timezone
from django.utils.text import slugify

SIM_PASSWORD = "demo"


def train_first_models(stdout, *, progress: bool = True) -> None:
    """Train the first model version right after the history is built, so the first page is personalized."""
    from tqdm import tqdm

    from personalization.models import ModelVersion
    from personalization.registry import live_version
    from personalization.training import TrainingError, train

    if live_version() is not None:
        stdout.write("Models: a live version exists already (retrain from the admin or personalization_train).")
        return
    version = ModelVersion.objects.create(status=ModelVersion.Status.QUEUED)
    bar = tqdm(total=100, desc="training models", unit="%", disable=not progress)

    def echo(stage: str, fraction: float) -> None:
        bar.set_description(f"training: {stage}")
        bar.update(round(fraction * 100, 1) - bar.n)

    try:
        version = train(version, echo=echo)
    except TrainingError as exc:
        stdout.write(f"Models: not trained ({exc})")
        return
    finally:
        bar.close()
    ndcg = (version.test_metrics.get("system") or {}).get("ndcg@10")
    stdout.write(f"Models: version {version.pk} is {version.status}" + (f", NDCG@10 {ndcg:.3f}" if ndcg else ""))


class Command(BaseCommand):
    help = "Build the demo shop: catalog, interaction history, admin user. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument(
            "--data", nargs="?", const="", default=None, metavar="PATH",
            help="Build from UCI Online Retail (folder of daily CSVs or one CSV) instead of the simulator. "
                 "Without PATH: <PERSONALIZATION_DATASETS>/online-retail/by-day.",
        )
        parser.add_argument("--fresh", action="store_true",
                            help="Delete the shop's products, orders and imported events first.")
        parser.add_argument("--products", type=int, default=400, help="Simulated products (default 400).")
        parser.add_argument("--visitors", type=int, default=600, help="Simulated visitors (default 600).")
        parser.add_argument("--days", type=int, default=60, help="Simulated days of history (default 60).")
        parser.add_argument("--seed", type=int, default=7, help="Simulator seed (default 7).")
        parser.add_argument("--no-progress", action="store_true", help="No progress bars.")
        parser.add_argument("--no-train", action="store_true", help="Build the shop and history only.")

    def handle(self, *args, **options):
        started = time.monotonic()
        self.progress = not options["no_progress"]
        self.stdout.write("Migrating the database ...")
        call_command("migrate", interactive=False, verbosity=0)
        from personalization.periodic_tasks import install_periodic_tasks

        created = install_periodic_tasks()  # migrate's post_migrate did it; a database migrated before did not
        if created:
            self.stdout.write(f"Created {len(created)} periodic tasks (admin: Periodic tasks): {', '.join(created)}")
        if options["fresh"]:
            self.fresh()

        if options["data"] is not None:
            path = Path(options["data"]) if options["data"] else (
                Path(settings.PERSONALIZATION_DATASETS) / "online-retail" / "by-day"
            )
            summary = self.build_online_retail(path)
        else:
            for name in ("products", "visitors", "days"):
                if options[name] < 1:
                    raise CommandError(f"--{name} must be at least 1.")
            summary = self.build_simulated(options["products"], options["visitors"], options["days"], options["seed"])

        self.ensure_admin()
        if not options["no_train"]:
            train_first_models(self.stdout, progress=not options["no_progress"])

        from personalization.models import Event
        from storefront_demo.shop.models import Category, Product

        self.stdout.write("")
        self.stdout.write(self.style.SUCCESS(f"Demo ready in {time.monotonic() - started:.0f} s:"))
        self.stdout.write(f"  {Product.objects.count():,} products in {Category.objects.count()} categories")
        self.stdout.write(f"  {Event.objects.count():,} events in the database")
        for line in summary:
            self.stdout.write(f"  {line}")
        self.stdout.write("")
        self.stdout.write("Run `python manage.py runserver`, then:")
        self.stdout.write("Open http://127.0.0.1:8000/ (admin: /admin/, user admin / admin)")
        self.warn_public_secret_key()

    def warn_public_secret_key(self) -> None:
        """Warn while SECRET_KEY is the demo's public default: anyone can then forge visitor cookies and sessions."""
        if settings.SECRET_KEY == getattr(settings, "DEMO_SECRET_KEY", None) or settings.SECRET_KEY.startswith(
                "django-insecure-"):
            self.stderr.write(self.style.WARNING(
                "WARNING: SECRET_KEY is the demo's public default. Anyone can forge visitor cookies and sessions "
                "with it: fine on your own machine, never on a public server. Set SECRET_KEY (environment or "
                ".env), e.g. to the output of: python -c \"import secrets; print(secrets.token_urlsafe(50))\""))

    # --- steps ---------------------------------------------------------------------------------------------

    def fresh(self) -> None:
        from personalization.models import Event
        from storefront_demo.shop.models import Brand, Category, Order, Product

        with transaction.atomic():
            events = Event.objects.filter(source=Event.Source.IMPORT).delete()[0]
            Order.objects.all().delete()
            products = Product.objects.all().delete()[0]
            Category.objects.all().delete()
            Brand.objects.all().delete()
            get_user_model().objects.filter(username__startswith="shopper", is_staff=False).delete()
        self.stdout.write(f"Fresh start: deleted {events:,} imported events and {products:,} shop rows.")

    def ensure_admin(self) -> None:
        users = get_user_model()
        if not users.objects.filter(username="admin").exists():
            users.objects.create_superuser("admin", "admin@example.com", "admin")
            self.stdout.write("Created the superuser admin / admin.")

    def upsert_catalog(self, catalog: pd.DataFrame) -> dict[str, int]:
        """Create missing categories, brands and products (by SKU); return SKU -> product pk."""
        from storefront_demo.shop.models import Brand, Category, Product

        for slug in sorted(catalog["category"].unique()):
            Category.objects.get_or_create(slug=slugify(slug), defaults={"name": slug.replace("-", " ").title()})
        categories = dict(Category.objects.values_list("slug", "pk"))
        brands: dict[str, int] = {}
        names = sorted({b for b in catalog.get("brand", pd.Series(dtype=object)).dropna().unique()})
        if names:
            Brand.objects.bulk_create([Brand(name=n) for n in names], ignore_conflicts=True)
            brands = dict(Brand.objects.values_list("name", "pk"))
        existing = set(Product.objects.values_list("sku", flat=True))
        new = catalog[~catalog["sku"].isin(existing)]
        products = []
        for row in new.itertuples(index=False):
            brand = getattr(row, "brand", None)
            products.append(Product(
                sku=row.sku,
                name=str(row.name)[:200],
                description=str(row.description),
                price=Decimal(str(round(float(row.price), 2))),
                category_id=categories[slugify(row.category)],
                brand_id=brands.get(brand) if isinstance(brand, str) else None,
                in_stock=bool(getattr(row, "in_stock", True)),
            ))
        Product.objects.bulk_create(products, batch_size=500)
        if products:
            self.stdout.write(f"Created {len(products):,} products ({len(catalog) - len(products):,} already there).")
        else:
            self.stdout.write(f"Catalog already complete ({len(catalog):,} products).")
        return dict(Product.objects.filter(sku__in=catalog["sku"].tolist()).values_list("sku", "pk"))

    def import_history(self, events: pd.DataFrame, sku_to_pk: dict[str, int], **kwargs):
        from personalization.importing import import_events

        pks = events["item"].map(sku_to_pk)
        events = events[pks.notna()].assign(item="product:" + pks.dropna().astype("int64").astype(str))
        report = import_events(events, item_type="product", progress=self.progress, **kwargs)
        self.stdout.write(report.summary())
        return report

    def build_simulated(self, n_products: int, n_visitors: int, days: int, seed: int, end=None) -> list[str]:
        """The simulated shop's catalog, shoppers and history up to ``end`` (default: the current hour)."""
        from storefront_demo.shop.simulator import CATEGORY_NAMES, simulate_shop

        end = end or timezone.now().replace(minute=0, second=0, microsecond=0)
        self.stdout.write(f"Simulating {n_visitors:,} visitors over {n_products:,} products and {days} days "
                          f"(seed {seed}) ...")
        shop = simulate_shop(n_products=n_products, n_visitors=n_visitors, days=days, seed=seed,
                             end=pd.Timestamp(end))
        catalog = shop.catalog.assign(in_stock=True)
        sku_to_pk = self.upsert_catalog(catalog)
        from storefront_demo.shop.models import Category

        for slug, name in CATEGORY_NAMES.items():
            Category.objects.filter(slug=slug).exclude(name=name).update(name=name)

        # Signed-up simulated visitors become users shopper000, shopper001, ... (password "demo").
        users = get_user_model()
        signed_up = shop.truth[shop.truth["user"].notna()]
        usernames = {int(u): f"shopper{int(u):03d}" for u in signed_up["user"]}
        known = set(users.objects.filter(username__in=list(usernames.values())).values_list("username", flat=True))
        password = make_password(SIM_PASSWORD)
        users.objects.bulk_create([users(username=name, password=password) for name in usernames.values()
                                   if name not in known], batch_size=500)

        events = shop.events.copy()
        events["account"] = events["user"].map(lambda u: None if pd.isna(u) else usernames[int(u)])
        events["user"] = events["visitor"]
        events["event_key"] = events["visitor"] + ":" + events.groupby("visitor").cumcount().astype(str)
        events = events.drop(columns=["visitor", "is_bot"])
        source = f"demo-shop-s{seed}-p{n_products}-v{n_visitors}-d{days}"
        report = self.import_history(events, sku_to_pk, source=source, user_field="username",
                                     account_column="account")
        lines = [f"{report.imported:,} new simulated events ({report.duplicates:,} were already there)"]
        if not signed_up.empty:
            first = signed_up.iloc[0]
            lines.append(f"{len(usernames)} shopper accounts, password {SIM_PASSWORD!r}; e.g. "
                         f"{usernames[int(first['user'])]} likes {first['primary']} and {first['secondary']}")
        return lines

    def build_online_retail(self, path: Path) -> list[str]:
        from personalization.pipeline.datasets import read_online_retail

        if not path.exists():
            raise CommandError(
                f"Online Retail data not found at {path}. Pass --data PATH (the by-day folder or one CSV) or set "
                "PERSONALIZATION_DATASETS."
            )
        self.stdout.write(f"Reading Online Retail from {path} ...")
        try:
            catalog, events, report = read_online_retail(path)
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(f"Cannot read Online Retail data at {path}: {exc}") from exc
        dropped = ", ".join(f"{k} {v:,}" for k, v in report["dropped"].items() if v)
        self.stdout.write(f"Read {report['rows']:,} rows from {report['files']} files; kept {report['rows_kept']:,} "
                          f"purchase lines (dropped: {dropped}).")
        titles = catalog["title"].astype(str).str.strip()
        products = pd.DataFrame({
            "sku": catalog["item_id"],
            "name": titles.str.title(),
            "description": titles.str.capitalize() + ". From the UCI Online Retail catalogue (median price "
            + catalog["price"].round(2).astype(str) + " GBP, " + catalog["n_purchases"].astype(str)
            + " purchase lines).",
            "category": catalog["category"],
            "price": catalog["price"],
            "in_stock": catalog["category"] != "service",
        })
        sku_to_pk = self.upsert_catalog(products)
        history = events.rename(columns={"item_id": "item"})
        result = self.import_history(history, sku_to_pk, source="online-retail")
        return [f"{result.imported:,} new purchase events from Online Retail ({result.duplicates:,} were already "
                f"there, {result.skipped_total:,} skipped), {report['users']:,} customers"]
