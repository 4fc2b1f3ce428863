"""The engagement score: a logistic of RFM features, blended with the live ranker's propensity when one is live."""

from __future__ import annotations

from datetime import timedelta

import pytest

from personalization.delivery.notifications.scoring import engagement, rfm_score

from .conftest import NOW, add_event


def test_rfm_score_is_a_probability_that_falls_with_recency_and_rises_with_activity():
    assert rfm_score(0, 0, 0, 0) == 0.0  # no events: nothing to go on
    fresh, stale = rfm_score(1, 10, 3, 0), rfm_score(30, 10, 3, 0)
    assert 0.0 < stale < fresh < 1.0
    assert rfm_score(1, 3, 1, 0) < rfm_score(1, 30, 1, 0) < rfm_score(1, 30, 5, 0) < rfm_score(1, 30, 5, 100)
    assert rfm_score(1, 10, 3, 0) == pytest.approx(0.70, abs=0.02)  # the documented reference points
    assert rfm_score(30, 2, 1, 0) == pytest.approx(0.01, abs=0.005)


def test_an_engaged_user_scores_above_an_inactive_one_and_a_user_without_events_scores_zero(
    engaged, inactive, make_user
):
    newcomer = make_user("newcomer")
    scores = engagement([engaged, inactive, newcomer], now=NOW)
    assert scores[engaged.pk].score > 0.8 > 0.01 > scores[inactive.pk].score > 0.0
    assert scores[newcomer.pk].score == 0.0
    assert scores[engaged.pk].model is None  # no live model: the RFM score alone
    assert scores[engaged.pk].features["user_monetary"] == 30.0


def test_events_after_now_do_not_count(engaged, catalog):
    later = engagement([engaged], now=NOW - timedelta(days=30))[engaged.pk]
    assert later.score == 0.0  # every event of the planted history lies after that "now"
    add_event(engaged, "view", catalog[5].item_key, NOW - timedelta(days=31))
    assert engagement([engaged], now=NOW - timedelta(days=30))[engaged.pk].score > 0.0


def test_score_weights_are_settings(engaged, settings):
    before = engagement([engaged], now=NOW)[engaged.pk].score
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "NOTIFICATION_SCORE_WEIGHTS": {"intercept": -8.0}}
    after = engagement([engaged], now=NOW)[engaged.pk].score
    assert after < before


@pytest.mark.slow
def test_with_a_live_model_the_rankers_propensity_is_blended_in(trained):
    from django.contrib.auth import get_user_model
    from django.db.models import Count, Max

    from personalization.models import Event

    rows = (Event.objects.filter(user__isnull=False).values("user_id")
            .annotate(n=Count("id"), last=Max("occurred_at")).order_by("-n"))
    assert len(rows) >= 2
    now = max(r["last"] for r in rows)
    users = get_user_model().objects.in_bulk([r["user_id"] for r in rows])
    most, least = users[rows[0]["user_id"]], users[rows[len(rows) - 1]["user_id"]]
    scores = engagement([most, least], now=now)
    top = scores[most.pk]
    assert top.model is not None and 0.0 < top.model <= 1.0  # the ranker's probability for its best candidate
    assert top.score == pytest.approx(0.5 * top.rfm + 0.5 * top.model)
    assert 0.0 <= scores[least.pk].score <= 1.0
    assert top.rfm >= scores[least.pk].rfm
