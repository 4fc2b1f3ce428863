"""Cache keys shared by several serving modules: the live version, the catalog generation, visitor states, lists."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from personalization.freshness import PREFIX, safe_part

#: The live model version token, published when a model goes live (:func:`serving.live.publish_live_version`).
LIVE_KEY = f"{PREFIX}live-version"
#: The live version's update revision as ``"<live token>#<revision>"`` (:func:`serving.live.publish_revision`): when
#: it changes every process swaps in the live model with the newer update delta (``personalization.updates``).
REVISION_KEY = f"{PREFIX}live-revision"
#: Cache key of the catalog generation: when it changes (or the cache is cleared) every process drops its
#: in-process item table. Read in the same round trip as the live version, so it costs nothing per request.
CATALOG_GEN_KEY = f"{PREFIX}catalog-gen"
#: Prefix of the recommendation list entries (:func:`rec_key`).
REC_PREFIX = f"{PREFIX}rec:"


def state_key(subject: str) -> str:
    """Cache key of the visitor state of ``subject``."""
    return f"{PREFIX}vstate:{safe_part(subject)}"


def rec_key(subject: str, parts: Sequence[Any]) -> str:
    """One entry per visitor and parameters; it holds the model token and visitor version it was computed under."""
    digest = hashlib.sha1(repr((subject, *parts)).encode()).hexdigest()
    return f"{REC_PREFIX}{digest}"
