"""Importing history: idempotent, skips and counts bad rows, maps users; the command explains bad input."""

from __future__ import annotations

import uuid
from io import StringIO

import pandas as pd
import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from personalization.importing import import_events
from personalization.models import Event

pytestmark = pytest.mark.django_db


def frame(**extra) -> pd.DataFrame:
    data = {
        "user": ["17850", "17850", "13047", "13047"],
        "item_id": ["85123A", "71053", "85123A", "85123A"],
        "event": ["purchase", "purchase", "view", "view"],
        "timestamp": pd.to_datetime(["2011-01-01 10:00", "2011-01-01 10:00", "2011-01-02 09:00",
                                     "2011-01-02 09:00"], utc=True),
        "value": [15.3, 20.34, None, None],
        "country": ["United Kingdom", "United Kingdom", "France", "France"],
    }
    data.update(extra)
    return pd.DataFrame(data)


def test_import_writes_events_and_is_idempotent():
    report = import_events(frame(), source="test-shop", progress=False)
    assert (report.rows, report.imported, report.duplicates, report.skipped_total) == (4, 4, 0, 0)
    rows = list(Event.objects.order_by("occurred_at", "item_key", "id"))
    assert len(rows) == 4  # the two identical views are two events (occurrence number in the identity)
    first = rows[0]
    assert first.item_key in {"product:85123A", "product:71053"}
    assert first.visitor_id == "17850" and first.user_id is None
    assert first.source == Event.Source.IMPORT
    assert first.context["country"] == "United Kingdom" and first.context["dataset"] == "test-shop"
    assert first.occurred_at == pd.Timestamp("2011-01-01 10:00", tz="UTC")
    assert Event.objects.get(item_key="product:71053").value == pytest.approx(20.34)

    again = import_events(frame(), source="test-shop", progress=False)
    assert (again.imported, again.duplicates) == (0, 4)
    assert Event.objects.count() == 4
    # the ids are a function of the source and the row: another source stores its own copy
    other = import_events(frame(), source="other-shop", progress=False)
    assert other.imported == 4 and Event.objects.count() == 8
    ids = set(Event.objects.values_list("event_id", flat=True))
    assert all(isinstance(i, uuid.UUID) and i.version == 5 for i in ids)


def test_dry_run_writes_nothing():
    report = import_events(frame(), source="dry", progress=False, dry_run=True)
    assert report.imported == 4 and report.dry_run and "would import" in report.summary()
    assert Event.objects.count() == 0


def test_bad_rows_are_skipped_and_counted():
    bad = pd.DataFrame({
        "user": ["a", "", "c", "d", "e", "f", "g"],
        "item": ["1", "2", "3", "4", "has space", "", "7"],
        "event": ["view", "view", "teleport", "view", "view", "purchase", "search"],
        "timestamp": ["2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "yesterday",
                      "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z", "2024-01-01T00:00:00Z"],
        "value": ["1", "2", "3", "4", "5", "6", "nope"],
    })
    report = import_events(bad, source="bad", progress=False)
    assert report.skipped == {"missing_user": 1, "unknown_event": 1, "bad_timestamp": 1, "bad_item": 1,
                              "missing_item": 1, "bad_value": 1}
    assert report.imported == 1 and Event.objects.get().item_key == "product:1"


def test_user_field_links_django_users(django_user_model):
    alice = django_user_model.objects.create_user("17850")
    report = import_events(frame(), source="users", user_field="username", progress=False)
    assert report.users_matched == 1 and report.events_with_user == 2
    assert set(Event.objects.filter(user=alice).values_list("visitor_id", flat=True)) == {"17850"}
    assert Event.objects.filter(user__isnull=True).count() == 2


def test_missing_columns_and_unknown_item_type():
    with pytest.raises(ValueError, match="missing column.*timestamp"):
        import_events(frame().drop(columns=["timestamp"]), progress=False)
    with pytest.raises(ValueError, match="ITEM_TYPES"):
        import_events(frame(), item_type="movie", progress=False)


def test_event_key_column_gives_stable_ids():
    events = frame(event_key=["a", "b", "c", "d"])
    import_events(events, source="keyed", progress=False)
    shifted = events.assign(timestamp=events["timestamp"] + pd.Timedelta(days=1))
    assert import_events(shifted, source="keyed", progress=False).imported == 0
    assert Event.objects.count() == 4


# --- the command ----------------------------------------------------------------------------------------------

def run(*args) -> str:
    out = StringIO()
    call_command("personalization_import", *args, "--no-progress", stdout=out)
    return out.getvalue()


@pytest.fixture
def orders_csv(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text(
        "customer,sku,ordered_at,amount\n"
        "c1,A1,2024-01-01T10:00:00Z,3.5\n"
        "c1,A2,2024-01-01T11:00:00Z,oops\n"
        "c2,A1,2024-01-02T10:00:00Z,7\n"
    )
    return path


CSV_ARGS = ["--user-col", "customer", "--item-col", "sku", "--time-col", "ordered_at", "--value-col", "amount",
            "--event-type", "purchase"]


def test_command_imports_csv_and_reruns_idempotently(orders_csv):
    out = run("--format", "csv", str(orders_csv), *CSV_ARGS)
    assert "imported 2 new events" in out and "skipped (bad_value): 1" in out
    assert Event.objects.filter(event_type="purchase").count() == 2
    out = run("--format", "csv", str(orders_csv), *CSV_ARGS)
    assert "imported 0 new events, 2 already present" in out
    assert Event.objects.count() == 2


def test_command_limit_and_dry_run(orders_csv):
    out = run("--format", "csv", str(orders_csv), *CSV_ARGS, "--limit", "1", "--dry-run")
    assert "1 rows read, would import 1 new events" in out and "Dry run" in out
    assert Event.objects.count() == 0


def test_command_missing_file(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        run("--format", "csv", str(tmp_path / "nope.csv"))


def test_command_missing_column_has_a_hint(orders_csv):
    with pytest.raises(CommandError, match=r"missing column.*'user' \(--user-col\).*Its columns are: customer"):
        run("--format", "csv", str(orders_csv))
    with pytest.raises(CommandError, match="--event-type"):
        run("--format", "csv", str(orders_csv), "--user-col", "customer", "--item-col", "sku",
            "--time-col", "ordered_at")


def test_command_unknown_format(orders_csv):
    with pytest.raises(CommandError, match="Unknown format 'xlsx'.*online-retail"):
        run("--format", "xlsx", str(orders_csv))


def test_command_dataset_with_missing_columns(tmp_path):
    path = tmp_path / "clicks.txt"
    path.write_text("SessionId\tTime\n1\t1396437466.94\n")
    with pytest.raises(CommandError, match="ItemId"):
        run("--format", "yoochoose", str(path))


def test_command_reads_a_dataset(tmp_path):
    path = tmp_path / "clicks.txt"
    path.write_text("SessionId\tItemId\tTime\n1\t10\t1396437466.94\n1\t11\t1396437500.5\n2\t10\t1396437600\n")
    out = run("--format", "yoochoose", str(path))
    assert "imported 3 new events" in out
    assert set(Event.objects.values_list("visitor_id", flat=True)) == {"1", "2"}
    assert run("--format", "yoochoose", str(path)).count("imported 0 new events") == 1
