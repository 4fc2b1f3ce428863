"""The default background writer of RecommendationLog rows: nothing is written on the request path."""

from __future__ import annotations

import uuid

import pytest

from personalization import serving
from personalization.models import RecommendationLog
from personalization.serving.log import log_writer


@pytest.mark.django_db(transaction=True)
def test_log_rows_are_written_by_the_background_thread(settings, django_assert_num_queries):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RECOMMENDATION_LOG_WRITE": "background"}
    results = [serving.Result([serving.Recommendation(f"product:{i}", 1.0 / (i + 1), "popular")],
                              uuid.uuid4().hex, None, "popularity", "default") for i in range(5)]
    with django_assert_num_queries(0):  # the caller never waits for the database
        for result in results:
            serving.log_recommendation(result, "v:" + "c" * 32)
    assert log_writer.flush(10)
    rows = RecommendationLog.objects.filter(pk__in=[r.recommendation_id for r in results])
    assert rows.count() == 5 and {r.fallback for r in rows} == {"popularity"}


@pytest.mark.django_db
def test_logging_can_be_switched_off(settings, django_capture_on_commit_callbacks):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "RECOMMENDATION_LOG_WRITE": "off"}
    with django_capture_on_commit_callbacks(execute=True):
        serving.log_recommendation(serving.Result([], "0" * 32, None, "popularity", "default"), "v:x")
    assert not RecommendationLog.objects.exists()
