"""Background batches survive a moment of database contention: a write that fails with a transient database error
(a locked SQLite file, a dropped connection) is tried again instead of losing its rows."""

from __future__ import annotations

import pytest
from django.db import OperationalError

from personalization import batching
from personalization.batching import BatchingThread, retry_transient


@pytest.fixture(autouse=True)
def _short_pauses(monkeypatch):
    monkeypatch.setattr(batching, "RETRY_PAUSES", (0.0, 0.01, 0.01))


class Flaky:
    """A write that fails with ``OperationalError("database is locked")`` ``failures`` times, then stores."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.calls = 0
        self.stored: list = []

    def __call__(self, batch: list) -> int:
        self.calls += 1
        if self.calls <= self.failures:
            raise OperationalError("database is locked")
        self.stored.extend(batch)
        return len(batch)


def test_a_write_is_tried_again_while_the_database_is_locked():
    write = Flaky(failures=2)
    assert retry_transient(write, ["a", "b"]) == 2
    assert write.calls == 3 and write.stored == ["a", "b"]


def test_a_lasting_failure_still_reaches_the_caller_after_the_retries():
    write = Flaky(failures=10)
    with pytest.raises(OperationalError, match="locked"):
        retry_transient(write, ["a"])
    assert write.calls == len(batching.RETRY_PAUSES) + 1 and not write.stored


def test_other_errors_are_not_retried():
    calls = []

    def broken(batch):
        calls.append(batch)
        raise ValueError("a bug, not contention")

    with pytest.raises(ValueError):
        retry_transient(broken, ["a"])
    assert len(calls) == 1


def test_the_background_thread_writes_a_batch_that_met_a_locked_database(settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "BACKGROUND_FLUSH_SECONDS": 0.01}
    write = Flaky(failures=2)
    thread = BatchingThread("test-flaky", write)
    for item in range(5):
        thread.submit(item)
    assert thread.flush(timeout=5)
    assert sorted(write.stored) == [0, 1, 2, 3, 4]
