"""Import interaction history (a DataFrame of past events) into the ``Event`` table.

Imports are idempotent: each row's ``event_id`` is a UUID5 of the source name and the row's identity, so running
the same import twice stores every event once (the tracking writer skips event ids already stored).
Rows that cannot be stored are skipped and counted by reason, never raised.

Input columns (the readers in ``personalization.pipeline.datasets`` produce them):

=============  ====================================================================================
``user``       required: the source's user (or session) id; stored as ``visitor_id`` (max 64 chars)
``item``       item id (``item_id`` is accepted too); ``"<item_type>:<id>"`` unless it already has a type
``event``      required: an event type of ``PERSONALIZATION["EVENT_TYPES"]`` (view, purchase, rate, ...)
``timestamp``  required: datetime or ISO string; naive values are read as UTC
``value``      optional number (price, quantity, rating)
``event_key``  optional: a stable row identity; default is user, item, event, time, value and the
               occurrence number of identical rows
context        optional: ``country``, ``device``, ``os``, ``browser``, ``quantity``, ``session`` go
               into the event's context
=============  ====================================================================================
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from django.contrib.auth import get_user_model
from django.db import router

from personalization.conf import settings
from personalization.models import Event
from personalization.tracking.schema import ITEM_KEY_RE, EventData
from personalization.tracking.writer import write_unique

IMPORT_NAMESPACE = uuid.UUID("9a3f6c1e-4b2d-5e8f-a0c1-7d6e5f4a3b21")
CONTEXT_COLUMNS = ("country", "device", "os", "browser", "quantity", "session")
MAX_VISITOR_ID = 64


@dataclass
class ImportReport:
    """What an import did (or, for a dry run, would do)."""

    source: str
    rows: int = 0  # rows given
    imported: int = 0  # new Event rows (for a dry run: rows that would be new)
    duplicates: int = 0  # rows whose event id was already stored (earlier run of the same import)
    skipped: dict[str, int] = field(default_factory=dict)  # reason -> rows
    users_matched: int = 0  # distinct Django users found by ``user_field``
    events_with_user: int = 0
    first: datetime | None = None
    last: datetime | None = None
    event_counts: dict[str, int] = field(default_factory=dict)  # valid rows per event type
    dry_run: bool = False

    @property
    def skipped_total(self) -> int:
        return sum(self.skipped.values())

    @property
    def valid(self) -> int:
        return self.rows - self.skipped_total

    def summary(self) -> str:
        verb = "would import" if self.dry_run else "imported"
        lines = [
            f"{self.source}: {self.rows:,} rows read, {verb} {self.imported:,} new events, "
            f"{self.duplicates:,} already present, {self.skipped_total:,} skipped.",
        ]
        if self.event_counts:
            lines.append("  events: " + ", ".join(f"{k} {v:,}" for k, v in sorted(self.event_counts.items())))
        for reason, count in sorted(self.skipped.items()):
            lines.append(f"  skipped ({reason}): {count:,}")
        if self.users_matched:
            lines.append(f"  linked to {self.users_matched:,} users ({self.events_with_user:,} events)")
        if self.first is not None:
            lines.append(f"  time span: {self.first:%Y-%m-%d %H:%M} .. {self.last:%Y-%m-%d %H:%M} UTC")
        return "\n".join(lines)


def _column(frame: pd.DataFrame, *names: str) -> str | None:
    for name in names:
        if name in frame.columns:
            return name
    return None


def _as_text(series: pd.Series) -> pd.Series:
    """Strings without surrounding blanks; missing values become ''."""
    def clean(value: Any) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value).strip()

    return series.map(clean).astype(object)


def _context_value(value: Any) -> Any:
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        if math.isnan(value):
            return None
        return int(value) if value.is_integer() else value
    text = str(value)
    return text[:200] if text else None


def import_events(
    events_df: pd.DataFrame,
    *,
    source: str = "import",
    item_type: str = "product",
    user_field: str | None = None,
    batch_size: int = 5000,
    progress: bool = True,
    account_column: str | None = None,
    dry_run: bool = False,
) -> ImportReport:
    """Write ``events_df`` as ``Event`` rows (``source="import"``); return an :class:`ImportReport`.

    ``source`` names the data source (e.g. ``"online-retail"``): it seeds the deterministic event ids and is
    kept as ``context["dataset"]``, so two different sources never collide and one source never duplicates.
    ``user_field`` (e.g. ``"username"``) links events to Django users whose field equals the row's user id
    (or the value of ``account_column`` when given); the visitor id is always the source's user id.
    ``dry_run`` validates and counts without writing.
    """
    if batch_size < 1:
        raise ValueError("batch_size must be at least 1.")
    if item_type not in settings.ITEM_TYPES:
        raise ValueError(
            f"Item type {item_type!r} is not accepted by this site; PERSONALIZATION['ITEM_TYPES'] is "
            f"{settings.ITEM_TYPES}. Add it there or choose another item type."
        )
    user_col = _column(events_df, "user", "visitor")
    item_col = _column(events_df, "item", "item_id")
    required = {"user": user_col, "event": _column(events_df, "event"),
                "timestamp": _column(events_df, "timestamp"), "item": item_col}
    missing = [name for name, col in required.items() if col is None]
    if missing:
        raise ValueError(
            f"Events are missing column(s): {', '.join(missing)}; found: {', '.join(map(str, events_df.columns))}."
        )
    if account_column is not None and account_column not in events_df.columns:
        raise ValueError(f"account_column {account_column!r} is not a column of the events.")

    report = ImportReport(source=source, rows=len(events_df), dry_run=dry_run)
    if events_df.empty:
        return report
    frame = pd.DataFrame(index=events_df.index)
    frame["user"] = _as_text(events_df[user_col]).str.slice(0, MAX_VISITOR_ID)
    frame["event"] = _as_text(events_df["event"])
    item_raw = _as_text(events_df[item_col])
    frame["item"] = np.where(item_raw.str.contains(":", regex=False) | (item_raw == ""), item_raw,
                             item_type + ":" + item_raw)
    ts = pd.to_datetime(events_df["timestamp"], errors="coerce", utc=True, format="mixed")
    frame["timestamp"] = ts
    if "value" in events_df.columns:
        value = pd.to_numeric(events_df["value"], errors="coerce").astype(float)
        bad_value = events_df["value"].notna() & ~np.isfinite(value)
    else:
        value = pd.Series(np.nan, index=events_df.index)
        bad_value = pd.Series(False, index=events_df.index)
    frame["value"] = value

    # Skip invalid rows, each under its first reason.
    types = settings.event_types
    needs_item = frame["event"].map(lambda e: types.get(e, {}).get("item", True))
    item_ok = frame["item"].map(lambda k: bool(ITEM_KEY_RE.match(k)) and k.split(":", 1)[0] in settings.ITEM_TYPES)
    checks = [
        ("missing_user", frame["user"] == ""),
        ("unknown_event", ~frame["event"].isin(list(types))),
        ("bad_timestamp", frame["timestamp"].isna()),
        ("missing_item", needs_item & (frame["item"] == "")),
        ("bad_item", (frame["item"] != "") & ~item_ok),
        ("bad_value", bad_value),
    ]
    keep = pd.Series(True, index=frame.index)
    for reason, bad in checks:
        hit = keep & bad.fillna(True).astype(bool)
        if hit.any():
            report.skipped[reason] = int(hit.sum())
        keep &= ~hit
    frame = frame[keep]
    if frame.empty:
        return report
    report.event_counts = {str(k): int(v) for k, v in frame["event"].value_counts().items()}
    report.first = frame["timestamp"].min().to_pydatetime()
    report.last = frame["timestamp"].max().to_pydatetime()

    # Deterministic ids: the given row key, else the row's content plus its occurrence among identical rows.
    if "event_key" in events_df.columns:
        keys = _as_text(events_df.loc[frame.index, "event_key"])
    else:
        iso = frame["timestamp"].map(lambda t: t.isoformat())
        val = frame["value"].map(lambda v: "" if math.isnan(v) else format(float(v), ".10g"))
        base = frame["user"] + "|" + frame["item"] + "|" + frame["event"] + "|" + iso + "|" + val
        keys = base + "|" + base.groupby(base).cumcount().astype(str)
    prefix = f"{source}\x1f"
    frame["event_id"] = [uuid.uuid5(IMPORT_NAMESPACE, prefix + key) for key in keys]
    dupes_in_frame = frame["event_id"].duplicated()
    if dupes_in_frame.any():
        report.duplicates += int(dupes_in_frame.sum())
        frame = frame[~dupes_in_frame]

    # Users.
    user_ids = pd.Series([None] * len(frame), index=frame.index, dtype=object)
    if user_field:
        accounts = _as_text(events_df.loc[frame.index, account_column]) if account_column else frame["user"]
        wanted = sorted({a for a in accounts if a})
        model = get_user_model()
        found: dict[str, int] = {}
        for start in range(0, len(wanted), 900):
            chunk = wanted[start:start + 900]
            for key, pk in model._default_manager.filter(**{f"{user_field}__in": chunk}).values_list(user_field, "pk"):
                found[str(key)] = pk
        # map() gives floats with NaN for accounts without a user; the column wants ints and NULLs.
        user_ids = pd.Series([None if pd.isna(v) else int(v) for v in accounts.map(found)], index=frame.index,
                             dtype=object)
        report.users_matched = len(found)
        report.events_with_user = int(user_ids.notna().sum())

    context_cols = [c for c in CONTEXT_COLUMNS if c in events_df.columns]
    contexts = events_df.loc[frame.index, context_cols] if context_cols else None

    db = router.db_for_write(Event)
    source_value = str(Event.Source.IMPORT.value)
    try:
        from tqdm.auto import tqdm
    except ImportError:  # pragma: no cover - tqdm is a dependency
        progress = False
    bar = tqdm(total=len(frame), unit="event", desc=f"Importing {source}", disable=not progress,
               mininterval=0.5) if progress else None
    users_list = user_ids.tolist()
    items = frame["item"].tolist()
    events = frame["event"].tolist()
    visitors = frame["user"].tolist()
    stamps = frame["timestamp"].tolist()
    values = frame["value"].tolist()
    ids = frame["event_id"].tolist()
    context_rows = contexts.to_dict("records") if contexts is not None else None
    for start in range(0, len(frame), batch_size):
        stop = min(start + batch_size, len(frame))
        batch_ids = ids[start:stop]
        existing = set(Event.objects.using(db).filter(event_id__in=batch_ids).values_list("event_id", flat=True))
        rows = []
        for i in range(start, stop):
            if ids[i] in existing:
                continue
            context: dict[str, Any] = {"dataset": source}
            if context_rows is not None:
                for key, raw in context_rows[i].items():
                    val = _context_value(raw)
                    if val is not None:
                        context[key] = val
            v = values[i]
            rows.append(EventData(event_type=events[i], item_key=items[i], event_id=ids[i],
                                  occurred_at=stamps[i].to_pydatetime(), value=None if math.isnan(v) else v,
                                  context=context, visitor_id=visitors[i], user_id=users_list[i],
                                  source=source_value))
        report.duplicates += len(existing)
        report.imported += len(rows)
        if rows and not dry_run:
            write_unique(rows, stitch=False)
        if bar is not None:
            bar.update(stop - start)
    if bar is not None:
        bar.close()
    return report


FORMATS = ("csv", "parquet", "online-retail", "movielens", "yoochoose", "diginetica")
TABLE_COLUMNS = ("user", "item", "event", "timestamp", "value")  # what import_events reads from a table's columns


class ImportSourceError(ValueError):
    """The source cannot be read as asked; the message says what was wrong and what to check."""


class MissingColumns(ImportSourceError):
    """A CSV/Parquet file lacks columns the mapping names: ``missing`` is [(target, source column)]."""

    def __init__(self, name: str, missing: list[tuple[str, str]], available: list[str]) -> None:
        self.name, self.missing, self.available = name, missing, available
        super().__init__(f"{name} is missing column(s): {', '.join(repr(c) for _, c in missing)}. "
                         f"Its columns are: {', '.join(available)}.")


def read_source(fmt: str, path: Path, *, columns: dict[str, str] | None = None,
                event_type: str | None = None) -> tuple[pd.DataFrame, str]:
    """The rows of a file (``csv``, ``parquet``) or a public dataset's folder, as :func:`import_events` takes them.

    ``columns`` maps the table columns (``TABLE_COLUMNS``) to the file's (csv and parquet; default: same names);
    ``event_type`` is every row's type when the file has none. Returns the frame and a notice of the rows the
    dataset reader dropped ("" when none). Raises :class:`ImportSourceError` (or :class:`MissingColumns`).
    """
    if fmt not in FORMATS:
        raise ImportSourceError(f"Unknown format {fmt!r}. Choose one of: {', '.join(FORMATS)}.")
    if fmt in {"csv", "parquet"}:
        return _read_table(fmt, path, {**{c: c for c in TABLE_COLUMNS}, **(columns or {})}, event_type), ""
    from personalization.pipeline import datasets

    try:
        _, events, report = datasets.READERS[fmt](path)
    except (ValueError, FileNotFoundError) as exc:
        raise ImportSourceError(f"Cannot read {fmt} data at {path}: {exc} Check the path points at the {fmt} files "
                                "(see the datasets README).") from exc
    dropped = report.get("dropped") or {}
    notice = ""
    if any(dropped.values()):
        notice = (f"Read {report['rows']:,} rows from {report['files']} file(s); dropped while reading: "
                  + ", ".join(f"{k} {v:,}" for k, v in dropped.items() if v))
    return events, notice


def _read_table(fmt: str, path: Path, columns: dict[str, str], event_type: str | None) -> pd.DataFrame:
    if path.is_dir():
        raise ImportSourceError(f"{path} is a folder; the {fmt} format reads one file.")
    try:
        if fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
        else:
            frame = pd.read_parquet(path)
    except ImportError as exc:
        raise ImportSourceError(f"Reading Parquet needs pyarrow: pip install pyarrow ({exc}).") from exc
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        raise ImportSourceError(f"Cannot read {path} as {fmt}: {exc}") from exc

    mapping: dict[str, str] = {}
    missing: list[tuple[str, str]] = []
    for target in TABLE_COLUMNS:
        column = columns[target]
        if column in frame.columns:
            mapping[column] = target
        elif (target == "value" and column == "value") or (target == "event" and event_type):
            continue  # optional, or given for every row
        else:
            missing.append((target, column))
    if missing:
        raise MissingColumns(path.name, missing, [str(c) for c in frame.columns])
    context = [c for c in CONTEXT_COLUMNS if c in frame.columns and c not in mapping]
    frame = frame[list(mapping) + context].rename(columns=mapping)
    if "event" not in frame.columns:
        frame["event"] = event_type
    return frame
