"""Driver run inside the throwaway project built by ``test_readme_install.py`` (copied there, never imported here).

``python drive.py traffic``: a shop's first week (products, users, page views through the middleware, the events
API, ``personalization.track`` with timestamps spread over six days). ``python drive.py verify``: what a user of
the README gets (the README's Python block run with a real request, pages, the schema). ``python drive.py retrain``:
``training.enqueue()`` and wait for a worker to put the version live. Each prints one JSON object.
"""

import json
import os
import random
import sys
import time
from datetime import timedelta

import django

django.setup()

from django.contrib.auth import get_user_model  # noqa: E402
from django.test import Client, RequestFactory  # noqa: E402
from django.utils import timezone  # noqa: E402
from shop.models import Category, Product  # noqa: E402

import personalization  # noqa: E402
from personalization.models import Event, ModelVersion  # noqa: E402

UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"
CATEGORIES = ["candles", "mugs", "cushions"]


def browser(user=None) -> Client:
    client = Client(HTTP_HOST="localhost", HTTP_USER_AGENT=UA)
    if user is not None:
        client.force_login(user)
    return client


def traffic() -> dict:
    rng = random.Random(7)
    categories = [Category.objects.create(name=slug.title(), slug=slug) for slug in CATEGORIES]
    products = [Product.objects.create(name=f"{c.name} {i}", category=c, price=5 + i, description=f"a {c.slug}")
                for i in range(20) for c in categories]
    by_category = {c.slug: [p for p in products if p.category_id == c.pk] for c in categories}
    users = [get_user_model().objects.create_user(f"user{i}", password="x") for i in range(30)]
    now = timezone.now()
    tracked = 0
    for n, user in enumerate(users):  # imported history: each user keeps to one category, over six days
        liked = by_category[CATEGORIES[n % 3]]
        for _ in range(12):
            product = rng.choice(liked)
            when = now - timedelta(days=6, hours=-rng.uniform(0, 140))
            event = rng.choice(["view", "view", "click", "add_to_cart", "purchase"])
            personalization.track(user, event, f"product:{product.pk}", timestamp=when.isoformat())
            tracked += 1
    views = 0
    for n, user in enumerate(users[:6]):  # signed-in page views through TrackingMiddleware
        client = browser(user)
        for product in rng.sample(by_category[CATEGORIES[n % 3]], 3):
            assert client.get(f"/shop/products/{product.pk}/").status_code == 200
            views += 1
    anonymous = browser()
    batch = [{"event": "view", "item": f"product:{p.pk}",
              "timestamp": (now - timedelta(days=rng.uniform(0.5, 5))).isoformat()}
             for p in rng.sample(by_category["mugs"], 8)]
    response = anonymous.post("/api/personalization/events/", {"events": batch}, content_type="application/json")
    return {"tracked": tracked, "page_views": views, "api": response.status_code, "api_body": response.json(),
            "products": len(products)}


def verify() -> dict:
    user = get_user_model().objects.get(username="user1")
    request = RequestFactory().get("/", HTTP_USER_AGENT=UA)
    request.user = user
    namespace = {"request": request}
    exec(os.environ["README_PYTHON_BLOCK"], namespace)  # the README's Python block, as written
    result = namespace["result"]
    client = browser(user)
    page = client.get("/shop/products/42/")
    schema = client.get("/api/personalization/schema/")
    live = ModelVersion.objects.filter(status=ModelVersion.Status.LIVE).values_list("pk", flat=True)
    return {
        "items": [r.item for r in result.items], "model_version": result.model_version, "fallback": result.fallback,
        "live": list(live), "purchase_stored": Event.objects.filter(event_type="purchase", user_id=user.pk,
                                                                    item_key="product:42").exists(),
        "page": page.status_code, "html": page.content.decode(), "schema": schema.status_code,
        "schema_type": schema.get("Content-Type", ""),
        "sources": {source: Event.objects.filter(source=source).count() for source in ("middleware", "api", "python")},
    }


def retrain() -> dict:
    from personalization import training

    version = training.enqueue()
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        version.refresh_from_db()
        if version.status in {"live", "ready", "failed", "cancelled"}:
            break
        time.sleep(1)
    return {"version": version.pk, "status": version.status, "stage": version.stage}


if __name__ == "__main__":
    print(json.dumps({"traffic": traffic, "verify": verify, "retrain": retrain}[sys.argv[1]]()))
