"""Keyed pseudonyms of subject ids inside model artifacts: a leaked artifact names nobody.

Training replaces every subject id (``u:<user id>``, ``v:<visitor id>``) by ``HMAC-SHA256(key, id)`` truncated to
128 bits, the key derived from ``SECRET_KEY``, before anything is fitted; serving hashes the visitor's subject the
same way to find their row. Versions record the scheme in ``params["subject_ids"]``; a version trained before it
(no record) keeps its raw ids and is looked up with them until it is retrained. Changing ``SECRET_KEY`` makes the
live model's users unknown (they get lists from their recent history or popular items) until the next training.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import pandas as pd
from django.conf import settings as django_settings

#: The scheme recorded on ``ModelVersion.params["subject_ids"]``.
FORMAT = "hmac-sha256-128"
_SALT = b"personalization.subject-ids"


@lru_cache(maxsize=4)
def _key(secret: str) -> bytes:
    return hashlib.sha256(_SALT + secret.encode()).digest()


def subject_key(subject: str) -> str:
    """The pseudonym of one subject id (32 hex digits)."""
    return hmac.new(_key(django_settings.SECRET_KEY), subject.encode(), hashlib.sha256).hexdigest()[:32]


def pseudonymise(events: pd.DataFrame, column: str) -> pd.DataFrame:
    """``events`` with ``column`` (categorical or plain) replaced by pseudonyms, sorted categories kept."""
    values = events[column]
    if not isinstance(values.dtype, pd.CategoricalDtype):
        values = values.astype("category")
    renamed = values.cat.rename_categories([subject_key(str(c)) for c in values.cat.categories])
    out = events.copy()
    out[column] = renamed.cat.reorder_categories(sorted(renamed.cat.categories))
    return out


def uses_pseudonyms(system: Any) -> bool:
    """Whether a loaded system was trained on pseudonyms (``registry.load_system`` records it on the object)."""
    return getattr(system, "subject_ids", "") == FORMAT


def model_subject(system: Any, subject: str) -> str:
    """The id under which ``system`` knows ``subject``."""
    return subject_key(subject) if uses_pseudonyms(system) else subject


def model_subjects(system: Any, subjects: Sequence[str]) -> list[str]:
    """:func:`model_subject` of each subject, in order."""
    if not uses_pseudonyms(system):
        return list(subjects)
    return [subject_key(s) for s in subjects]
