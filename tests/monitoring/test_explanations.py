"""SHAP explanations through the public faces (API explain=1, the template tag, the admin's why page) and the
per-version insight stored by a real training run (SHAP summary, bias report) as the admin shows it."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.checks import run_checks
from django.template import Context, Template
from django.test import RequestFactory

from personalization import serving
from personalization.models import Event, ModelVersion
from personalization.monitoring.explanations import (
    FEATURE_SENTENCES,
    GENERIC_SENTENCE,
    bias_report,
    factors_from_shap,
    sentence_for,
    shap_summary,
)
from tests.serving.shop import active_visitor, live_shop_fixture, shop_fixture  # noqa: F401

URL = "/api/personalization/recommendations/"
WHY = "/admin/personalization/modelversion/why/"
SENTENCES = {template for _, template in FEATURE_SENTENCES if template} | {GENERIC_SENTENCE}


# -- the sentence table ---------------------------------------------------------------------------------------------
def test_features_map_to_shopper_sentences_and_unknown_ones_to_the_generic_sentence():
    assert sentence_for("item_pop_7d") == "Popular right now"
    assert sentence_for("popularity_score") == "Popular right now"
    assert sentence_for("itemknn_score") == "Bought with items you viewed"
    assert sentence_for("hist_weight") == "You looked at this recently"
    assert sentence_for("itemknn_last_sim", {"last_item": "Blue mug"}) == "Goes with Blue mug"
    assert sentence_for("item2vec_last_sim") == "Goes with what you viewed last"  # no title: neutral words
    assert sentence_for("country_share", {"country": "FR"}) == "Popular in FR"  # a context feature added later
    assert sentence_for("brand_affinity") == GENERIC_SENTENCE
    assert sentence_for("user_frequency") == ""  # the visitor's own figures are no reason for one item
    # the context group: the item's lift in the request's context is a reason, the request's context alone is not
    assert sentence_for("item_country_lift", {"country": "FR"}) == "Popular in FR"
    assert sentence_for("item_hour_lift") == "Popular at this time of day"
    assert sentence_for("ctx_hour_bucket") == "" and sentence_for("ctx_country", {"country": "FR"}) == ""


def test_a_site_adds_and_overrides_sentences_in_settings(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "INSIGHTS": {"sentences": {
        "brand_*": "From a brand you like", "item_pop_*": "A best seller", "odd": "Broken {nothing}"}}}
    assert sentence_for("brand_affinity") == "From a brand you like"
    assert sentence_for("item_pop_7d") == "A best seller"
    assert sentence_for("popularity_score") == "Popular right now"
    assert sentence_for("odd") == GENERIC_SENTENCE  # an unknown placeholder never breaks a page


def test_factors_add_up_features_of_one_sentence_and_keep_only_what_raised_the_score():
    names = ["item_pop_7d", "popularity_score", "itemknn_score", "user_frequency", "cat_affinity", "price"]
    shap = np.array([0.3, 0.25, 0.4, 0.9, -0.5, 0.01])
    factors = factors_from_shap(names, shap, k=2)
    assert [f["sentence"] for f in factors] == ["Popular right now", "Bought with items you viewed"]
    assert factors[0]["contribution"] == pytest.approx(0.55)
    assert factors[0]["features"] == ["item_pop_7d", "popularity_score"]
    assert all(f["sentence"] != "From a category you like" for f in factors_from_shap(names, shap, k=10))


# -- served explanations ----------------------------------------------------------------------------------------------
def _sentences(items):
    return [f["sentence"] for item in items for f in item.get("factors", [])]


def test_api_explain_returns_the_reason_source_and_shap_sentences(shop, admin_client):
    visitor = active_visitor()
    body = admin_client.get(URL, {"visitor": visitor, "n": 6, "explain": 1}).json()
    assert body["model_version"] == shop.pk and len(body["items"]) == 6
    for item in body["items"]:
        assert item["reason"] and item["source"]  # the source reason stays beside the sentences
        for factor in item["factors"]:
            assert factor["sentence"] in SENTENCES or factor["sentence"].startswith("Goes with ")
            assert factor["contribution"] > 0 and factor["features"]
    assert _sentences(body["items"])  # the live gradient-boosted ranker ordered them: SHAP sentences
    plain = admin_client.get(URL, {"visitor": visitor, "n": 6}).json()
    assert all("factors" not in item and "reason" not in item for item in plain["items"])


def test_explained_contributions_are_the_shap_values_of_the_served_rows(shop):
    from personalization.monitoring.explanations import explain_rows
    from personalization.recommenders.attributions import margin, shap_values
    from personalization.serving.live import live_system

    _, system = live_system()
    who = str(system.matrix_.user_ids[0])  # a training user (pseudonymised)
    lists, rows = system.recommend([who], n=5, with_features=True)
    assert rows[0] is not None and len(rows[0]) == len(lists[0]) == 5
    values, base = shap_values(system.ranker_, rows[0])
    np.testing.assert_allclose(base + values.sum(axis=1), margin(system.ranker_, rows[0]), atol=1e-6)
    names = system.ranker_feature_names()
    for row_values, factors in zip(values, explain_rows(system, rows[0]), strict=True):
        for factor in factors:
            assert factor["contribution"] == pytest.approx(
                sum(row_values[names.index(f)] for f in factor["features"]), abs=1e-3)


def _user_with_history():
    from django.contrib.auth import get_user_model

    user_id = (Event.objects.filter(user__isnull=False).exclude(item_key="").values_list("user_id", flat=True)
               .order_by("user_id").first())
    return get_user_model().objects.get(pk=user_id)


def test_the_tag_renders_why_an_item_is_recommended_and_never_raises(shop):
    user = _user_with_history()
    request = RequestFactory().get("/")
    request.user = user
    keys = serving.recommend(f"u:{user.pk}", 4, log=False).keys()
    page = Template("{% load personalization %}{% for k in keys %}<p>{% explain_recommendation k %}</p>{% endfor %}"
                    "<i>{% explain_recommendation missing %}</i><b>{% explain_recommendation broken %}</b>")
    html = page.render(Context({"request": request, "keys": keys, "missing": "product:999999", "broken": None}))
    assert html.count('class="personalization-why"') == len(keys)
    assert any(s in html for s in SENTENCES) or "Goes with" in html
    assert "<i></i>" in html and "<b></b>" in html  # not in the list / nothing given: nothing rendered


# -- the admin -------------------------------------------------------------------------------------------------------
def test_why_page_lists_items_with_sources_and_sentences_for_staff(shop, admin_client):
    from personalization.models import RecommendationLog

    logged = RecommendationLog.objects.count()
    visitor = active_visitor()[2:]
    page = admin_client.get(WHY, {"visitor_id": visitor, "n": 5})
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("product:") >= 5 and "features that raised its score" in html
    assert any(s in html for s in SENTENCES)
    assert RecommendationLog.objects.count() == logged  # looking is not serving
    assert admin_client.get(WHY).status_code == 200  # the empty form
    bad = admin_client.get(WHY, {"user_id": "3", "visitor_id": "abc"})
    assert bad.status_code == 400 and "Give either a user id or a visitor id" in bad.content.decode()


def test_why_page_is_forbidden_to_others(shop, client, django_user_model):
    visitor = active_visitor()[2:]
    customer = django_user_model.objects.create_user("customer", password="pw")
    client.force_login(customer)
    response = client.get(WHY, {"visitor_id": visitor})
    assert response.status_code == 302 and "/login/" in response["Location"]
    staff = django_user_model.objects.create_user("clerk", password="pw", is_staff=True)
    client.force_login(staff)
    assert client.get(WHY, {"visitor_id": visitor}).status_code == 403  # staff without view_modelversion


def test_training_stores_the_shap_summary_and_the_bias_report(shop):
    summary = shap_summary(shop)
    assert summary is not None and 0 < summary["rows"] <= 2000
    values = list(summary["features"].values())
    assert values == sorted(values, reverse=True) and values[0] > 0
    from personalization.serving.live import live_system

    assert set(summary["features"]) == set(live_system()[1].ranker_feature_names())
    report = bias_report(shop)
    quality, exposure = report["quality"], report["exposure"]
    assert set(quality["segments"]) == {"device", "country", "visitor", "history"}
    assert {"mobile", "desktop"} <= set(quality["segments"]["device"])
    assert sum(s["users"] for s in quality["segments"]["device"].values()) == quality["overall"]["users"]
    assert 0 < exposure["coverage"] <= 1 and 0 <= exposure["gini"] < 1
    assert 0 <= exposure["recommended_popularity"] <= 1 and 0 <= exposure["consumed_popularity"] <= 1
    assert isinstance(report["warnings"], list)


def test_version_page_shows_the_chart_and_flags_a_weak_segment(shop, admin_client):
    page = admin_client.get(f"/admin/personalization/modelversion/{shop.pk}/change/").content.decode()
    assert "<svg" in page and "mean |SHAP| (log-odds)" in page and "Bias report (test window)" in page
    assert "http://" not in page.split("<svg", 1)[1].split("</svg>", 1)[0].replace("http://www.w3.org", "")
    insights = dict(shop.insights)
    insights["bias"] = {"users": 40, "quality": {"k": 10, "overall": {"users": 40, "ndcg@10": 0.4, "recall@10": 0.5},
                                                 "segments": {"device": {
                                                     "mobile": {"users": 25, "ndcg@10": 0.5, "recall@10": 0.6},
                                                     "tablet": {"users": 15, "ndcg@10": 0.1, "recall@10": 0.2}}}},
                        "exposure": {"coverage": 0.5, "gini": 0.3}}
    ModelVersion.objects.filter(pk=shop.pk).update(insights=insights)
    page = admin_client.get(f"/admin/personalization/modelversion/{shop.pk}/change/").content.decode()
    assert "device = tablet" in page and "below half the overall" in page
    assert "device = mobile" not in page


def test_insights_settings_are_checked(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "INSIGHTS": {"bias_k": 0, "low_quality_ratio": 2}}
    ids = [m.id for m in run_checks()]
    assert ids.count("personalization.E070") == 2


def test_a_visits_explanations_are_those_of_the_session_ranker_that_ordered_it():
    from personalization.monitoring.explanations import explain_rows
    from personalization.recommenders.system import RecommenderSystem
    from tests.recommenders.test_session_ranker import HISTORY, MODELS, visits

    system = RecommenderSystem(models=MODELS, candidates_per_model=15, random_state=0).fit(visits())
    assert system.ranks_as_visit("v:new", HISTORY["v:new"])
    _, rows = system.recommend(["v:new"], n=5, histories=HISTORY, with_features=True)
    names = system.explaining_ranker(session=True)[1]
    explained = explain_rows(system, rows[0], session=True)
    assert explained is not None and len(explained) == 5
    assert all(set(f["features"]) <= set(names) for factors in explained for f in factors)
    assert any(factors for factors in explained)  # the session ranker's SHAP values raised some of them
