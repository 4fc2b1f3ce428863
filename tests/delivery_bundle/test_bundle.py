"""The on-device re-ranking bundle: quantization, content, the two cacheable forms, ETags, no model."""

from __future__ import annotations

import base64
import gzip
import json
from types import SimpleNamespace

import numpy as np
import pytest
from django.core import signing
from django.test import Client

from personalization.delivery import bundle as bundles
from personalization.subjects import subject_key

URL = "/api/personalization/bundle/"
UA = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"


def client_for(visitor: str | None = None) -> Client:
    from personalization.conf import settings as psettings

    client = Client(HTTP_USER_AGENT=UA)
    if visitor:
        signer = signing.TimestampSigner(salt=psettings.VISITOR_COOKIE_SALT)
        client.cookies[psettings.VISITOR_COOKIE_NAME] = signer.sign(visitor)
    return client


def visitor_of(shop: dict, category: str) -> str:
    return next(v for v, c in shop["visitors"].items() if c == category)


def live():
    from personalization import serving

    return serving.live_system()[1]


# == quantization ==================================================================================================
def test_quantization_round_trip_is_within_half_a_step_per_element():
    rng = np.random.default_rng(0)
    vectors = rng.normal(scale=rng.uniform(0.01, 5, size=(50, 1)), size=(50, 64)).astype(np.float32)
    vectors[3] = 0.0  # an all-zero row must survive (scale 1, codes 0)
    codes, scales = bundles.quantize(vectors)
    assert codes.dtype == np.int8 and scales.dtype == np.float32
    assert codes.min() >= -127 and codes.max() <= 127
    restored = bundles.dequantize(codes, scales)
    assert np.all(np.abs(restored - vectors) <= scales[:, None] / 2 + 1e-6)
    assert np.array_equal(restored[3], np.zeros(64))
    # and the relative error of a whole vector stays under 1%
    err = np.linalg.norm(restored - vectors, axis=1) / np.maximum(np.linalg.norm(vectors, axis=1), 1e-9)
    assert err.max() < 0.01
    # base64 round trip of the wire encoding
    body = {"dims": 64, "items": [str(i) for i in range(50)], "vectors": bundles.b64(codes.reshape(-1)),
            "scales": bundles.b64(scales), "user": None}
    keys, decoded, user = bundles.decode(body)
    assert len(keys) == 50 and user is None and np.array_equal(decoded, restored)


# == content =======================================================================================================
def test_personal_bundle_holds_the_recommendations_and_the_als_vectors(category_shop, monkeypatch):
    from django.test import RequestFactory

    from personalization import serving

    system = live()
    als = system.families_["als"]
    visitor = visitor_of(category_shop, "mugs")
    subject = f"v:{visitor}"
    seen = []
    original = serving.recommend

    def spy(*args, **kwargs):
        seen.append(original(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(serving, "recommend", spy)
    request = RequestFactory().get(URL, HTTP_USER_AGENT=UA)
    body = bundles.personal_bundle(request, subject, bundles.visitor_history(subject), pool_size=10)

    recommended = [k for k in seen[0].keys() if k in system.matrix_.item_index][:10]
    assert recommended and body["items"][: len(recommended)] == recommended, "the recommendations lead the pool"
    assert body["recommendation_id"] == seen[0].recommendation_id
    assert body["format"] == 1 and body["model_version"] == category_shop["version"].pk and body["segment"] is None
    keys, vectors, user = bundles.decode(body)
    assert vectors.shape == (10, als.item_factors_.shape[1]) == (10, body["dims"])
    expected = als.item_factors_[system.matrix_.cols_for(keys)]
    step = np.abs(expected).max(axis=1, keepdims=True) / 127
    assert np.all(np.abs(vectors - expected) <= step / 2 + 1e-6)
    # a visitor the model was trained on: their ALS user factors, within quantization error
    row = system.matrix_.user_index[subject_key(subject)]  # the artifact knows the visitor by a pseudonym
    assert body["user"]["source"] == "als"
    want = als.user_factors_[row]
    assert np.all(np.abs(user - want) <= np.abs(want).max() / 127 / 2 + 1e-6)
    assert set(body["display"]) == {"title", "url", "price", "category"}
    assert all(len(col) == 10 for col in body["display"].values())
    assert body["display"]["url"][0].startswith("/p/") and body["display"]["category"][0] in {"mugs", "candles",
                                                                                              "lamps", "rugs"}


def test_a_new_visitor_with_recent_views_gets_an_embedding_of_them(category_shop):
    from django.utils import timezone

    from personalization.models import Event

    lamps = category_shop["products"]["lamps"][:3]
    visitor = "f" * 32
    now = timezone.now()
    Event.objects.bulk_create([Event(event_type="view", item_key=f"product:{p.pk}", visitor_id=visitor,
                                     occurred_at=now, received_at=now, source="python") for p in lamps])
    response = client_for(visitor).get(URL)
    assert response.status_code == 200 and response["Cache-Control"] == "private, max-age=300"
    body = response.json()
    assert body["segment"] is None and body["user"]["source"] == "als"
    keys, vectors, user = bundles.decode(body)
    assert {f"product:{p.pk}" for p in lamps} <= set(keys), "recent items are in the pool"
    # the recomputed vector prefers lamps over the other categories
    cats = np.array(body["display"]["category"])
    scores = vectors @ user
    assert scores[cats == "lamps"].mean() > scores[cats != "lamps"].mean()


# == the two forms and caching ======================================================================================
def test_segment_bundle_is_identical_for_everyone_and_public(category_shop):
    a, b = visitor_of(category_shop, "mugs"), visitor_of(category_shop, "rugs")
    first, second = client_for(a).get(URL, {"segment": "all"}), client_for(b).get(URL, {"segment": "all"})
    assert first.status_code == second.status_code == 200
    assert first.content == second.content and first["ETag"] == second["ETag"]
    assert first["Cache-Control"] == "public, max-age=3600"
    assert "cookie" not in first["Vary"].lower() and "Set-Cookie" not in first.headers
    body = first.json()
    assert body["segment"] == "all" and body["user"] is None and len(body["items"]) == 32
    assert client_for().get(URL, {"segment": "country=GB"}).json()["segment"] == "country=GB"


def test_personal_bundles_differ_and_are_private(category_shop):
    a, b = visitor_of(category_shop, "mugs"), visitor_of(category_shop, "rugs")
    first, second = client_for(a).get(URL), client_for(b).get(URL)
    assert first.status_code == second.status_code == 200
    assert first["Cache-Control"] == second["Cache-Control"] == "private, max-age=300"
    assert "Cookie" in first["Vary"]
    one, two = first.json(), second.json()
    assert one["user"]["vector"] != two["user"]["vector"] and one["items"] != two["items"]
    assert first["ETag"] != second["ETag"]


def test_a_visitor_without_history_gets_the_segment_bundle_varying_on_cookie(category_shop):
    response = client_for("e" * 32).get(URL)
    assert response.status_code == 200
    assert response["Cache-Control"] == "public, max-age=3600" and "Cookie" in response["Vary"]
    assert response.content == client_for().get(URL, {"segment": "all"}).content


def test_etag_answers_304(category_shop):
    for visitor, params in ((None, {"segment": "all"}), (visitor_of(category_shop, "lamps"), {})):
        client = client_for(visitor)
        first = client.get(URL, params)
        tag = first["ETag"]
        assert tag.startswith('W/"')
        again = client.get(URL, params, HTTP_IF_NONE_MATCH=tag)
        assert again.status_code == 304 and again.content == b"" and again["ETag"] == tag
        assert again["Cache-Control"] == first["Cache-Control"]
        assert client.get(URL, params, HTTP_IF_NONE_MATCH='"something-else"').status_code == 200


def test_bad_segment_is_a_400_with_the_fix(category_shop):
    response = client_for().get(URL, {"segment": "weather=rain"})
    assert response.status_code == 400
    assert "country=<code>" in response.json()["segment"][0]


def test_no_live_model_is_a_404_with_a_clear_message(db):
    for params in ({}, {"segment": "all"}):
        response = client_for("d" * 32).get(URL, params)
        assert response.status_code == 404
        assert "No live model yet" in response.json()["detail"] and response.json()["format"] == 1


def test_the_schema_documents_the_endpoint(db):
    response = client_for().get("/api/personalization/schema/", {"format": "json"})
    assert response.status_code == 200
    assert "/api/personalization/bundle/" in json.loads(response.content)["paths"]


# == size ===========================================================================================================
@pytest.mark.parametrize("dims", [32, 64])
def test_300_items_fit_the_size_budget(db, dims, capsys):
    """300 items of a realistic catalog with 32-64 dims stay under 60 KB (printed: raw and gzipped sizes)."""
    from decimal import Decimal

    from personalization.pipeline.interactions import InteractionMatrix
    from storefront_demo.shop.models import Category, Product

    cats = [Category.objects.create(name=f"Category {i}", slug=f"category-{i}") for i in range(12)]
    Product.objects.bulk_create([
        Product(sku=f"SKU-{i}", name=f"Hand-poured Amber Candle No. {i}", price=Decimal("19.99") + i,
                category=cats[i % 12]) for i in range(300)])
    keys = [f"product:{p.pk}" for p in Product.objects.order_by("pk")]
    rng = np.random.default_rng(1)
    from scipy import sparse

    matrix = InteractionMatrix(sparse.csr_matrix((1, 300), dtype=np.float32), np.array(["u:1"]), np.array(keys))
    als = SimpleNamespace(item_factors_=rng.normal(size=(300, dims)).astype(np.float32),
                          user_factors_=rng.normal(size=(1, dims)).astype(np.float32))
    system = SimpleNamespace(families_={"als": als}, matrix_=matrix)
    body = bundles._assemble(system, 1, "als", keys, 300, {
        "recommendation_id": "0" * 32, "segment": None, "ttl": 300,
        "user": {"vector": bundles.b64(bundles.quantize(als.user_factors_[0])[0].reshape(-1)), "scale": 0.01,
                 "source": "als"}})
    raw = json.dumps(body, separators=(",", ":")).encode()
    assert len(body["items"]) == 300 and len(base64.b64decode(body["vectors"])) == 300 * dims
    with capsys.disabled():
        print(f"\nbundle, 300 items x {dims} dims: {len(raw)} bytes raw, {len(gzip.compress(raw))} bytes gzipped")
    assert len(raw) < 60_000
