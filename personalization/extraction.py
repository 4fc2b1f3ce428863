"""Reads the training window out of the event table into a DataFrame (and the item table out of the catalog).

On PostgreSQL the window is streamed with binary ``COPY`` and decoded by numpy as the chunks arrive
(:mod:`personalization.pipeline.extract`), in time slices over several connections for a large window; elsewhere it
is read with ``values_list``. Both give the same frame: the columns of ``EXTRACT_COLUMNS``.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime
from typing import Any

import pandas as pd
from django.db import connections, router
from django.db.models import Case, F, Max, Min, TextField, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Concat

from personalization.catalog import get_catalog
from personalization.conf import settings
from personalization.models import Event
from personalization.pipeline.columns import (
    CLICKED,
    COUNTRY,
    DEVICE,
    EVENT,
    EXPLORED,
    ITEM,
    LIST,
    POSITION,
    SHOWN_AT,
    TIMESTAMP,
    USER,
    VALUE,
)
from personalization.pipeline.extract import PAD, FieldKind, Part, decode_copy, join_parts

EXTRACT_COLUMNS = [USER, ITEM, EVENT, TIMESTAMP, VALUE, DEVICE, COUNTRY]
EXTRACT_KINDS: list[FieldKind] = ["text", "text", "text", "timestamptz", "float8", "text", "text"]
PARALLEL_MIN_ROWS = 200_000  # below this many rows in the event table, one connection extracts the window
COPY_CHUNK_ROWS = 131_072  # at most this many rows are decoded at a time while the next ones arrive
FIRST_CHUNK_ROWS = 8_192  # the first chunk: then each is twice the previous, up to COPY_CHUNK_ROWS



def window_queryset(since: datetime | None = None, until: datetime | None = None):
    """Item events (a non-empty item key) that occurred in ``[since, until)``."""
    qs = Event.objects.exclude(item_key="")
    if since is not None:
        qs = qs.filter(occurred_at__gte=since)
    if until is not None:
        qs = qs.filter(occurred_at__lt=until)
    return qs


def events_queryset(since: datetime | None = None, until: datetime | None = None):
    """Item events in the window as (subject, item, type, time, value, device, country) rows.

    The subject is ``u:<user id>`` for known users (one history across devices) else ``v:<visitor id>``.
    """
    subject = Case(
        When(user__isnull=False,
             then=Concat(Value("u:"), Cast("user_id", output_field=TextField()), output_field=TextField())),
        default=Concat(Value("v:"), F("visitor_id"), output_field=TextField()),
        output_field=TextField(),
    )
    return window_queryset(since, until).annotate(
        s=subject, d=KeyTextTransform("device", "context"), c=KeyTextTransform("country", "context"),
    ).values_list("s", "item_key", "event_type", "occurred_at", "value", "d", "c").order_by()


def extract_events(since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """Events of the window as a DataFrame with the pipeline's column names.

    User, item, event type, device and country are categoricals with sorted categories (every later stage groups
    and factorizes them; an empty device or country is missing), the timestamp is UTC, the value float (NaN when
    missing). On PostgreSQL with psycopg 3 the rows come as binary ``COPY`` decoded by numpy while they arrive,
    over ``TRAINING["extract_connections"]`` connections in parallel when the window is large and no transaction
    is open; elsewhere from ``values_list`` in chunks.
    """
    alias = router.db_for_read(Event)
    connection = connections[alias]
    if connection.vendor == "postgresql":
        connection.ensure_connection()
        if hasattr(connection.connection, "pgconn"):  # psycopg 3 (psycopg2 has no low-level COPY access)
            return _extract_copy(alias, since, until)
    return _extract_rows(since, until)


def _extract_rows(since: datetime | None, until: datetime | None) -> pd.DataFrame:
    """The portable path: ``values_list`` in chunks."""
    frame = pd.DataFrame(list(events_queryset(since, until).iterator(chunk_size=20000)), columns=EXTRACT_COLUMNS)
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True).astype("datetime64[us, UTC]")
    frame[VALUE] = pd.to_numeric(frame[VALUE], errors="coerce").astype("float64")
    frame = frame.astype({column: pd.CategoricalDtype(pd.Index(sorted(frame[column].dropna().unique()), dtype="str"))
                          for column in (USER, ITEM, EVENT, DEVICE, COUNTRY)})
    return _empty_context_missing(frame)


def _empty_context_missing(frame: pd.DataFrame) -> pd.DataFrame:
    """An empty device or country is missing, as an absent one is."""
    for column in (DEVICE, COUNTRY):
        if "" in frame[column].cat.categories:
            frame[column] = frame[column].cat.remove_categories([""])
    return frame


def _extract_copy(alias: str, since: datetime | None, until: datetime | None) -> pd.DataFrame:
    """Binary ``COPY`` of the window, in time slices over parallel connections when that pays."""
    slices = time_slices(connections[alias], since, until)
    with ThreadPoolExecutor(len(slices), thread_name_prefix="extract") as pool:
        others = [pool.submit(_copy_slice_own_connection, alias, *window) for window in slices[1:]]
        chunks = _copy_slice(connections[alias], alias, *slices[0])
        for future in others:
            chunks += future.result()
    user, item, event, timestamp, value, device, country = join_parts(chunks)
    return _empty_context_missing(pd.DataFrame({
        USER: user, ITEM: item, EVENT: event, TIMESTAMP: pd.DatetimeIndex(timestamp).tz_localize("UTC"),
        VALUE: value, DEVICE: device, COUNTRY: country,
    }))


def time_slices(connection: Any, since: datetime | None,
                 until: datetime | None) -> list[tuple[datetime | None, datetime | None]]:
    """The window cut into consecutive slices of about as many events, one per connection.

    One slice when parallel connections are off, when a transaction is open (another connection would not see its
    rows), or when the whole table holds fewer than :data:`PARALLEL_MIN_ROWS` events. The cuts are the quantiles
    of ``occurred_at`` from the planner's statistics (``pg_stats``: no scan) that fall inside the window, or equal
    time steps without statistics.
    """
    workers = int(settings.TRAINING["extract_connections"])
    if workers < 2 or connection.in_atomic_block or not connection.get_autocommit():
        return [(since, until)]
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.reltuples, (SELECT s.histogram_bounds::text::timestamptz[] FROM pg_stats s "
            "JOIN pg_namespace n ON n.nspname = s.schemaname "
            "WHERE n.oid = c.relnamespace AND s.tablename = c.relname AND s.attname = %s) "
            "FROM pg_class c WHERE c.oid = %s::regclass",
            [Event._meta.get_field("occurred_at").column, connection.ops.quote_name(Event._meta.db_table)],
        )
        rows, histogram = cursor.fetchone()
    if rows < PARALLEL_MIN_ROWS:
        return [(since, until)]
    bounds = window_queryset(since, until).aggregate(lo=Min("occurred_at"), hi=Max("occurred_at"))
    lo, hi = bounds["lo"], bounds["hi"]
    if lo is None or hi <= lo:
        return [(since, until)]
    inside = [bound for bound in histogram or () if lo < bound < hi]
    if len(inside) >= 2 * workers:
        cuts = [inside[len(inside) * i // workers] for i in range(1, workers)]
    else:
        cuts = [lo + (hi - lo) * i / workers for i in range(1, workers)]
    return list(zip([since, *cuts], [*cuts, until], strict=True))


def _copy_slice(connection: Any, alias: str, since: datetime | None, until: datetime | None) -> list[list[Part]]:
    """Decoded chunks of one time slice, copied over ``connection``: a worker thread decodes each chunk while the
    next one arrives (numpy releases the GIL, and so does the blocking read), so decoding overlaps the server."""
    statement, params = copy_statement(alias, since, until)
    connection.ensure_connection()
    with ThreadPoolExecutor(1, thread_name_prefix="decode") as decoder:

        def decode(buffer: io.BytesIO, sizes: list[int], first: bool, last: bool) -> Future:
            if last:  # nothing left to overlap with (and a small window needs no thread at all)
                done: Future = Future()
                done.set_result(_decode_chunk(buffer, sizes, first))
                return done
            return decoder.submit(_decode_chunk, buffer, sizes, first)

        pending = copy_chunks(connection.connection, statement, params, decode)
        return [future.result() for future in pending]


def copy_statement(alias: str, since: datetime | None, until: datetime | None) -> tuple[str, Any]:
    """``COPY (<events_queryset SQL>) TO STDOUT (FORMAT binary)`` for the window, and its parameters."""
    sql, params = events_queryset(since, until).query.get_compiler(using=alias).as_sql()
    return f"COPY ({sql}) TO STDOUT (FORMAT binary)", params


def copy_chunks(raw: Any, statement: str, params: Any,
                consume: Callable[[io.BytesIO, list[int], bool, bool], Any]) -> list:
    """Run a ``COPY ... TO STDOUT`` on the psycopg 3 connection ``raw`` and hand its messages to ``consume`` in
    chunks as soon as they are in: the messages concatenated and followed by :data:`PAD` zero bytes, the size of
    each, whether the chunk starts the stream and whether it ends it. Returns what ``consume`` returned, in order.

    Chunks grow from :data:`FIRST_CHUNK_ROWS` to :data:`COPY_CHUNK_ROWS` messages: a small window is decoded
    while it arrives too, a large one in few chunks (each chunk's distinct strings are factorized again on joining).

    The messages (one per row) are read with psycopg's low-level ``pgconn.get_copy_data``: about 0.25 us per row,
    against 0.6 us through ``Copy`` iteration.
    """
    from psycopg import ClientCursor, errors, pq

    consumed = []
    # A client-side binding cursor whatever Django's OPTIONS say: COPY takes no server-side parameters.
    with ClientCursor(raw) as cursor, cursor.copy(statement, params):
        read = raw.pgconn.get_copy_data
        first, done, rows = True, False, min(FIRST_CHUNK_ROWS, COPY_CHUNK_ROWS)
        while not done:
            buffer, sizes = io.BytesIO(), []
            write, size = buffer.write, sizes.append
            for _ in range(rows):
                nbytes, message = read(0)  # blocks without the GIL
                if nbytes < 0:
                    done = True
                    break
                write(message)
                size(nbytes)
            buffer.write(bytes(PAD))
            consumed.append(consume(buffer, sizes, first, done))
            first, rows = False, min(2 * rows, COPY_CHUNK_ROWS)
        while (result := raw.pgconn.get_result()) is not None:  # what psycopg's Copy reads after the last row
            if result.status != pq.ExecStatus.COMMAND_OK:
                raise errors.error_from_result(result, encoding=raw.info.encoding)
    return consumed


def _decode_chunk(buffer: io.BytesIO, sizes: list[int], first: bool) -> list[Part]:
    return decode_copy(buffer.getbuffer(), sizes, EXTRACT_KINDS, first=first)


def _copy_slice_own_connection(alias: str, since: datetime | None, until: datetime | None) -> list[list[Part]]:
    """:func:`_copy_slice` on this thread's own connection, closed afterwards."""
    connection = connections[alias]
    try:
        return _copy_slice(connection, alias, since, until)
    finally:
        connection.close()


def load_items() -> pd.DataFrame:
    """Item features from the catalog adapter (item, category, price, brand, text, available)."""
    rows = get_catalog().features()
    columns = ["item", "category", "price", "brand", "text", "available"]
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    return frame


#: Events that count as a click on a served item when they carry the list's recommendation id.
FEEDBACK_OUTCOMES = ("click", "add_to_cart", "purchase")


def extract_feedback(since: datetime | None = None, until: datetime | None = None) -> pd.DataFrame:
    """The items of the lists served in ``[since, until)`` with their outcomes: one row per shown item, with the
    columns of :data:`personalization.recommenders.ranker_data.FEEDBACK_COLUMNS` (list id, subject, item, 0-based
    position, shown_at, clicked, explored).

    ``clicked``: a click, add-to-cart or purchase of the item carried the list's ``recommendation_id`` (up to the
    end of the window). When the site sends impression events with recommendation ids, only the items of a list
    with an impression (or a click) count as shown; without any for a list, all its items do (the tracker did not
    report what was on screen). ``explored``: the position was given to exploration (``exploration:<method>``).
    Lists logged without a subject or item key are skipped.
    """
    from personalization.models import RecommendationLog

    logs = RecommendationLog.objects.all()
    if since is not None:
        logs = logs.filter(created_at__gte=since)
    if until is not None:
        logs = logs.filter(created_at__lt=until)
    rows = []
    for rec_id, subject, items, created in logs.values_list("id", "subject", "items", "created_at").order_by(
            "created_at").iterator(chunk_size=5000):
        if not subject or not isinstance(items, list):
            continue
        for position, entry in enumerate(items):
            key = entry.get("item") if isinstance(entry, dict) else None
            if key:
                rows.append((rec_id, subject, str(key), position, created,
                             str(entry.get("reason") or "").startswith("exploration")))
    columns = [LIST, USER, ITEM, POSITION, SHOWN_AT, EXPLORED]
    frame = pd.DataFrame(rows, columns=columns)
    outcomes = Event.objects.exclude(recommendation_id="").exclude(item_key="").filter(
        event_type__in=[*FEEDBACK_OUTCOMES, "impression"])
    if since is not None:
        outcomes = outcomes.filter(occurred_at__gte=since)
    if until is not None:
        outcomes = outcomes.filter(occurred_at__lt=until)
    events = pd.DataFrame(list(outcomes.annotate(p=KeyTextTransform("position", "context")).values_list(
        "recommendation_id", "item_key", "event_type", "p").order_by().distinct().iterator(chunk_size=20000)),
        columns=[LIST, ITEM, EVENT, "_shown"])
    clicked = events.loc[events[EVENT].isin(FEEDBACK_OUTCOMES), [LIST, ITEM]].drop_duplicates()
    seen = events.loc[events[EVENT] == "impression", [LIST, ITEM]].drop_duplicates()
    frame = frame.merge(clicked.assign(**{CLICKED: True}), on=[LIST, ITEM], how="left")
    frame[CLICKED] = frame[CLICKED].astype("boolean").fillna(False).astype(bool)
    # where the page showed the item (the tracker's 1-based data-personalization-position, after any on-device
    # re-ranking), preferred to the served order when an impression or click reported it
    shown = pd.to_numeric(events["_shown"], errors="coerce")
    displayed = (events.assign(_shown=shown - 1, _first=events[EVENT] != "impression")
                 .loc[shown.notna().to_numpy() & (shown >= 1).to_numpy()]
                 .sort_values("_first", kind="stable").drop_duplicates([LIST, ITEM])[[LIST, ITEM, "_shown"]])
    frame = frame.merge(displayed, on=[LIST, ITEM], how="left")
    frame[POSITION] = frame["_shown"].fillna(frame[POSITION]) if len(frame) else frame[POSITION]
    if len(seen) and len(frame):
        on_screen = frame.merge(seen.assign(_seen=True), on=[LIST, ITEM], how="left")["_seen"].notna().to_numpy()
        reported = frame[LIST].isin(set(seen[LIST])).to_numpy()
        frame = frame.loc[~reported | on_screen | frame[CLICKED].to_numpy()]
    frame[SHOWN_AT] = pd.to_datetime(frame[SHOWN_AT], utc=True)
    frame[POSITION] = frame[POSITION].astype("int64")
    frame[EXPLORED] = frame[EXPLORED].astype(bool)
    return frame.drop_duplicates([LIST, ITEM]).reset_index(drop=True)[[LIST, USER, ITEM, POSITION, SHOWN_AT,
                                                                        CLICKED, EXPLORED]]
