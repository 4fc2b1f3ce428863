"""``manage.py demo`` builds a catalog and history, and re-running it adds nothing."""

from __future__ import annotations

import re
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError

from personalization.models import Event
from storefront_demo.shop.models import Category, Product

pytestmark = pytest.mark.django_db

ARGS = ["--products", "40", "--visitors", "60", "--days", "10", "--seed", "5", "--no-progress"]


def run(*args) -> str:
    out = StringIO()
    call_command("demo", *args, stdout=out)
    return out.getvalue()


def counts() -> dict[str, int]:
    return {
        "products": Product.objects.count(),
        "categories": Category.objects.count(),
        "events": Event.objects.count(),
        "users": get_user_model().objects.count(),
        "linked": Event.objects.filter(user__isnull=False).count(),
    }


def test_simulated_demo_is_built_and_idempotent():
    output = run(*ARGS)
    first = counts()
    assert first["products"] == 40 and first["categories"] == 8
    assert first["events"] > 300
    assert "Open http://127.0.0.1:8000/ (admin: /admin/, user admin / admin)" in output
    assert re.search(r"Models: version \d+ is live", output)
    admin = get_user_model().objects.get(username="admin")
    assert admin.is_staff and admin.is_superuser and admin.check_password("admin")

    # every event names an existing product by its primary key, and the history carries context
    keys = set(Event.objects.exclude(item_key="").values_list("item_key", flat=True))
    assert keys <= {p.item_key for p in Product.objects.all()}
    event = Event.objects.filter(event_type="view").first()
    assert event.source == Event.Source.IMPORT and {"device", "country"} <= set(event.context)
    assert set(Event.objects.values_list("event_type", flat=True)) == {"view", "add_to_cart", "purchase"}
    assert first["linked"] > 0  # simulated sign-ups are linked to shopper accounts

    output = run(*ARGS)
    assert counts() == first
    assert "0 new simulated events" in output


def test_fresh_starts_over():
    run(*ARGS)
    before = counts()
    run(*ARGS, "--fresh")
    assert counts() == before


def test_online_retail_sample(tmp_path: Path):
    src = tmp_path / "retail.csv"
    src.write_text(
        "InvoiceNo,StockCode,Description,Quantity,InvoiceDate,UnitPrice,CustomerID,Country\n"
        "536365,85123A,WHITE HANGING HEART T-LIGHT HOLDER,6,2010-12-01 08:26:00,2.55,17850.0,United Kingdom\n"
        "536365,71053,WHITE METAL LANTERN,6,2010-12-01 08:26:00,3.39,17850.0,United Kingdom\n"
        "536366,22633,HAND WARMER UNION JACK,6,2010-12-01 08:28:00,1.85,17851.0,France\n"
        "C536367,22633,HAND WARMER UNION JACK,-1,2010-12-01 09:28:00,1.85,17851.0,France\n"
        "536368,22633,HAND WARMER UNION JACK,2,2010-12-01 09:30:00,2.05,,France\n"
        "536369,POST,POSTAGE,1,2010-12-01 09:31:00,18.00,17851.0,France\n"
    )
    run("--data", str(src), "--no-progress")
    first = counts()
    assert first["products"] == 4 and first["events"] == 4
    keys = dict(Product.objects.values_list("sku", "pk"))
    purchases = Event.objects.filter(event_type="purchase")
    assert {e.item_key for e in purchases} == {f"product:{pk}" for pk in keys.values()}
    assert Event.objects.get(item_key=f"product:{keys['85123A']}").value == pytest.approx(15.3)
    assert Event.objects.get(item_key=f"product:{keys['85123A']}").visitor_id == "17850"
    assert Product.objects.get(sku="85123A").category.slug == "candles"
    assert Product.objects.get(sku="71053").category.slug == "lanterns"
    assert not Product.objects.get(sku="POST").in_stock
    run("--data", str(src), "--no-progress")
    assert counts() == first


def test_missing_data_path_is_a_command_error(tmp_path):
    with pytest.raises(CommandError, match="not found"):
        run("--data", str(tmp_path / "nope"), "--no-progress")
