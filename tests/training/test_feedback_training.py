"""Served lists as training data through the training service: extraction of the outcomes, the setting, its checks."""

from __future__ import annotations

import uuid
from datetime import timedelta

import numpy as np
import pytest
from django.core.checks import run_checks
from django.utils import timezone

from personalization.extraction import extract_feedback
from personalization.models import Event, ModelVersion, RecommendationLog
from personalization.pipeline.columns import CLICKED, EXPLORED, ITEM, LIST, POSITION, SHOWN_AT, USER
from personalization.recommenders.features import POSITION_FEATURE
from personalization.recommenders.ranker_data import FEEDBACK_COLUMNS


def _log(rec_id: str, subject: str, items: list[tuple[str, str]], at) -> RecommendationLog:
    return RecommendationLog.objects.create(id=rec_id, subject=subject, created_at=at,
                                            items=[{"item": i, "score": 1.0, "reason": r} for i, r in items])


def _event(kind: str, item: str, rec_id: str, at, visitor: str = "a", **context) -> Event:
    return Event.objects.create(event_type=kind, item_key=item, visitor_id=visitor, occurred_at=at, received_at=at,
                                recommendation_id=rec_id, context=context)


@pytest.mark.django_db
def test_extract_feedback_labels_each_shown_item_with_its_outcome():
    now = timezone.now()
    _log("r1", "v:a", [("product:1", "itemknn"), ("product:2", "exploration:epsilon"), ("product:3", "als")], now)
    _event("click", "product:1", "r1", now + timedelta(seconds=5))
    _event("add_to_cart", "product:3", "r1", now + timedelta(seconds=9))
    _event("click", "product:9", "r1", now + timedelta(seconds=9))  # not in the list: no row
    _event("view", "product:2", "r1", now + timedelta(seconds=9))  # a view is not a click
    # the tracker reported what was on screen for r2: product:6 never scrolled into view, so it was not skipped
    _log("r2", "u:5", [("product:4", "popularity"), ("product:5", "popularity"), ("product:6", "popularity")],
         now + timedelta(minutes=1))
    _event("impression", "product:4", "r2", now + timedelta(minutes=1))
    # re-ranked on the device: the tracker reports where the page showed it (1-based), which wins
    _event("impression", "product:5", "r2", now + timedelta(minutes=1), position=1)
    _event("purchase", "product:5", "r2", now + timedelta(minutes=3))
    _log("old", "v:a", [("product:1", "als")], now - timedelta(days=3))  # before the window

    frame = extract_feedback(now - timedelta(hours=1), now + timedelta(hours=1))

    assert list(frame.columns) == FEEDBACK_COLUMNS
    rows = {(r[LIST], r[ITEM]): r for r in frame.to_dict("records")}
    assert set(rows) == {("r1", "product:1"), ("r1", "product:2"), ("r1", "product:3"), ("r2", "product:4"),
                         ("r2", "product:5")}
    assert [rows[("r1", f"product:{k}")][CLICKED] for k in (1, 2, 3)] == [True, False, True]
    assert [rows[("r1", f"product:{k}")][EXPLORED] for k in (1, 2, 3)] == [False, True, False]
    assert [rows[("r1", f"product:{k}")][POSITION] for k in (1, 2, 3)] == [0, 1, 2]
    assert rows[("r2", "product:5")][CLICKED] and not rows[("r2", "product:4")][CLICKED]
    assert rows[("r2", "product:4")][USER] == "u:5"
    assert (rows[("r2", "product:4")][POSITION], rows[("r2", "product:5")][POSITION]) == (0, 0)
    assert str(frame[SHOWN_AT].dt.tz) == "UTC"


@pytest.mark.django_db
def test_extract_feedback_of_an_empty_log_is_an_empty_frame():
    frame = extract_feedback()
    assert frame.empty and list(frame.columns) == FEEDBACK_COLUMNS


def _served_lists(n_lists: int = 600, seed: int = 0) -> str:
    """Lists of 8 items served to the shop's visitors over its whole history, clicked with a chance falling with the
    position; the shop's most viewed item is never clicked. Returns that item."""
    rng = np.random.default_rng(seed)
    views = list(Event.objects.filter(event_type="view").values_list("item_key", flat=True))
    items, counts = np.unique(views, return_counts=True)
    dud = str(items[np.argmax(counts)])
    others = [str(i) for i in items if i != dud]
    events = list(Event.objects.order_by("?").values("visitor_id", "user_id", "occurred_at")[:n_lists])
    logs, clicks = [], []
    for e in events:
        subject = f"u:{e['user_id']}" if e["user_id"] else f"v:{e['visitor_id']}"
        shown = [dud, *rng.choice(others, 7, replace=False)]
        rng.shuffle(shown)
        rec_id = uuid.uuid4().hex
        at = e["occurred_at"] + timedelta(seconds=1)
        logs.append(RecommendationLog(id=rec_id, subject=subject, created_at=at,
                                      items=[{"item": i, "score": 1.0, "reason": "als"} for i in shown]))
        for position, item in enumerate(shown):
            if item != dud and rng.random() < 0.5 / (1 + position):
                clicks.append(Event(event_type="click", item_key=item, visitor_id=e["visitor_id"],
                                    user_id=e["user_id"], occurred_at=at + timedelta(seconds=3),
                                    received_at=at + timedelta(seconds=3), recommendation_id=rec_id))
    RecommendationLog.objects.bulk_create(logs)
    Event.objects.bulk_create(clicks)
    return dud


def test_training_with_impression_feedback_learns_from_the_served_lists(shop_history, settings):
    from personalization import registry
    from personalization.training import train

    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "TRAINING": {"impression_feedback": True, "choose_configuration": False}}
    _served_lists()

    version = train(ModelVersion.objects.create())

    assert version.status == ModelVersion.Status.LIVE
    assert version.params["impression_feedback"] is True
    stage1 = version.metrics["stage1"]
    assert stage1["feedback_rows"] > 100 and 0 < stage1["feedback_clicks"] < stage1["feedback_rows"]
    assert stage1["feedback_lists"] > 10
    system = registry.load_system(version)
    assert system.ranker_ is not None
    assert system.feature_names_.index(POSITION_FEATURE) in system.ranker_columns_
    assert all(len(lst) for lst in system.recommend(list(system.matrix_.user_ids[:5]), n=5))


def test_training_without_the_setting_ignores_the_served_lists(shop_history, settings):
    from personalization.training import train

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"choose_configuration": False}}
    _served_lists(n_lists=100)

    version = train(ModelVersion.objects.create())

    assert version.params["impression_feedback"] is False
    assert "feedback_rows" not in version.metrics["stage1"]


def _messages():
    return {m.id: m for m in run_checks() if m.id and m.id.startswith("personalization.")}


def test_a_setting_that_is_not_a_bool_is_an_error(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"impression_feedback": "yes"}}
    messages = _messages()
    assert "personalization.E100" in messages and "'yes'" in messages["personalization.E100"].msg


def test_feedback_without_a_recommendation_log_is_a_warning(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"impression_feedback": True},
                                "RECOMMENDATION_LOG_WRITE": "off"}
    assert "personalization.W100" in _messages()
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RECOMMENDATION_LOG_WRITE": "inline"}
    assert "personalization.W100" not in _messages()


def test_turning_feedback_on_is_compared_with_the_live_version_refitted_not_taken_as_the_same(shop_history,
                                                                                              settings):
    from personalization.training import train

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "TRAINING": {"choose_configuration": False}}
    _served_lists(n_lists=300)
    live = train(ModelVersion.objects.create())
    assert live.status == ModelVersion.Status.LIVE
    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "TRAINING": {"choose_configuration": False, "impression_feedback": True}}

    version = train(ModelVersion.objects.create(), promote_if_better=False)

    assert version.test_metrics["live_version"] == live.pk
    assert version.test_metrics["live_paired"] == "live configuration refitted on the same training events"
    assert version.test_metrics["live"]["n_users"] == version.test_metrics["system"]["n_users"]
