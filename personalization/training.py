"""The offline service: extract -> clean -> split -> fit -> evaluate -> register -> promote.

Celery tasks, admin actions and ``manage.py personalization_train`` call ``train()``; it records its stage and
progress on the ModelVersion row, can be cancelled between stages, and never touches the live version until the
new artifact is completely stored.
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from django.db import connections, router, transaction
from django.db.models import Case, F, Max, Min, TextField, Value, When
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast, Concat
from django.utils import timezone

from personalization.catalog import get_catalog
from personalization.conf import settings
from personalization.models import Event, ModelVersion
from personalization.pipeline.columns import COUNTRY, DEVICE, EVENT, ITEM, TIMESTAMP, USER, VALUE
from personalization.pipeline.extract import PAD, FieldKind, Part, decode_copy, join_parts

logger = logging.getLogger("personalization.training")
EXTRACT_COLUMNS = [USER, ITEM, EVENT, TIMESTAMP, VALUE, DEVICE, COUNTRY]
EXTRACT_KINDS: list[FieldKind] = ["text", "text", "text", "timestamptz", "float8", "text", "text"]
PARALLEL_MIN_ROWS = 200_000  # below this many rows in the event table, one connection extracts the window
COPY_CHUNK_ROWS = 131_072  # at most this many rows are decoded at a time while the next ones arrive
FIRST_CHUNK_ROWS = 8_192  # the first chunk: then each is twice the previous, up to COPY_CHUNK_ROWS


class TrainingCancelled(Exception):
    """Raised between stages when staff cancelled the version."""


class TrainingError(Exception):
    """Training cannot proceed (e.g. not enough events); the message says what to do."""


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


class Progress:
    """Writes stage and percent to the version row; checks for cancellation at each report."""

    def __init__(self, version: ModelVersion, echo: Callable[[str, float], None] | None = None):
        self.version = version
        self.echo = echo

    def __call__(self, stage: str, fraction: float) -> None:
        fraction = max(0.0, min(1.0, float(fraction)))
        ModelVersion.objects.filter(pk=self.version.pk).update(stage=stage[:64], progress=round(fraction * 100, 1))
        if self.echo:
            self.echo(stage, fraction)
        if ModelVersion.objects.filter(pk=self.version.pk, cancel_requested=True).exists():
            raise TrainingCancelled(f"Version {self.version.pk} was cancelled during {stage}.")

    def scaled(self, start: float, end: float) -> Callable[[str, float], None]:
        return lambda stage, fraction: self(stage, start + (end - start) * fraction)


def train(
    version: ModelVersion,
    *,
    until: datetime | None = None,
    models: list[str] | None = None,
    tune: bool = False,
    echo: Callable[[str, float], None] | None = None,
    promote_if_better: bool = True,
) -> ModelVersion:
    """Train, validate on the later window, store and (when it wins) promote one version. Idempotent per version."""
    from personalization import registry
    from personalization.evaluation.system import evaluate_system, evaluation_users
    from personalization.pipeline.clean import clean_events
    from personalization.pipeline.split import temporal_split
    from personalization.recommenders.system import RecommenderSystem

    if version.status in {ModelVersion.Status.READY, ModelVersion.Status.LIVE, ModelVersion.Status.RETIRED}:
        return version  # already trained: a retried task must not train twice
    config = dict(settings.TRAINING)
    families = {name: config["models"].get(name, {}) for name in (models or config["models"])}
    progress = Progress(version, echo)
    workdir = Path(tempfile.mkdtemp(prefix=f"personalization-v{version.pk}-"))
    try:
        version.status = ModelVersion.Status.TRAINING
        version.started_at = timezone.now()
        version.error = ""
        version.save(update_fields=["status", "started_at", "error"])
        progress("extract", 0.0)
        until = until or timezone.now()
        # The window ends at the latest event before `until`, not at the clock: an imported history (or a
        # quiet site) still trains on its most recent `window_days`.
        latest = Event.objects.filter(occurred_at__lt=until).aggregate(m=Max("occurred_at"))["m"] or until
        since = latest - timedelta(days=config["window_days"])
        events = extract_events(since, until)
        items = load_items()
        progress("clean", 0.08)
        known = set(items["item"]) if len(items) else None
        events, quality = clean_events(events, known_items=known, now=until)
        if len(events) < config["min_events"]:
            raise TrainingError(
                f"Only {len(events)} usable events between {since:%Y-%m-%d} and {until:%Y-%m-%d}; at least "
                f"{config['min_events']} are needed (TRAINING['min_events']). Track more or import history with "
                "`manage.py personalization_import`."
            )
        span = events[TIMESTAMP].max() - events[TIMESTAMP].min()
        # A short history keeps at least 80% of its time span for training.
        test_window = min(pd.Timedelta(days=config["test_days"]), span * 0.2)
        cutoff = events[TIMESTAMP].max() - test_window
        train_events, test_events = temporal_split(events, cutoff=cutoff)
        if len(train_events) < config["min_events"]:
            raise TrainingError(
                f"Only {len(train_events)} events before the test window starting {cutoff:%Y-%m-%d %H:%M}; "
                f"at least {config['min_events']} are needed. Lower TRAINING['test_days'] or collect more history."
            )
        params = {
            "models": families,
            "ranker": config["ranker"],
            "event_weights": settings.event_weights,
            "half_life_days": config["half_life_days"],
            "scaling": config["scaling"],
            "candidates_per_model": config["candidates_per_model"],
            "random_state": settings.RANDOM_STATE,
        }
        version.params = params
        version.data_quality = quality.to_dict()
        version.data_start = events[TIMESTAMP].min().to_pydatetime()
        version.data_end = events[TIMESTAMP].max().to_pydatetime()
        version.cutoff = cutoff.to_pydatetime()
        version.save(update_fields=["params", "data_quality", "data_start", "data_end", "cutoff"])
        if tune:
            version.tuning = tune_system(train_events, items, params, progress.scaled(0.1, 0.3))
            params.update(version.tuning.get("best_params", {}))
            version.params = params
            version.save(update_fields=["tuning", "params"])

        system = RecommenderSystem(**params).fit(train_events, items, progress=progress.scaled(0.3, 0.6))
        progress("evaluate", 0.6)
        # one seeded sample of the test-window users, scored by every model and by the live version (paired)
        sample = evaluation_users(system, test_events, max_users=config["eval_max_users"],
                                  random_state=settings.RANDOM_STATE) if len(test_events) else None
        test_metrics = evaluate_system(system, test_events, users=sample) if len(test_events) else {}
        live = registry.live_version()
        if live is not None and live.cutoff is not None and live.data_end is not None and len(test_events):
            if live.data_end <= version.cutoff:  # the live model never saw this test window: a fair comparison
                try:
                    live_metrics = evaluate_system(registry.load_system(live), test_events, users=sample)
                    test_metrics["live"] = live_metrics.get("system", {})
                    test_metrics["live_version"] = live.pk
                except Exception:  # noqa: BLE001 - a broken old artifact must not block training
                    logger.exception("Could not evaluate live version %s on the new test window", live.pk)
        version.test_metrics = test_metrics
        version.metrics = getattr(system, "metrics_", {}) or {}
        version.save(update_fields=["test_metrics", "metrics"])

        if config["refit_full"] and len(test_events):
            system = RecommenderSystem(**params).fit(events, items, progress=progress.scaled(0.65, 0.9))
        progress("save", 0.92)
        system.save(workdir)
        version.artifact = registry.save_artifact(version, workdir)
        # "ready" and the promotion decision commit together: a client polling the version never sees it ready
        # (i.e. refused) just before it goes live.
        with transaction.atomic():
            version.status = ModelVersion.Status.READY
            version.finished_at = timezone.now()
            version.stage = "done"
            version.progress = 100.0
            version.save(update_fields=["artifact", "status", "finished_at", "stage", "progress"])
            if promote_if_better:
                try:
                    registry.promote(version)
                except registry.PromotionRefused as exc:
                    logger.info("%s", exc)
        version.refresh_from_db()
        return version
    except TrainingCancelled as exc:
        _finish(version, ModelVersion.Status.CANCELLED, str(exc))
        raise
    except Exception as exc:
        detail = str(exc) if isinstance(exc, TrainingError) else f"{exc}\n\n{traceback.format_exc()}"
        _finish(version, ModelVersion.Status.FAILED, detail)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _finish(version: ModelVersion, status: str, error: str) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(status=status, error=error[:20000], finished_at=timezone.now())
    version.refresh_from_db()


def tune_system(
    train_events: pd.DataFrame, items: pd.DataFrame, params: dict[str, Any], progress: Callable[[str, float], None]
) -> dict[str, Any]:
    """Tune the ALS part on a validation window carved from the training events only (never the test window)."""
    from personalization.evaluation.tuning import tune
    from personalization.pipeline.interactions import build_interactions
    from personalization.pipeline.split import temporal_split
    from personalization.recommenders import FAMILIES

    cutoff = train_events[TIMESTAMP].max() - pd.Timedelta(days=settings.TRAINING["test_days"])
    fit_part, valid_part = temporal_split(train_events, cutoff=cutoff)
    weights = params["event_weights"]
    fit_matrix = build_interactions(fit_part, weights, params["half_life_days"], scaling=params["scaling"])
    valid_matrix = build_interactions(valid_part, weights, None, user_ids=fit_matrix.user_ids,
                                      item_ids=fit_matrix.item_ids)
    progress("tune", 0.1)
    space = {"factors": [32, 64, 128], "regularization": [0.001, 0.01, 0.1], "iterations": [10, 20]}
    result = tune(
        lambda **p: FAMILIES["als"](random_state=settings.RANDOM_STATE, **p), space, fit_matrix.csr,
        valid_matrix.csr, metric="ndcg@10", method="bayesian", n_trials=8, time_budget_s=120,
        random_state=settings.RANDOM_STATE, max_users=settings.TRAINING["eval_max_users"],
    )
    progress("tune", 1.0)
    models = dict(params["models"])
    models["als"] = {**models.get("als", {}), **result.best_params}
    return {
        "method": "bayesian", "metric": "ndcg@10", "space": space, "best_score": result.best_score,
        "best_params": {"models": models}, "trials": result.trials,
    }


def evaluate_version(version: ModelVersion, *, since: datetime | None = None) -> dict[str, Any]:
    """Score a stored version on events it never saw (after its data, or since ``since``); recorded on the row.

    This is how a live model is checked against fresh traffic between retrains.
    """
    from personalization import registry
    from personalization.evaluation.system import evaluate_system
    from personalization.pipeline.clean import clean_events

    if since is None and version.data_end is None:
        raise TrainingError(f"Version {version.pk} has no data window; train it first.")
    start = since or version.data_end + timedelta(microseconds=1)  # strictly after its last training event
    events = extract_events(start, timezone.now())
    events, _ = clean_events(events, now=timezone.now())
    if events.empty:
        raise TrainingError(f"No events since {start:%Y-%m-%d %H:%M} to evaluate version {version.pk} on.")
    metrics = evaluate_system(registry.load_system(version), events, max_users=settings.TRAINING["eval_max_users"],
                              random_state=settings.RANDOM_STATE)
    recheck = {"since": start.isoformat(), "events": len(events), "at": timezone.now().isoformat(),
               "system": metrics.get("system", {})}
    ModelVersion.objects.filter(pk=version.pk).update(test_metrics={**version.test_metrics, "recheck": recheck})
    version.refresh_from_db()
    return recheck
