"""Offline evaluation: ranking metrics, the train/test protocol, system evaluation, tuning. No Django."""

from .metrics import (
    catalog_coverage,
    hit_rate_at_k,
    hit_rate_at_k_per_user,
    item_counts,
    log_loss,
    map_at_k,
    map_at_k_per_user,
    mrr_at_k,
    mrr_at_k_per_user,
    ndcg_at_k,
    ndcg_at_k_per_user,
    novelty,
    popularity_bias,
    precision_at_k,
    precision_at_k_per_user,
    recall_at_k,
    recall_at_k_per_user,
    roc_auc,
)
from .protocol import evaluate_recommender, sample_users
from .system import evaluate_system, evaluation_users
from .tuning import TuningResult, tune

__all__ = [
    "TuningResult",
    "catalog_coverage",
    "evaluate_recommender",
    "evaluate_system",
    "evaluation_users",
    "hit_rate_at_k",
    "hit_rate_at_k_per_user",
    "item_counts",
    "log_loss",
    "map_at_k",
    "map_at_k_per_user",
    "mrr_at_k",
    "mrr_at_k_per_user",
    "ndcg_at_k",
    "ndcg_at_k_per_user",
    "novelty",
    "popularity_bias",
    "precision_at_k",
    "precision_at_k_per_user",
    "recall_at_k",
    "recall_at_k_per_user",
    "roc_auc",
    "sample_users",
    "tune",
]
