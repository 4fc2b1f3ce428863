"""Which model version serves whom: the running A/B tests (``Experiment`` rows) and each subject's sticky arm.

A subject's arm is a keyed hash (HMAC-SHA256 with a key derived from ``SECRET_KEY``) of the experiment id and the
subject, read as a number in [0, 1): below the experiment's ``share_b`` it is "B", else "A". It needs no storage,
is the same in every process and on every request, and a new experiment reshuffles everyone.

Each process re-reads the running experiments at most every ``EXPERIMENT_REFRESH_SECONDS`` (and at once after its
own changes, through :func:`forget_running`); while the database does not answer it keeps the previous list.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from django.conf import settings as django_settings

from personalization.conf import settings

logger = logging.getLogger("personalization.serving")
_SALT = b"personalization.experiment-arms"


@dataclass(frozen=True)
class RunningExperiment:
    """What serving needs of a running experiment: who is in B and which version tokens serve each arm."""

    id: int
    slot: str  # "" = every slot
    share_b: float
    token_a: str
    token_b: str
    version_a: int
    version_b: int


@dataclass(frozen=True)
class Assignment:
    """A subject's place in a running experiment: its arm and the version token that serves it."""

    experiment: RunningExperiment
    arm: str  # "A" or "B"

    @property
    def token(self) -> str:
        return self.experiment.token_b if self.arm == "B" else self.experiment.token_a

    @property
    def key_part(self) -> str:
        """What the arm adds to the cache key of a list: the experiment, the arm and its version."""
        return f"exp{self.experiment.id}:{self.arm}:{self.token}"


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return hashlib.sha256(_SALT + secret.encode()).digest()


def bucket(subject: str, experiment_id: int) -> float:
    """The subject's sticky position in [0, 1) for one experiment."""
    digest = hmac.new(_key(django_settings.SECRET_KEY), f"{experiment_id}:{subject}".encode(), hashlib.sha256)
    return int.from_bytes(digest.digest()[:8], "big") / 2.0**64


def arm_of(subject: str, experiment_id: int, share_b: float) -> str:
    """"B" for a sticky ``share_b`` of subjects, else "A"."""
    return "B" if bucket(subject, experiment_id) < share_b else "A"


class _Memo:
    def __init__(self) -> None:
        self.running: tuple[RunningExperiment, ...] = ()
        self.read_at = float("-inf")
        self.lock = threading.Lock()


_memo = _Memo()


def _read() -> tuple[RunningExperiment, ...]:
    from personalization.models import Experiment

    rows = (Experiment.objects.filter(status=Experiment.Status.RUNNING)
            .select_related("version_a", "version_b").order_by("id"))
    return tuple(RunningExperiment(e.pk, e.slot, float(e.share_b), e.version_a.token,
                                   e.version_b.token, e.version_a_id, e.version_b_id)
                 for e in rows)


def running() -> tuple[RunningExperiment, ...]:
    """The running experiments, re-read at most every EXPERIMENT_REFRESH_SECONDS; the previous ones on a failure."""
    now = time.monotonic()
    if now - _memo.read_at < float(settings.EXPERIMENT_REFRESH_SECONDS):
        return _memo.running
    with _memo.lock:
        if now - _memo.read_at < float(settings.EXPERIMENT_REFRESH_SECONDS):
            return _memo.running
        try:
            _memo.running = _read()
        except Exception:  # noqa: BLE001 - serving goes on with what it knew
            logger.warning("Could not read the running experiments; keeping the previous ones", exc_info=True)
        _memo.read_at = now
    return _memo.running


def forget_running(sender: Any = None, **kwargs: Any) -> None:
    """Make the next call re-read the running experiments (a receiver of the Experiment's save and delete)."""
    _memo.read_at = float("-inf")


def assignment(subject: str, slot: str) -> Assignment | None:
    """The subject's arm in the experiment running on ``slot`` (one for this slot first, else one for every slot);
    None when none runs or the subject is anonymous (``v:`` without an id cannot be kept in one arm)."""
    if subject in {"u:", "v:"} or not subject:
        return None
    found = None
    for experiment in running():
        if experiment.slot == slot:
            found = experiment
            break
        if not experiment.slot and found is None:
            found = experiment
    if found is None:
        return None
    return Assignment(found, arm_of(subject, found.id, found.share_b))
