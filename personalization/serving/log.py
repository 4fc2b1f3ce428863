"""The recommendation log: every served list as a ``RecommendationLog`` row, written off the request path."""

from __future__ import annotations

import atexit
import json
import logging
import time
from datetime import datetime
from datetime import timezone as dt_timezone
from typing import Any

from django.db import connections, router, transaction

from personalization.batching import BatchingThread
from personalization.conf import settings
from personalization.serving.results import Recommendation, Result

logger = logging.getLogger("personalization.serving")

_Served = tuple[str, str, str, "int | None", tuple[Recommendation, ...], str, float, "int | None", str]


def _log_row(served: _Served) -> dict[str, Any]:
    rec_id, subject, slot, version, items, fallback, created, experiment, arm = served
    return {
        "id": rec_id, "subject": subject[:80], "slot": slot[:64], "model_version_id": version,
        "items": [{"item": r.item, "score": r.score, "reason": r.reason} for r in items],
        "fallback": fallback[:32], "created_at": datetime.fromtimestamp(created, tz=dt_timezone.utc),
        "experiment_id": experiment, "arm": arm,
    }


#: PostgreSQL: the whole batch as one JSON document, expanded by the server. Django's bulk_create sends one array
#: per column there, and psycopg escapes every quote of the items' JSON with a regular expression in Python: about
#: 0.3 ms of the writer thread's time per row, taken from the request threads (the GIL) of a busy worker.
_LOG_INSERT_SQL = (
    "INSERT INTO {table} (id, subject, slot, model_version_id, items, fallback, created_at, experiment_id, arm) "
    "SELECT id, subject, slot, model_version_id, items, fallback, created_at, experiment_id, arm "
    "FROM jsonb_to_recordset(%s::jsonb) "
    "AS row(id text, subject text, slot text, model_version_id bigint, items jsonb, fallback text, "
    "created_at timestamptz, experiment_id bigint, arm text) ON CONFLICT (id) DO NOTHING"
)


def _write_logs(served: list[_Served]) -> None:
    from personalization.models import RecommendationLog

    db = router.db_for_write(RecommendationLog)
    connection = connections[db]
    if connection.vendor != "postgresql":
        RecommendationLog.objects.using(db).bulk_create([RecommendationLog(**_log_row(s)) for s in served],
                                                        ignore_conflicts=True)
        return
    rows = [_log_row(s) for s in served]
    for row in rows:
        row["created_at"] = row["created_at"].isoformat()
    sql = _LOG_INSERT_SQL.format(table=connection.ops.quote_name(RecommendationLog._meta.db_table))
    with connection.cursor() as cursor:
        cursor.execute(sql, [json.dumps(rows)])


log_writer = BatchingThread("personalization-reclog", _write_logs)
atexit.register(log_writer.flush)


def log_recommendation(result: Result, subject: str) -> None:
    """Record the served list for attribution: in the background (default), after commit (inline), or not.

    The request thread only captures the list; the row is built by the writer (off the request's path)."""
    mode = settings.RECOMMENDATION_LOG_WRITE
    if mode == "off":
        return
    served: _Served = (result.recommendation_id, subject, result.slot, result.model_version, tuple(result.items),
                       result.fallback, time.time(), result.experiment, result.arm)
    try:
        if mode == "inline":
            transaction.on_commit(lambda: _write_logs([served]))
        else:
            log_writer.submit(served)
    except Exception:  # noqa: BLE001
        logger.exception("personalization: could not log recommendation %s", result.recommendation_id)
