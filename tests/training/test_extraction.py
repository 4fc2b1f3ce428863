"""extract_events: PostgreSQL's binary COPY path (chunked, over parallel connections) gives what values_list gives."""

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
from django.db import connection

from personalization import extraction
from personalization.models import Event
from personalization.pipeline.columns import COUNTRY, DEVICE, EVENT, ITEM, TIMESTAMP, USER, VALUE

# The COPY path needs PostgreSQL: these run in the production-configuration run (make test-prod), are deselected
# from the embedded one (-m "not integration"), and fail loudly (not skip) when run on another database.
postgres = pytest.mark.integration


@pytest.fixture(autouse=True)
def _on_postgresql(request):
    if request.node.get_closest_marker("integration") and connection.vendor != "postgresql":
        pytest.fail("This test needs PostgreSQL: run it with DATABASE_URL=postgres://... (make test-prod).")
PARIS = ZoneInfo("Europe/Paris")
T0 = datetime(2024, 3, 1, 12, 0, 0, 123456, tzinfo=PARIS)


@pytest.fixture
def events(django_user_model):
    """Users and visitors, full, empty and missing context, values and none, odd item keys, two time zones."""
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    contexts = [{"device": "mobile", "country": "GB"}, {}, {"device": "", "country": "FR"}, {"device": "tablet"},
                {"country": None, "device": "desktop", "other": 1}]
    items = ["product:1", "product:22", "produit:é", "商品:7", "product:" + "x" * 80, ""]
    rows = []
    for i in range(40):
        occurred = T0 + timedelta(minutes=37 * i + i * i, microseconds=i)
        rows.append(Event(
            event_type=["view", "add_to_cart", "purchase"][i % 3], item_key=items[i % len(items)],
            visitor_id=f"{i % 7:016x}", user_id=[None, alice.pk, None, bob.pk][i % 4],
            occurred_at=occurred if i % 2 else occurred.astimezone(ZoneInfo("UTC")), received_at=occurred,
            value=[None, 12.5, 0.0, 1e-7][i % 4], context=contexts[i % len(contexts)], source="import",
        ))
    Event.objects.bulk_create(rows)
    return rows


def canonical(frame):
    return frame.sort_values([TIMESTAMP, USER, ITEM, EVENT]).reset_index(drop=True)


def test_values_list_path_gives_the_documented_frame(db, events):
    frame = extraction._extract_rows(None, None)
    assert len(frame) == sum(1 for e in events if e.item_key)
    assert {c: str(frame[c].dtype) for c in (TIMESTAMP, VALUE)} == {TIMESTAMP: "datetime64[us, UTC]", VALUE: "float64"}
    for column in (USER, ITEM, EVENT, DEVICE, COUNTRY):
        categories = frame[column].cat.categories
        assert categories.dtype == "str" and list(categories) == sorted(categories)
    assert "" not in frame[DEVICE].cat.categories and frame[DEVICE].isna().any()
    assert set(frame[USER].str[:2]) == {"u:", "v:"}


@postgres
def test_copy_gives_what_values_list_gives(db, events):
    since, until = T0 + timedelta(hours=1), T0 + timedelta(hours=20)
    for window in [(None, None), (since, until), (since, None), (None, until)]:
        copied = extraction._extract_copy("default", *window)
        listed = extraction._extract_rows(*window)
        pd.testing.assert_frame_equal(canonical(copied), canonical(listed))
    assert len(extraction.time_slices(connection, None, None)) == 1  # inside the test's transaction: one connection


@postgres
@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("analyzed", [False, True])
def test_copy_in_chunks_over_parallel_connections_gives_the_same_frame(events, monkeypatch, settings, analyzed):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION,
                                "TRAINING": {**settings.PERSONALIZATION.get("TRAINING", {}), "extract_connections": 3}}
    monkeypatch.setattr(extraction, "PARALLEL_MIN_ROWS", float("-inf"))
    monkeypatch.setattr(extraction, "FIRST_CHUNK_ROWS", 1)
    monkeypatch.setattr(extraction, "COPY_CHUNK_ROWS", 4)
    if analyzed:  # the slices are cut at the planner's quantiles instead of equal time steps
        with connection.cursor() as cursor:
            cursor.execute(f"ANALYZE {Event._meta.db_table}")
    slices = extraction.time_slices(connection, None, None)
    assert len(slices) == 3 and slices[0][0] is None and slices[-1][1] is None
    cuts = {slices[0][1], slices[1][1]}
    assert (cuts <= {e.occurred_at for e in events}) == analyzed  # quantiles are event times; time steps are not
    copied = []
    real = extraction._copy_slice
    monkeypatch.setattr(extraction, "_copy_slice", lambda *args: copied.append(real(*args)) or copied[-1])
    extracted = extraction.extract_events()
    assert len(copied) == 3 and sum(len(chunks) for chunks in copied) > 6
    pd.testing.assert_frame_equal(canonical(extracted), canonical(extraction._extract_rows(None, None)))
