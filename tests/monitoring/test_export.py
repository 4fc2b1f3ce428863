"""Parquet export: hive-partitioned days, incremental runs, rows read back with pandas, storage aliases."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from io import StringIO
from pathlib import Path

import pandas as pd
import pytest
from django.core.management import CommandError, call_command
from django.utils import timezone

from personalization.models import Event, IngestionCounter
from personalization.monitoring.parquet_export import export
from personalization.subjects import subject_key

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 11, 20, 10, 30, tzinfo=dt_timezone.utc)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 11, day, hour, tzinfo=dt_timezone.utc)


def make_events(days: list[int], per_day: int = 3, **fields) -> list[Event]:
    rows = [Event(event_type="view", item_key=f"product:{n}", visitor_id=f"visitor-{n}", occurred_at=at(day, n),
                  received_at=at(day, n) + timedelta(seconds=1), value=float(n), source="tracker",
                  context={"device": "mobile", "ip": "10.0.0.0", "hour": n}, **fields)
            for day in days for n in range(per_day)]
    return Event.objects.bulk_create(rows)


def partitions(root: Path, table: str = "events") -> list[str]:
    return sorted(p.parent.name for p in (root / table).glob("date=*/part-0.parquet"))


def test_writes_complete_days_as_hive_partitions_that_read_back_with_pandas(tmp_path, django_user_model):
    user = django_user_model.objects.create_user("u1")
    make_events([17, 18])
    make_events([19], per_day=2, user=user)
    make_events([20])  # today: not complete, not exported
    IngestionCounter.objects.create(day=date(2026, 11, 18), name="bot_events", count=7)

    summary = export(str(tmp_path), now=NOW)

    assert partitions(tmp_path) == ["date=2026-11-17", "date=2026-11-18", "date=2026-11-19"]
    assert summary["rows"]["events"] == 8 and summary["days"]["ingestion_counters"] == ["2026-11-18"]
    frame = pd.read_parquet(tmp_path / "events")  # the date=... folders become a column
    stored = Event.objects.filter(occurred_at__lt=at(20, 0)).order_by("occurred_at")
    assert len(frame) == stored.count() == 8
    frame = frame.sort_values("occurred_at").reset_index(drop=True)
    for (_, row), event in zip(frame.iterrows(), stored, strict=True):
        assert row["event_id"] == str(event.event_id) and row["item_key"] == event.item_key
        assert row["visitor_id"] == subject_key(f"v:{event.visitor_id}")  # the artifacts' pseudonyms
        assert row["occurred_at"] == pd.Timestamp(event.occurred_at) and row["value"] == event.value
        assert str(row["date"]) == event.occurred_at.date().isoformat()
        assert json.loads(row["context"]) == {k: v for k, v in event.context.items() if k != "ip"}
    users = frame["user_id"].dropna().unique().tolist()
    assert users == [subject_key(f"u:{user.pk}")]
    counters = pd.read_parquet(tmp_path / "ingestion_counters")
    assert counters[["name", "count"]].to_dict("records") == [{"name": "bot_events", "count": 7}]
    manifest = json.loads((tmp_path / "_manifest.json").read_text())
    assert manifest["ids"] == "hmac-sha256-128" and manifest["tables"]["events"]["2026-11-19"]["rows"] == 2


def test_a_second_run_writes_only_new_or_changed_days(tmp_path):
    make_events([17, 18])
    export(str(tmp_path), now=NOW)
    first = (tmp_path / "events/date=2026-11-17/part-0.parquet").stat().st_mtime_ns

    assert export(str(tmp_path), now=NOW)["days"] == {"events": [], "ingestion_counters": [], "list_stats": []}

    make_events([20, 21])
    assert export(str(tmp_path), now=NOW + timedelta(days=2))["days"]["events"] == ["2026-11-20", "2026-11-21"]
    make_events([18], per_day=1)  # a late event for a recent day: that day is written again
    assert export(str(tmp_path), now=NOW + timedelta(days=2))["days"]["events"] == ["2026-11-18"]
    assert (tmp_path / "events/date=2026-11-17/part-0.parquet").stat().st_mtime_ns == first
    assert len(pd.read_parquet(tmp_path / "events")) == Event.objects.count() == 13


def test_raw_ids_keep_the_stored_ids_and_cannot_be_mixed_with_pseudonyms(tmp_path, django_user_model):
    user = django_user_model.objects.create_user("u1")
    make_events([18], user=user)
    export(str(tmp_path / "raw"), now=NOW, raw_ids=True)
    frame = pd.read_parquet(tmp_path / "raw" / "events")
    assert sorted(frame["visitor_id"]) == ["visitor-0", "visitor-1", "visitor-2"]
    assert set(frame["user_id"]) == {user.pk} and "10.0.0.0" in frame["context"].iloc[0]
    with pytest.raises(CommandError, match="holds an export with ids 'raw'") as error:
        call_command("personalization_export", "--to", str(tmp_path / "raw"), stdout=StringIO())
    assert error.value.returncode == 2


def test_a_storage_alias_receives_the_files(tmp_path, settings):
    settings.STORAGES = {**settings.STORAGES, "exports": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "bucket")}}}
    yesterday = timezone.now() - timedelta(days=1)
    Event.objects.create(event_type="view", item_key="product:1", visitor_id="v", occurred_at=yesterday,
                         received_at=yesterday)
    out = StringIO()
    call_command("personalization_export", "--to", "storage:exports/shop/events-archive", stdout=out)
    root = tmp_path / "bucket" / "shop" / "events-archive"
    assert partitions(root) == [f"date={yesterday.astimezone(dt_timezone.utc).date().isoformat()}"]
    assert (root / "_manifest.json").exists() and "events: 1 day(s), 1 rows" in out.getvalue()
    assert len(pd.read_parquet(root / "events")) == 1


def test_since_limits_the_days_and_small_chunks_give_the_same_rows(tmp_path):
    make_events([15, 16, 17], per_day=5)
    export(str(tmp_path), now=NOW, since=date(2026, 11, 16), chunk_size=2)
    assert partitions(tmp_path) == ["date=2026-11-16", "date=2026-11-17"]
    import pyarrow.parquet as pq

    assert pq.ParquetFile(tmp_path / "events/date=2026-11-16/part-0.parquet").metadata.num_row_groups == 3
    assert len(pd.read_parquet(tmp_path / "events")) == 10


@pytest.mark.parametrize(("args", "message"), [
    (["--since", "yesterday"], "is not a date; use YYYY-MM-DD"),
    (["--to", "storage:nope/x"], "No storage alias 'nope' in STORAGES; known: default"),
    (["--chunk-size", "0"], "chunk size is a positive number"),
])
def test_bad_arguments_are_command_errors_with_a_hint(tmp_path, args, message):
    base = ["--to", str(tmp_path)] if "--to" not in args else []
    with pytest.raises(CommandError, match=message):
        call_command("personalization_export", *base, *args, stdout=StringIO())


def test_a_file_as_target_is_refused(tmp_path):
    target = tmp_path / "file.txt"
    target.write_text("x")
    with pytest.raises(CommandError, match="is a file; give a folder"):
        call_command("personalization_export", "--to", str(target), stdout=StringIO())


def test_the_daily_list_aggregates_are_exported_and_written_again_when_recomputed(tmp_path):
    from personalization.models import ListDailyStat

    stat = ListDailyStat.objects.create(day=date(2026, 11, 18), slot="home", position=0, lists=4, impressions=12,
                                        clicks=3, revenue=9.5, visitors=4)
    assert export(str(tmp_path), now=NOW)["days"]["list_stats"] == ["2026-11-18"]
    frame = pd.read_parquet(tmp_path / "list_stats")
    assert frame[["slot", "impressions", "clicks", "revenue"]].to_dict("records") == [
        {"slot": "home", "impressions": 12, "clicks": 3, "revenue": 9.5}]
    assert export(str(tmp_path), now=NOW)["days"]["list_stats"] == []  # unchanged: not written again
    stat.clicks = 4  # a late click: the aggregation recomputed the day
    stat.save()
    assert export(str(tmp_path), now=NOW)["days"]["list_stats"] == ["2026-11-18"]
    assert pd.read_parquet(tmp_path / "list_stats")["clicks"].tolist() == [4]
