"""recommend() and similar_items(): the live model answers, swaps on promotion, falls back without one."""

from __future__ import annotations

import personalization
from personalization import registry
from personalization.models import Event, ModelVersion
from personalization.training import train


def _known_visitor() -> str:
    return Event.objects.exclude(item_key="").values_list("visitor_id", flat=True).first()


def test_a_known_visitor_gets_unseen_catalog_items_from_the_live_model(trained):
    visitor = _known_visitor()
    result = personalization.recommend(visitor, n=5)
    assert result.model_version == trained.pk and not result.fallback
    assert len(result.recommendation_id) == 32
    keys = result.keys()
    assert len(keys) == 5 and len(set(keys)) == 5
    assert all(k.startswith("product:") for k in keys)
    assert all(r.reason for r in result.items)
    purchased = set(Event.objects.filter(visitor_id=visitor, event_type="purchase").values_list("item_key", flat=True))
    assert not purchased & set(keys)  # items the visitor already bought are not recommended again
    assert [r.score for r in result.items] == sorted((r.score for r in result.items), reverse=True)


def test_an_unknown_visitor_still_gets_recommendations(trained):
    result = personalization.recommend("v:" + "0" * 32, n=4)
    assert len(result.keys()) == 4 and result.model_version == trained.pk


def test_exclusions_are_respected(trained):
    visitor = _known_visitor()
    first = personalization.recommend(visitor, n=3).keys()
    again = personalization.recommend(visitor, n=3, exclude=set(first)).keys()
    assert not set(first) & set(again)


def test_similar_items_exclude_the_item_itself(trained):
    item = Event.objects.filter(event_type="purchase").values_list("item_key", flat=True).first()
    similar = personalization.similar_items(item, n=4)
    assert len(similar) == 4 and item not in [r.item for r in similar]


def test_without_a_live_model_recommend_falls_back_to_popular_items(shop_history):
    result = personalization.recommend("v:nobody", n=3)
    assert result.fallback == "popularity" and result.model_version is None
    assert len(result.keys()) == 3
    assert personalization.similar_items("product:1", n=3) == []


def test_serving_switches_to_a_newly_promoted_version_without_restart(
    trained, settings, django_capture_on_commit_callbacks
):
    visitor = _known_visitor()
    assert personalization.recommend(visitor, n=3).model_version == trained.pk
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PROMOTION_MARGIN": 1.0}
    second = train(ModelVersion.objects.create())
    assert personalization.recommend(visitor, n=3).model_version == trained.pk  # not promoted: unchanged
    # The new live version is published to every process when the promotion commits.
    with django_capture_on_commit_callbacks(execute=True):
        registry.promote(second, force=True)
    assert personalization.recommend(visitor, n=3).model_version == second.pk
    with django_capture_on_commit_callbacks(execute=True):
        registry.rollback()
    assert personalization.recommend(visitor, n=3).model_version == trained.pk
