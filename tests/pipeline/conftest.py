"""Helpers for the pipeline tests: small hand-made event frames (no Django, no database)."""

import pandas as pd
import pytest

from personalization.pipeline.columns import EVENT, ITEM, TIMESTAMP, USER, VALUE

T0 = pd.Timestamp("2024-03-01 12:00", tz="UTC")


def make_events(rows, t0=T0, unit="min"):
    """Build an events frame from (user, item, event, offset[, value]) tuples; offset in ``unit`` after ``t0``."""
    records = []
    for row in rows:
        user, item, event, offset, *rest = row
        records.append(
            {
                USER: user,
                ITEM: item,
                EVENT: event,
                TIMESTAMP: t0 + pd.Timedelta(offset, unit=unit),
                VALUE: rest[0] if rest else float("nan"),
            }
        )
    frame = pd.DataFrame.from_records(records, columns=[USER, ITEM, EVENT, TIMESTAMP, VALUE])
    frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
    frame[VALUE] = frame[VALUE].astype(float)
    return frame


@pytest.fixture
def events_factory():
    return make_events
