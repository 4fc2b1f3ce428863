"""The engagement score of a notification's recipient: a logistic of the user's RFM features, blended with the live
ranker's propensity when a model ranks the user's own candidates.

**Engagement score** (0..1, :func:`engagement`): a logistic of the user's RFM features
(:func:`~personalization.pipeline.features.user_features` over ``NOTIFICATION_SCORE_WINDOW_DAYS``)::

    rfm = 1 / (1 + exp(-(intercept + recency_days * r + log1p(frequency) * f + log1p(active_days) * a
                          + log1p(monetary) * m)))

with ``NOTIFICATION_SCORE_WEIGHTS`` (defaults -1.0, -0.15, 0.6, 0.4, 0.2: a user seen yesterday with 10 events on
three days scores ~0.7, one seen a month ago with two events ~0.01, a user without events 0). When a model is live
and ranks the user's own candidates, its ranker's predicted probability that the user interacts with their best
recommendation, ``p``, is blended in: ``score = (1 - w) * rfm + w * p`` with ``w = NOTIFICATION_MODEL_WEIGHT``.
The weights are hand-set, not fitted: the score orders users sensibly and stays in 0..1, but it is a probability
only in shape until the weights are fitted to a site's outcomes (see the README).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils import timezone

from personalization.conf import DEFAULTS, settings
from personalization.delivery.notifications.triggers import PURCHASE
from personalization.models import Event

CHUNK = 500


def score_weights() -> dict[str, float]:
    """The RFM weights: ``NOTIFICATION_SCORE_WEIGHTS`` merged key by key over the defaults."""
    return {**DEFAULTS["NOTIFICATION_SCORE_WEIGHTS"], **(settings.NOTIFICATION_SCORE_WEIGHTS or {})}


def rfm_score(recency_days: float, frequency: float, active_days: float, monetary: float,
              weights: dict[str, float] | None = None) -> float:
    """The logistic RFM score in 0..1 (0 for a user without events); see the module docstring."""
    if not frequency or frequency <= 0:
        return 0.0
    w = weights or score_weights()
    z = (w["intercept"] + w["recency_days"] * max(float(recency_days), 0.0)
         + w["log_frequency"] * math.log1p(max(float(frequency), 0.0))
         + w["log_active_days"] * math.log1p(max(float(active_days), 0.0))
         + w["log_monetary"] * math.log1p(max(float(monetary or 0.0), 0.0)))
    z = max(min(z, 50.0), -50.0)
    return 1.0 / (1.0 + math.exp(-z))


@dataclass
class Engagement:
    """A user's score (0..1), its parts (the RFM logistic, the live ranker's propensity when it ranked the user's
    candidates) and the RFM features behind it."""

    score: float
    rfm: float
    model: float | None = None
    features: dict[str, float] = field(default_factory=dict)


class Scorer:
    """Scores users at ``now``, memoizing RFM features (fetched in bulk) and one ``recommend()`` call per user."""

    def __init__(self, now: datetime) -> None:
        self.now = now
        self._features: dict[int, dict[str, float]] = {}
        self._purchased: dict[int, set[str]] = defaultdict(set)
        self._recs: dict[int, Any] = {}
        self._engagement: dict[int, Engagement] = {}

    def prefetch(self, user_ids: Iterable[int]) -> None:
        """RFM features of the users (one query per chunk), via ``pipeline.features.user_features``."""
        import pandas as pd

        from personalization.pipeline.columns import EVENT, ITEM, TIMESTAMP, USER, VALUE
        from personalization.pipeline.features import user_features

        todo = sorted({int(u) for u in user_ids} - set(self._features))
        since = self.now - timedelta(days=float(settings.NOTIFICATION_SCORE_WINDOW_DAYS))
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            for uid in chunk:
                self._features[uid] = {}
            rows = list(Event.objects.filter(user_id__in=chunk, occurred_at__gte=since, occurred_at__lte=self.now)
                        .exclude(event_type="impression")
                        .values_list("user_id", "item_key", "event_type", "occurred_at", "value").order_by())
            if not rows:
                continue
            frame = pd.DataFrame(rows, columns=[USER, ITEM, EVENT, TIMESTAMP, VALUE])
            frame[TIMESTAMP] = pd.to_datetime(frame[TIMESTAMP], utc=True)
            frame[VALUE] = pd.to_numeric(frame[VALUE], errors="coerce")
            for uid, item in frame.loc[frame[EVENT] == PURCHASE, [USER, ITEM]].itertuples(index=False):
                self._purchased[int(uid)].add(item)
            table = user_features(frame, now=pd.Timestamp(self.now))
            for uid, row in table.iterrows():
                self._features[int(uid)] = {k: float(v) for k, v in row.items()}

    def features(self, user_id: int) -> dict[str, float]:
        """The user's RFM features (empty without events in the window)."""
        if user_id not in self._features:
            self.prefetch([user_id])
        return self._features[user_id]

    def purchased(self, user_id: int) -> set[str]:
        """Items the user bought in the window (not recommended to them again)."""
        self.features(user_id)
        return self._purchased[user_id]

    def recommendations(self, user: Any) -> Any:
        """``serving.recommend()`` for the user (memoized for the run)."""
        if user.pk not in self._recs:
            from personalization.serving import recommend

            self._recs[user.pk] = recommend(user, n=max(int(settings.NOTIFICATION_ITEMS), 1) * 3)
        return self._recs[user.pk]

    def model_propensity(self, user: Any) -> float | None:
        """The live ranker's probability for the user's best candidate; None without a live ranked answer."""
        result = self.recommendations(user)
        if result.fallback or not result.items:
            return None
        scores = [r.score for r in result.items]
        if all(str(r.reason).startswith("popularity") for r in result.items):
            return None  # the model does not know this user: it answered with popular items, not a propensity
        if not all(0.0 <= s <= 1.0 for s in scores):
            return None  # no ranker: fusion scores, not probabilities
        return max(scores)

    def engagement(self, user: Any) -> Engagement:
        """The user's engagement (memoized for the run)."""
        if user.pk in self._engagement:
            return self._engagement[user.pk]
        feats = self.features(user.pk)
        rfm = rfm_score(feats.get("user_recency_days", 0.0), feats.get("user_frequency", 0.0),
                        feats.get("user_active_days", 0.0), feats.get("user_monetary", 0.0)) if feats else 0.0
        model = self.model_propensity(user) if feats else None
        weight = min(max(float(settings.NOTIFICATION_MODEL_WEIGHT), 0.0), 1.0)
        score = rfm if model is None else (1.0 - weight) * rfm + weight * model
        result = Engagement(score=float(min(max(score, 0.0), 1.0)), rfm=rfm, model=model, features=feats)
        self._engagement[user.pk] = result
        return result


def engagement(users: Iterable[Any], now: datetime | None = None) -> dict[int, Engagement]:
    """Engagement of each user at ``now`` (default: the current time), keyed by user id."""
    users = list(users)
    scorer = Scorer(now or timezone.now())
    scorer.prefetch(u.pk for u in users)
    return {u.pk: scorer.engagement(u) for u in users}


