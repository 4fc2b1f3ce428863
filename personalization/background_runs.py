"""Runs a service call in a daemon thread of this process: the fallback when no Celery worker can take a task.

The tasks module uses it when the broker cannot be reached or Celery runs tasks eagerly (a web request must not
train inside the request). Each run has a name (e.g. ``training-v12``) and the reason it runs here, which the faces
read back to tell staff where their run went. A run's database connections are closed when it ends. A daemon
thread dies with its process: a run killed that way stops writing its heartbeat and is reaped (DESIGN rule 10).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from django.db import connections

__all__ = ["reason_for", "running", "start", "wait"]

logger = logging.getLogger("personalization.background_runs")
_lock = threading.Lock()
_threads: dict[str, threading.Thread] = {}
_reasons: OrderedDict[str, str] = OrderedDict()  # the latest runs' reasons, for the faces' messages
_KEEP_REASONS = 200


def start(name: str, func: Callable[..., Any], *, reason: str, **kwargs: Any) -> threading.Thread:
    """Run ``func(**kwargs)`` in a daemon thread named ``personalization-<name>``; errors are logged, not raised."""

    def run() -> None:
        try:
            func(**kwargs)
        except Exception:  # noqa: BLE001 - a background run has nobody to raise to: the log is its report
            logger.exception("Background run %s failed", name)
        finally:
            connections.close_all()  # this thread's connections only (they are per thread)
            with _lock:
                if _threads.get(name) is threading.current_thread():
                    del _threads[name]

    thread = threading.Thread(target=run, name=f"personalization-{name}", daemon=True)
    with _lock:
        _threads[name] = thread
        _reasons[name] = reason
        _reasons.move_to_end(name)
        while len(_reasons) > _KEEP_REASONS:
            _reasons.popitem(last=False)
    logger.info("Running %s in a background thread of this process: %s", name, reason)
    thread.start()
    return thread


def reason_for(name: str) -> str | None:
    """Why the run ``name`` was started in this process (None: it was not, e.g. a Celery worker has it)."""
    with _lock:
        return _reasons.get(name)


def running() -> list[str]:
    """Names of the runs still going in this process."""
    with _lock:
        return [name for name, thread in _threads.items() if thread.is_alive()]


def wait(timeout: float | None = None) -> bool:
    """Wait for every run of this process to end, runs they start included (a command before it exits, a test).

    False when some run is still going after ``timeout`` seconds.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        with _lock:
            threads = [t for t in _threads.values() if t.is_alive() and t is not threading.current_thread()]
        if not threads:
            return True
        for thread in threads:
            thread.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        if deadline is not None and time.monotonic() >= deadline:
            return not any(thread.is_alive() for thread in threads)
