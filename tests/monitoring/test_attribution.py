"""Attribution of events to served lists and the daily ListDailyStat rows, on a hand-made event sequence."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta

import pytest

from personalization.models import Event, ListDailyStat, RecommendationLog
from personalization.monitoring.attribution import aggregate_list_stats
from personalization.tasks import aggregate_list_stats as aggregate_task

DAY = date(2026, 3, 10)
T0 = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def served(rec_id: str, subject: str, items: list[str], at: datetime, *, slot: str = "home", version=None,
           explored: tuple[int, ...] = (), experiment=None, arm: str = "") -> RecommendationLog:
    rows = [{"item": key, "score": 1.0 - i / 10, "reason": "exploration:epsilon" if i in explored else "als"}
            for i, key in enumerate(items)]
    return RecommendationLog.objects.create(id=rec_id, subject=subject, slot=slot, model_version_id=version,
                                            items=rows, created_at=at, experiment_id=experiment, arm=arm)


def event(kind: str, item: str, at: datetime, *, visitor: str = "alice", user=None, rec: str = "",
          value: float | None = None) -> Event:
    return Event.objects.create(event_id=uuid.uuid4(), event_type=kind, item_key=item, visitor_id=visitor,
                                user=user, occurred_at=at, received_at=at, value=value, recommendation_id=rec)


def rows() -> dict[tuple, dict]:
    return {(r.slot, r.model_version_id, r.arm, r.explored, r.position): {
        "lists": r.lists, "impressions": r.impressions, "clicks": r.clicks, "carts": r.carts,
        "purchases": r.purchases, "revenue": r.revenue, "visitors": r.visitors}
        for r in ListDailyStat.objects.filter(day=DAY)}


@pytest.fixture
def sequence(db):
    """Two visitors, three lists on DAY; outcomes inside and outside the session and the attribution window."""
    served("l1", "v:alice", ["product:1", "product:2", "product:3"], T0, version=7, explored=(2,))
    served("l2", "v:bob", ["product:1", "product:4", "product:5"], T0 + timedelta(minutes=5), version=7)
    served("l3", "v:alice", ["product:9", "product:2"], T0 + timedelta(hours=2), version=7)
    m = timedelta(minutes=1)
    event("impression", "product:1", T0 + m, rec="l1")
    event("impression", "product:1", T0 + m, rec="l1")  # the same position seen twice counts once
    event("impression", "product:2", T0 + m, rec="l1")
    event("impression", "product:3", T0 + m, rec="l1")
    event("click", "product:1", T0 + 2 * m, rec="l1")  # within the session
    event("click", "product:3", T0 + 45 * m, rec="l1")  # after CLICK_SESSION_MINUTES: not counted
    event("add_to_cart", "product:1", T0 + 3 * m, rec="l1")
    event("purchase", "product:1", T0 + 23 * 60 * m, rec="l1", value=20.0)  # within 24 h
    event("purchase", "product:1", T0 + 25 * 60 * m, rec="l1", value=99.0)  # after the window: not counted
    event("click", "product:1", T0 + 6 * m, rec="l2", visitor="mallory")  # not bob: not counted
    event("impression", "product:4", T0 + 6 * m, rec="l2", visitor="bob")
    event("click", "product:4", T0 + 7 * m, rec="l2", visitor="bob")
    event("impression", "product:5", T0 + 50 * m, rec="l2", visitor="bob")  # after the session: not counted
    # no recommendation id: the latest list shown to alice with product:2 within the window (l3, position 1)
    event("purchase", "product:2", T0 + 5 * 60 * m, value=5.5)
    # no recommendation id, item never shown to bob: not attributed
    event("purchase", "product:3", T0 + 60 * m, visitor="bob", value=7.0)


def test_a_day_counts_each_outcome_by_list_position_and_exploration(sequence):
    result = aggregate_list_stats()
    assert result["days"] >= 1
    got = rows()
    assert got[("home", 7, "", False, 0)] == {"lists": 3, "impressions": 1, "clicks": 1, "carts": 1,
                                              "purchases": 1, "revenue": 20.0, "visitors": 2}
    # l1#1 seen; l2#1 seen and clicked by bob; l3#1 bought without a recommendation id
    assert got[("home", 7, "", False, 1)] == {"lists": 3, "impressions": 2, "clicks": 1, "carts": 0,
                                              "purchases": 1, "revenue": 5.5, "visitors": 2}
    assert got[("home", 7, "", True, 2)] == {"lists": 1, "impressions": 1, "clicks": 0, "carts": 0,
                                             "purchases": 0, "revenue": 0.0, "visitors": 1}
    assert got[("home", 7, "", False, 2)]["lists"] == 1  # bob's third position, not explored ...
    assert got[("home", 7, "", False, 2)]["impressions"] == 0  # ... seen only after the session
    assert sum(r["purchases"] for r in got.values()) == 2  # the late and the unshown purchase count nowhere


def test_rerunning_a_day_gives_the_same_numbers(sequence):
    aggregate_list_stats()
    first = rows()
    aggregate_list_stats([DAY])
    aggregate_task.delay(days=[DAY.isoformat()])  # the Celery task (eager in the tests) with an explicit day
    assert rows() == first
    assert ListDailyStat.objects.filter(day=DAY).count() == len(first)  # replaced, not added


def test_new_events_are_counted_incrementally_from_the_watermark(sequence):
    aggregate_list_stats()
    before = rows()[("home", 7, "", False, 1)]
    event("click", "product:2", T0 + timedelta(minutes=4), rec="l1")
    result = aggregate_list_stats()
    assert result["last_event_id"] == Event.objects.order_by("-id").first().id
    after = rows()[("home", 7, "", False, 1)]
    assert after["clicks"] == before["clicks"] + 1
    assert aggregate_list_stats()["rows"] >= 0 and rows()[("home", 7, "", False, 1)] == after  # nothing new


def test_the_attribution_window_is_a_setting(sequence, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "ATTRIBUTION_WINDOW_HOURS": 48}
    aggregate_list_stats([DAY])
    assert rows()[("home", 7, "", False, 0)]["purchases"] == 2  # the purchase after 25 h counts now
    assert rows()[("home", 7, "", False, 0)]["revenue"] == 119.0


def test_a_purchase_without_recommendation_id_goes_to_one_list_only(db):
    served("a", "v:alice", ["product:1"], T0)
    served("b", "v:alice", ["product:1"], T0 + timedelta(hours=1))
    event("purchase", "product:1", T0 + timedelta(hours=3), value=10.0)
    aggregate_list_stats([DAY])
    stat = ListDailyStat.objects.get(day=DAY, position=0)
    assert (stat.lists, stat.purchases, stat.revenue) == (2, 1, 10.0)


def test_purchases_across_midnight_go_to_their_own_subjects_lists(db):
    served("early", "v:alice", ["product:1"], T0 + timedelta(hours=11))
    served("late", "u:5", ["product:1"], T0 + timedelta(hours=13))  # next day (UTC), the same person signed in
    event("purchase", "product:1", T0 + timedelta(hours=14), user=None, visitor="alice", value=3.0)
    event("purchase", "product:1", T0 + timedelta(hours=15), visitor="", value=4.0,
          user=_user(5))
    aggregate_list_stats()
    assert ListDailyStat.objects.get(day=DAY).purchases == 1  # alice's, the only list that showed it to her
    assert ListDailyStat.objects.get(day=DAY + timedelta(days=1)).revenue == 4.0


def _user(pk: int):
    from django.contrib.auth import get_user_model

    return get_user_model().objects.create(pk=pk, username=f"user{pk}")


def test_ab_arms_and_experiments_are_dimensions(db):
    served("x", "v:alice", ["product:1"], T0, experiment=3, arm="A", version=1)
    served("y", "v:bob", ["product:1"], T0, experiment=3, arm="B", version=2)
    event("click", "product:1", T0 + timedelta(minutes=1), visitor="bob", rec="y")
    aggregate_list_stats([DAY])
    by_arm = {r.arm: r for r in ListDailyStat.objects.filter(day=DAY)}
    assert (by_arm["A"].model_version_id, by_arm["A"].clicks) == (1, 0)
    assert (by_arm["B"].model_version_id, by_arm["B"].experiment_id, by_arm["B"].clicks) == (2, 3, 1)


def test_the_beat_schedule_runs_the_task_every_10_minutes():
    from celery import current_app

    from personalization.schedules import BEAT_SCHEDULE

    entry = BEAT_SCHEDULE["personalization-aggregate-list-stats"]
    assert entry == {"task": "personalization.aggregate_list_stats", "schedule": 600.0}
    assert entry["task"] in current_app.tasks
