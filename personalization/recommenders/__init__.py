"""Candidate generators (one module per family) and rankers. Pure numpy/scipy/sklearn: no Django.

``FAMILIES`` maps a family name to its class; the modules are imported on first access.
"""

from __future__ import annotations

import importlib

_FAMILY_PATHS = {
    "popularity": ("popularity", "PopularityRecommender"),
    "itemknn": ("neighbors", "ItemKNNRecommender"),
    "transitions": ("transitions", "TransitionsRecommender"),
    "sknn": ("session_knn", "SessionKNNRecommender"),
    "content": ("content", "ContentRecommender"),
    "als": ("factorization", "ALSRecommender"),
    "bpr": ("factorization", "BPRRecommender"),
    "item2vec": ("item2vec", "Item2VecRecommender"),
    "ease": ("ease", "EASERecommender"),
}
_OTHER_PATHS = {
    "CandidateGenerator": ("base", "CandidateGenerator"),
    "top_n": ("base", "top_n"),
    "GradientBoostedRanker": ("rankers", "GradientBoostedRanker"),
    "MLPRanker": ("rankers", "MLPRanker"),
    "StackedRanker": ("rankers", "StackedRanker"),
}

__all__ = [  # noqa: RUF022
    "FAMILIES",
    "PopularityRecommender",
    "ItemKNNRecommender",
    "TransitionsRecommender",
    "SessionKNNRecommender",
    "ContentRecommender",
    "ALSRecommender",
    "BPRRecommender",
    "Item2VecRecommender",
    "EASERecommender",
    "CandidateGenerator",
    "top_n",
    "GradientBoostedRanker",
    "MLPRanker",
    "StackedRanker",
]


def _load(module: str, name: str):
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)


def __getattr__(name: str):
    if name == "FAMILIES":
        families = {family: _load(*path) for family, path in _FAMILY_PATHS.items()}
        globals()["FAMILIES"] = families
        return families
    for module, attr in (*_FAMILY_PATHS.values(), *_OTHER_PATHS.values()):
        if attr == name:
            value = _load(module, attr)
            globals()[name] = value
            return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
