"""The model bundle for on-device re-ranking (``GET bundle/``, read by tracker.js).

A bundle is a compact, versioned slice of the live model: int8 item vectors (one float32 scale per vector) of a
candidate pool of a few hundred items, the visitor's vector in the same space, and the pool's display fields. The
tracker keeps it in localStorage and re-orders ``[data-personalization-rerank]`` slots by the dot product of each
item's vector with a session vector it updates locally, with no request per page.

Two forms:

- **segment** (``?segment=all|country=GB|device=mobile``, or a visitor without history): the same bytes for everyone
  in the segment (popular items of the segment, no user vector), so a CDN may cache it;
- **personal**: the visitor's recommendations, items similar to their recent history and popular items, plus their
  vector: the ALS embedding of a known user, else the ALS embedding recomputed from their recent items, else the
  mean of those items' vectors.

Format 1 (JSON)::

    {"format": 1, "model_version": 7, "recommendation_id": "...", "segment": "all" | null, "family": "als",
     "dims": 64, "items": ["product:1", ...],
     "vectors": base64(int8[len(items) * dims], row-major), "scales": base64(float32 little-endian[len(items)]),
     "user": {"vector": base64(int8[dims]), "scale": 0.01, "source": "als"} | null,
     "display": {"title": [...], "url": [...], "price": [...], "category": [...]},   # one entry per item
     "ttl": 3600, "message": ""}

An item's vector is ``int8 * scale``. The pool holds only items that both have a vector and exist in the catalog.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import re
from typing import Any

import numpy as np
from scipy import sparse

from personalization.subjects import model_subject

logger = logging.getLogger("personalization.delivery")

FORMAT = 1
POOL_SIZE = 300  # items per bundle
RECOMMENDED = 100  # of which at most this many are the visitor's recommendations
SIMILAR_SOURCES = 5  # recent history items whose similar items join the pool ...
SIMILAR_PER_ITEM = 20  # ... this many each
SEGMENT_TTL = 3600  # seconds a segment bundle may be cached (CDN and browser)
PERSONAL_TTL = 300  # seconds a personal bundle may be kept by the browser
FAMILIES = ("als", "bpr", "item2vec")  # where the item vectors come from, first fitted one wins
SEGMENT_RE = re.compile(r"^(all|(country|device)=[A-Za-z0-9_.-]{1,32})$")
_CACHE_PREFIX = "personalization:bundle:v1:"


class NoModel(LookupError):
    """No live model, or the live model has no item vectors: there is nothing to bundle."""


def valid_segment(segment: str) -> bool:
    return bool(SEGMENT_RE.match(segment))


# == quantization ==================================================================================================
def quantize(vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(int8 codes, float32 scales)``: each row scaled so its largest absolute value maps to 127.

    ``codes * scales[:, None]`` restores the rows within ``scale / 2`` per element (all-zero rows get scale 1).
    """
    v = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
    peak = np.abs(v).max(axis=1) if v.size else np.zeros(len(v), dtype=np.float32)
    scales = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    codes = np.clip(np.rint(v / scales[:, None]), -127, 127).astype(np.int8)
    return codes, scales


def dequantize(codes: np.ndarray, scales: np.ndarray) -> np.ndarray:
    return np.asarray(codes, dtype=np.float32) * np.asarray(scales, dtype=np.float32).reshape(-1, 1)


def b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array).astype(array.dtype.newbyteorder("<")).tobytes()).decode()


def decode(bundle: dict[str, Any]) -> tuple[list[str], np.ndarray, np.ndarray | None]:
    """``(item keys, item vectors float32 (n x dims), user vector or None)`` of a bundle (the inverse of build)."""
    dims, keys = int(bundle["dims"]), list(bundle["items"])
    codes = np.frombuffer(base64.b64decode(bundle["vectors"]), dtype=np.int8).reshape(len(keys), dims)
    scales = np.frombuffer(base64.b64decode(bundle["scales"]), dtype="<f4")
    user = None
    if bundle.get("user"):
        user = np.frombuffer(base64.b64decode(bundle["user"]["vector"]), dtype=np.int8).astype(np.float32)
        user = user * np.float32(bundle["user"]["scale"])
    return keys, dequantize(codes, scales), user


def etag(bundle: dict[str, Any]) -> str:
    """A weak ETag over the bundle's content. The recommendation id is left out: two personal bundles with the same
    pool, vectors and model are equivalent for the tracker even though each request logs its own recommendation."""
    body = {k: v for k, v in bundle.items() if k != "recommendation_id"}
    digest = hashlib.sha1(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()[:24]
    return f'W/"{digest}"'


# == the live model's vector space =================================================================================
def item_space(system: Any) -> tuple[str, np.ndarray, np.ndarray]:
    """``(family, item vectors (items x dims), has-vector mask)`` of the first fitted family in FAMILIES."""
    families = getattr(system, "families_", {}) or {}
    for name in FAMILIES:
        model = families.get(name)
        if model is None:
            continue
        vectors = getattr(model, "item_factors_", None)
        if vectors is None:
            vectors = getattr(model, "item_vectors_", None)
        if vectors is None:
            continue
        vectors = np.asarray(vectors, dtype=np.float32)
        mask = np.asarray(getattr(model, "has_vector_", np.ones(len(vectors), dtype=bool)), dtype=bool)
        return name, vectors, mask & (np.abs(vectors).sum(axis=1) > 0)
    raise NoModel(f"The live model has no item vectors: train it with one of the families {', '.join(FAMILIES)} "
                  f'(PERSONALIZATION["TRAINING"]["models"]).')


def user_vector(system: Any, family: str, subject: str, history: list[str]) -> tuple[np.ndarray | None, str]:
    """The visitor's vector and where it came from: ``als`` (training user or recomputed from ``history``) or
    ``history-mean`` (mean of the recent items' vectors); ``(None, "")`` when neither is known."""
    model = system.families_[family]
    matrix = system.matrix_
    row = matrix.user_index.get(model_subject(system, subject), -1)
    user_factors = getattr(model, "user_factors_", None)
    if row >= 0 and user_factors is not None and row < len(user_factors):
        return np.asarray(user_factors[row], dtype=np.float32), family
    cols = matrix.cols_for(history)
    cols = np.unique(cols[cols >= 0])
    if not len(cols):
        return None, ""
    if hasattr(model, "user_embedding") and user_factors is not None:
        try:
            rows = sparse.csr_matrix((np.ones(len(cols), dtype=np.float32), cols, [0, len(cols)]),
                                     shape=(1, matrix.shape[1]))
            vector = np.asarray(model.user_embedding(rows), dtype=np.float32).reshape(-1)
            if np.isfinite(vector).all() and np.abs(vector).sum() > 0:
                return vector, family
        except Exception:  # noqa: BLE001 - the mean below is a fine answer
            logger.warning("personalization: could not embed a history with %s", family, exc_info=True)
    _, vectors, mask = item_space(system)
    cols = cols[mask[cols]]
    if not len(cols):
        return None, ""
    return vectors[cols].mean(axis=0), "history-mean"


# == building =======================================================================================================
def _segment_context(segment: str) -> dict[str, str]:
    if segment == "all":
        return {}
    key, _, value = segment.partition("=")
    return {key: value}


def _popular(system: Any, segment: str, n: int) -> list[str]:
    """The live model's popular items of a segment (its ``country=``/``device=`` ranking, else overall)."""
    rows = system.recommend(["v:"], n=n, context=_segment_context(segment), filter_seen=False)
    return [key for key, _, _ in rows[0]]


def _assemble(system: Any, version: int, family: str, candidates: list[str], pool_size: int,
              extra: dict[str, Any]) -> dict[str, Any]:
    from personalization.catalog import get_catalog

    _, vectors, mask = item_space(system)
    matrix = system.matrix_
    keys: list[str] = []
    for key in dict.fromkeys(candidates):
        col = matrix.item_index.get(key, -1)
        if col >= 0 and mask[col]:
            keys.append(key)
    display = get_catalog().display(keys) if keys else {}
    keys = [k for k in keys if k in display][:pool_size]
    codes, scales = quantize(vectors[matrix.cols_for(keys)] if keys else np.zeros((0, vectors.shape[1])))

    def price(value: Any) -> float | None:
        try:
            return None if value is None else round(float(value), 2)
        except (TypeError, ValueError):
            return None

    return {
        "format": FORMAT,
        "model_version": version,
        "family": family,
        "dims": int(vectors.shape[1]),
        "items": keys,
        "vectors": b64(codes.reshape(-1)),
        "scales": b64(scales),
        "display": {
            "title": [str(display[k].get("title") or "") for k in keys],
            "url": [str(display[k].get("url") or "") for k in keys],
            "price": [price(display[k].get("price")) for k in keys],
            "category": [str(display[k].get("category") or "") for k in keys],
        },
        "message": _load_message() or ("" if keys else "The live model knows none of the catalog's items yet."),
        **extra,
    }


def unavailable_bundle(segment: str | None, message: str) -> dict[str, Any]:
    """An empty bundle (the tracker leaves slots in their server order) that the browser keeps one minute."""
    return {"format": FORMAT, "model_version": None, "recommendation_id": "", "segment": segment, "family": "",
            "dims": 0, "items": [], "vectors": "", "scales": "", "user": None,
            "display": {"title": [], "url": [], "price": [], "category": []}, "ttl": 60, "message": message}


def live_model() -> tuple[int, Any]:
    """(version id, system) of the model serving uses; NoModel without one (the message says why)."""
    from personalization import serving

    version, system = serving.live_system()
    problem = serving.load_problem()
    if system is None or version is None:
        if problem:
            raise NoModel(f"{problem}. Retrain, or roll back to a previous version.")
        raise NoModel("No live model yet: train one (manage.py personalization_train) and the bundle will follow.")
    return version, system


def _load_message() -> str:
    """What a bundle built from an older model than the live one says (empty when the live one is served)."""
    from personalization import serving

    problem = serving.load_problem()
    return f"{problem}. This bundle comes from the previous model." if problem else ""


def segment_bundle(segment: str = "all", pool_size: int = POOL_SIZE) -> dict[str, Any]:
    """The bundle everyone in ``segment`` gets (cached per live version and segment). NoModel without a model."""
    from personalization import shared_cache

    if not valid_segment(segment):
        raise ValueError(f"Unknown segment {segment!r}: use 'all', 'country=<code>' or 'device=<type>'.")
    version, system = live_model()
    cache = shared_cache.cache()
    key = f"{_CACHE_PREFIX}{version}:{segment}:{pool_size}"
    try:
        hit = cache.get(key)
    except Exception:  # noqa: BLE001
        hit = None
    if hit is not None:
        message = _load_message()  # the live version may have failed to load since this bundle was cached
        return {**hit, "message": message} if message else hit
    family = item_space(system)[0]
    rec_id = hashlib.sha1(f"bundle:{version}:{segment}".encode()).hexdigest()[:32]
    bundle = _assemble(system, version, family, _popular(system, segment, pool_size * 2), pool_size,
                       {"recommendation_id": rec_id, "segment": segment, "user": None, "ttl": SEGMENT_TTL})
    try:
        cache.set(key, bundle, timeout=SEGMENT_TTL)
    except Exception:  # noqa: BLE001
        pass
    return bundle


def knows(system: Any, subject: str) -> bool:
    """Whether the model was trained on this visitor (under the artifact's pseudonym of the subject)."""
    return model_subject(system, subject) in system.matrix_.user_index


def visitor_history(subject: str) -> list[str]:
    """The visitor's recent positive item events, oldest first (serving's visitor state)."""
    from personalization import serving

    if subject in {"u:", "v:"}:
        return []
    return list(serving.visitor_state(subject).history)


def personal_bundle(request: Any, subject: str, history: list[str], pool_size: int = POOL_SIZE) -> dict[str, Any]:
    """The visitor's own bundle: their recommendations, items like their recent ones, popular items, their vector."""
    from personalization import serving

    version, system = live_model()
    family = item_space(system)[0]
    result = serving.recommend(request, RECOMMENDED)
    candidates = [r.item for r in result.items]
    for key in reversed(history[-SIMILAR_SOURCES:]):
        candidates += [r.item for r in serving.similar_items(key, SIMILAR_PER_ITEM)]
    candidates += list(reversed(history))
    candidates += _popular(system, "all", pool_size * 2)
    vector, source = user_vector(system, family, subject, history)
    user = None
    if vector is not None:
        codes, scales = quantize(vector)
        user = {"vector": b64(codes.reshape(-1)), "scale": float(scales[0]), "source": source}
    return _assemble(system, version, family, candidates, pool_size,
                     {"recommendation_id": result.recommendation_id, "segment": None, "user": user,
                      "ttl": PERSONAL_TTL})
