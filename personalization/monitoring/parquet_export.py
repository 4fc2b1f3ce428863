"""Export events and daily aggregates as Parquet files, partitioned by UTC day, into any Django storage.

Layout (hive style, readable by pandas, pyarrow, DuckDB, Spark)::

    <target>/events/date=2026-12-01/part-0.parquet
    <target>/ingestion_counters/date=2026-12-01/part-0.parquet
    <target>/_manifest.json

A run writes the complete UTC days (today is left out until it is over). The manifest records each written day
with a fingerprint (rows, or for aggregates the sum of their counts); the next run writes the days not written yet,
and rewrites a recent day (within MAX_EVENT_AGE_SECONDS, how late tracking still accepts an event) whose
fingerprint has changed, e.g. because late events arrived. Older days are final unless ``full`` asks to rewrite.
Rows are read in chunks and each chunk becomes one Parquet row group of a temporary file, which the storage then
copies: memory stays bounded whatever the size of a day. Subject ids are pseudonymised like model artifacts
(:mod:`personalization.subjects`) unless ``raw_ids``.

To export another table, add an :class:`ExportTable` to :data:`TABLES`.
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from datetime import timezone as dt_timezone
from typing import Any

from django.core.files import File
from django.core.files.base import ContentFile
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.db import connections, router
from django.db.models import BigIntegerField, Count, F, Func, Sum, TextField, Value
from django.db.models.functions import Cast, TruncDate
from django.utils import timezone

from personalization.conf import settings
from personalization.models import Event, IngestionCounter, ListDailyStat
from personalization.monitoring.counters import day_bounds, persist_counters
from personalization.subjects import FORMAT, subject_key

MANIFEST = "_manifest.json"
MANIFEST_VERSION = 1
CHUNK_SIZE = 50_000


class ExportError(ValueError):
    """A target or an option that cannot be used; the message says how to fix it."""


def _pyarrow() -> Any:
    try:
        import pyarrow
        import pyarrow.parquet  # noqa: F401
    except ImportError as exc:  # pragma: no cover - pyarrow is in requirements.txt
        raise ExportError("Parquet export needs pyarrow: pip install 'django-personalization[export]'.") from exc
    return pyarrow


@dataclass(frozen=True)
class ExportTable:
    """One exported table: its rows of a UTC day, their Arrow schema, and a fingerprint per day."""

    name: str
    schema: Callable[[bool], Any]  # raw_ids -> pyarrow.Schema
    rows: Callable[[date, bool, int], Iterator[dict[str, list[Any]]]]  # day, raw_ids, chunk size -> columns
    fingerprints: Callable[[date, date], dict[date, int]]  # first, last day -> {day: fingerprint}


# --- events ------------------------------------------------------------------------------------------------------

_EVENT_FIELDS = ("event_id", "event_type", "item_key", "visitor_id", "user_id", "occurred_at", "received_at", "value",
                 "recommendation_id", "source", "context")


def _events_schema(raw_ids: bool) -> Any:
    pa = _pyarrow()
    return pa.schema([
        ("event_id", pa.string()), ("event_type", pa.string()), ("item_key", pa.string()),
        ("visitor_id", pa.string()), ("user_id", pa.int64() if raw_ids else pa.string()),
        ("occurred_at", pa.timestamp("us", tz="UTC")), ("received_at", pa.timestamp("us", tz="UTC")),
        ("value", pa.float64()), ("recommendation_id", pa.string()), ("source", pa.string()),
        ("context", pa.string()),  # JSON text: its keys vary by source
    ])


class _WithoutKey(Func):
    """The JSON text of a JSON column without one top-level key: PostgreSQL's ``-``, elsewhere ``JSON_REMOVE``
    (SQLite, MySQL, MariaDB; a database without it raises rather than export the key)."""

    output_field = TextField()

    def __init__(self, column: str, key: str) -> None:
        super().__init__(F(column), Value(f"$.{key}"), function="JSON_REMOVE")
        self.key = key

    def as_postgresql(self, compiler: Any, connection: Any, **extra: Any) -> Any:
        column = self.source_expressions[0]
        return Func(column, Value(self.key), template="(%(expressions)s)::text", arg_joiner=" - ",
                    output_field=TextField()).as_sql(compiler, connection)


class _EpochMicros(Func):
    """A timestamp as whole microseconds since 1970 (PostgreSQL): Arrow takes the integers as they are, where
    parsing timestamps in Python took half of an export's time."""

    template = "(EXTRACT(EPOCH FROM %(expressions)s) * 1000000)::bigint"
    output_field = BigIntegerField()


def _event_rows(day: date, raw_ids: bool, chunk_size: int) -> Iterator[dict[str, list[Any]]]:
    """Columns of a day's events, ``chunk_size`` rows at a time. The context is read as JSON text (no parsing in
    Python); without raw ids the truncated IP leaves it in the database's own JSON functions."""
    start, end = day_bounds(day)
    fields: dict[str, Any] = {"context_text": Cast("context", TextField()) if raw_ids
                              else _WithoutKey("context", "ip")}
    names = [*_EVENT_FIELDS[:-1], "context_text"]
    if connections[router.db_for_read(Event)].vendor == "postgresql":
        fields.update(event_text=Cast("event_id", TextField()), occurred_us=_EpochMicros("occurred_at"),
                      received_us=_EpochMicros("received_at"))
        names = [{"event_id": "event_text", "occurred_at": "occurred_us", "received_at": "received_us"}.get(n, n)
                 for n in names]
    rows = (Event.objects.filter(occurred_at__gte=start, occurred_at__lt=end).order_by("occurred_at", "id")
            .annotate(**fields).values_list(*names))
    pseudonyms: dict[str, str] = {}

    def pseudonym(subject: str) -> str:
        value = pseudonyms.get(subject)
        if value is None:
            value = pseudonyms[subject] = subject_key(subject)
        return value

    columns: dict[str, list[Any]] = {name: [] for name in _EVENT_FIELDS}
    appenders = [columns[name].append for name in _EVENT_FIELDS]
    size = 0
    for row in rows.iterator(chunk_size=min(chunk_size, 10_000)):
        row = list(row)
        row[0] = str(row[0])
        if not raw_ids:
            row[3] = pseudonym(f"v:{row[3]}") if row[3] else ""
            row[4] = pseudonym(f"u:{row[4]}") if row[4] is not None else None
        for append, value in zip(appenders, row, strict=True):
            append(value)
        size += 1
        if size >= chunk_size:
            yield columns
            columns = {name: [] for name in _EVENT_FIELDS}
            appenders = [columns[name].append for name in _EVENT_FIELDS]
            size = 0
    if size:
        yield columns


def _event_fingerprints(first: date, last: date) -> dict[date, int]:
    start, end = day_bounds(first)[0], day_bounds(last)[1]
    return dict(Event.objects.filter(occurred_at__gte=start, occurred_at__lt=end).order_by()
                .annotate(day=TruncDate("occurred_at", tzinfo=dt_timezone.utc))
                .values("day").annotate(n=Count("id")).values_list("day", "n"))


# --- ingestion counters --------------------------------------------------------------------------------------------

def _counters_schema(raw_ids: bool) -> Any:
    pa = _pyarrow()
    return pa.schema([("day", pa.date32()), ("name", pa.string()), ("count", pa.int64())])


def _counter_rows(day: date, raw_ids: bool, chunk_size: int) -> Iterator[dict[str, list[Any]]]:
    rows = list(IngestionCounter.objects.filter(day=day).order_by("name").values_list("day", "name", "count"))
    if rows:
        yield {"day": [r[0] for r in rows], "name": [r[1] for r in rows], "count": [r[2] for r in rows]}


def _counter_fingerprints(first: date, last: date) -> dict[date, int]:
    return dict(IngestionCounter.objects.filter(day__gte=first, day__lte=last).order_by().values("day")
                .annotate(n=Sum("count")).values_list("day", "n"))


# --- the learning loop's daily list aggregates (personalization.aggregate_list_stats) -----------------------------

_STAT_COUNTS = ("lists", "impressions", "clicks", "carts", "purchases", "visitors")


def _list_stats_schema(raw_ids: bool) -> Any:
    pa = _pyarrow()
    return pa.schema([("day", pa.date32()), ("slot", pa.string()), ("model_version", pa.int64()),
                      ("experiment", pa.int64()), ("arm", pa.string()), ("explored", pa.bool_()),
                      ("position", pa.int32()), *((name, pa.int64()) for name in _STAT_COUNTS),
                      ("revenue", pa.float64())])


def _list_stat_rows(day: date, raw_ids: bool, chunk_size: int) -> Iterator[dict[str, list[Any]]]:
    fields = ("day", "slot", "model_version_id", "experiment_id", "arm", "explored", "position", *_STAT_COUNTS,
              "revenue")
    rows = list(ListDailyStat.objects.filter(day=day).order_by("slot", "model_version_id", "arm", "explored",
                                                                  "position").values_list(*fields))
    if rows:
        names = [f.removesuffix("_id") for f in fields]
        yield {name: [r[i] for r in rows] for i, name in enumerate(names)}


def _list_stat_fingerprints(first: date, last: date) -> dict[date, int]:
    """A day's rows are recomputed in place as late outcomes arrive: the fingerprint is their sum of counts."""
    totals = (ListDailyStat.objects.filter(day__gte=first, day__lte=last).order_by().values("day")
              .annotate(**{name: Sum(name) for name in _STAT_COUNTS}))
    return {row["day"]: sum(int(row[name] or 0) * 31 ** i for i, name in enumerate(_STAT_COUNTS)) for row in totals}


#: What an export writes, in order. Add a table here (name, schema, rows of a day, fingerprints) to export it.
TABLES: list[ExportTable] = [
    ExportTable("events", _events_schema, _event_rows, _event_fingerprints),
    ExportTable("ingestion_counters", _counters_schema, _counter_rows, _counter_fingerprints),
    ExportTable("list_stats", _list_stats_schema, _list_stat_rows, _list_stat_fingerprints),
]


# --- targets and the manifest --------------------------------------------------------------------------------------

@dataclass
class Target:
    """Where files go: a storage and a folder prefix inside it."""

    storage: Storage
    prefix: str
    label: str

    def path(self, name: str) -> str:
        return f"{self.prefix}/{name}" if self.prefix else name

    def write(self, name: str, content: Any) -> None:
        """Write (replace) one file."""
        path = self.path(name)
        if self.storage.exists(path):
            self.storage.delete(path)
        saved = self.storage.save(path, content)
        if saved != path:  # a storage that renames instead of replacing would break the layout
            raise ExportError(f"The storage saved {path!r} as {saved!r}; use a storage that can replace files.")


def resolve_target(to: str) -> Target:
    """``storage:<alias>/<prefix>`` (a STORAGES alias, e.g. an S3 storage of django-storages) or a local folder."""
    if not to or not to.strip():
        raise ExportError("Give a target: a folder path, or storage:<alias>/<prefix> for a STORAGES alias.")
    if to.startswith("storage:"):
        alias, _, prefix = to[len("storage:"):].partition("/")
        from django.conf import settings as django_settings

        aliases = sorted(getattr(django_settings, "STORAGES", {}) or {})
        if alias not in aliases:
            raise ExportError(f"No storage alias {alias!r} in STORAGES; known: {', '.join(aliases) or 'none'}. "
                              "E.g. --to storage:exports/personalization.")
        return Target(storages[alias], prefix.strip("/"), to)
    import os

    folder = os.path.abspath(os.path.expanduser(to))
    if os.path.exists(folder) and not os.path.isdir(folder):
        raise ExportError(f"{folder} is a file; give a folder (it is created when missing).")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise ExportError(f"Cannot create the folder {folder}: {exc}.") from exc
    return Target(FileSystemStorage(location=folder), "", folder)


def read_manifest(target: Target) -> dict[str, Any]:
    """The target's manifest (an empty one for a new target)."""
    path = target.path(MANIFEST)
    if not target.storage.exists(path):
        return {"version": MANIFEST_VERSION, "ids": None, "tables": {}}
    with target.storage.open(path, "rb") as handle:
        try:
            manifest = json.loads(handle.read().decode())
        except ValueError as exc:
            raise ExportError(f"{path} in {target.label} is not valid JSON; move it away to export anew.") from exc
    manifest.setdefault("tables", {})
    return manifest


# --- the export ----------------------------------------------------------------------------------------------------

def _write_day(table: ExportTable, target: Target, day: date, raw_ids: bool, chunk_size: int) -> tuple[int, str]:
    """One day's partition of a table (an empty file for an empty day); returns rows written and the file name."""
    pa = _pyarrow()
    import pyarrow.parquet as pq

    schema = table.schema(raw_ids)
    name = f"{table.name}/date={day.isoformat()}/part-0.parquet"
    rows = 0
    with tempfile.NamedTemporaryFile(suffix=".parquet") as tmp:
        with pq.ParquetWriter(tmp.name, schema, compression="zstd") as writer:
            for chunk in table.rows(day, raw_ids, chunk_size):
                batch = pa.Table.from_pydict(chunk, schema=schema)
                writer.write_table(batch)
                rows += batch.num_rows
            if not rows:
                writer.write_table(schema.empty_table())
        with open(tmp.name, "rb") as handle:
            target.write(name, File(handle, name=name.rsplit("/", 1)[-1]))
    return rows, name


def export(to: str, *, since: date | None = None, full: bool = False, raw_ids: bool = False,
           chunk_size: int = CHUNK_SIZE, now: datetime | None = None,
           tables: list[str] | None = None, progress: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Write the complete UTC days of each table (from ``since``) that the target does not hold yet or that
    changed; returns ``{"target", "days": {table: [iso days written]}, "rows": {table: n}}``.

    Raises :class:`ExportError` for an unusable target or options.
    """
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ExportError(f"The chunk size is a positive number of rows, not {chunk_size!r}.")
    chosen = TABLES if tables is None else [t for t in TABLES if t.name in tables]
    if tables is not None and len(chosen) != len(set(tables)):
        unknown = sorted(set(tables) - {t.name for t in TABLES})
        raise ExportError(f"Unknown table(s) {', '.join(unknown)}; known: {', '.join(t.name for t in TABLES)}.")
    target = resolve_target(to)
    manifest = read_manifest(target)
    ids = "raw" if raw_ids else FORMAT
    if manifest.get("ids") not in (None, ids) and not full:
        raise ExportError(f"{target.label} holds an export with ids {manifest['ids']!r}; this run's are {ids!r}. "
                          "Use another target, or --full to rewrite every day.")
    manifest["ids"] = ids
    if any(t.name == "ingestion_counters" for t in chosen):
        persist_counters()  # yesterday's last cache counts
    today = (now or timezone.now()).astimezone(dt_timezone.utc).date()
    last = today - timedelta(days=1)  # today is not complete: it is written tomorrow
    late_days = math.ceil(settings.MAX_EVENT_AGE_SECONDS / 86400) + 1
    summary: dict[str, Any] = {"target": target.label, "days": {}, "rows": {}}
    for table in chosen:
        written = manifest["tables"].setdefault(table.name, {})
        first = since
        if first is None:
            first = (max(date.fromisoformat(d) for d in written) - timedelta(days=late_days)) if written and not full \
                else date(1970, 1, 1)
        fingerprints = table.fingerprints(first, last) if first <= last else {}
        days = sorted(d for d in fingerprints if first <= d <= last and (
            full or written.get(d.isoformat(), {}).get("fingerprint") != fingerprints[d]))
        summary["days"][table.name], summary["rows"][table.name] = [], 0
        for day in days:
            rows, name = _write_day(table, target, day, raw_ids, chunk_size)
            written[day.isoformat()] = {"fingerprint": fingerprints[day], "rows": rows, "files": [name],
                                        "written_at": timezone.now().isoformat()}
            summary["days"][table.name].append(day.isoformat())
            summary["rows"][table.name] += rows
            manifest["tables"][table.name] = dict(sorted(written.items()))
            target.write(MANIFEST, ContentFile(json.dumps(manifest, indent=1).encode()))  # after each day: resumable
            if progress:
                progress(f"{table.name} {day.isoformat()}: {rows} rows")
    if not any(summary["days"].values()) and not target.storage.exists(target.path(MANIFEST)):
        target.write(MANIFEST, ContentFile(json.dumps(manifest, indent=1).encode()))
    return summary
