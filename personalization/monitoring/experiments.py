"""A/B tests between model versions: start one, read its results with confidence intervals, end it (and promote).

Serving assigns the arms (``personalization.serving.arms``) and logs them on every list; this module turns the
lists and their attributed outcomes (``monitoring.attribution``) into per-arm figures:

- CTR (clicked positions / seen positions) and conversion (visitors with an attributed purchase / visitors): Wilson
  95% intervals per arm, two-proportion z-test (pooled) and a Wald 95% interval of the difference;
- revenue per visitor: t intervals per arm, Welch's t-test and its 95% interval of the difference;
- the sample size each arm needs to detect the minimum detectable effect (relative lift of the primary metric over
  arm A) at alpha 0.05 and power 0.8, and a warning while the sample is smaller: stopping early on a "significant"
  result inflates false positives.
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import numpy as np
from django.db import transaction
from django.utils import timezone
from scipy import stats

from personalization import registry
from personalization.models import Experiment, ModelVersion, RecommendationLog
from personalization.monitoring.attribution import attribute, outcome_events, served_lists
from personalization.serving.live import live_token, version_system, version_token
from personalization.serving.slots import slot_names

logger = logging.getLogger("personalization.monitoring")
ALPHA = 0.05
POWER = 0.8
LOADABLE = {ModelVersion.Status.READY, ModelVersion.Status.LIVE, ModelVersion.Status.RETIRED}


class ExperimentError(ValueError):
    """An experiment cannot be started or ended as asked; ``errors`` maps field names to messages."""

    def __init__(self, errors: dict[str, list[str]]):
        super().__init__("; ".join(m for ms in errors.values() for m in ms))
        self.errors = errors


# --- statistics (pure functions of counts) -----------------------------------------------------------------------

def wilson_interval(successes: int, trials: int) -> tuple[float, float] | None:
    """95% Wilson score interval of a proportion (None without trials)."""
    if trials <= 0:
        return None
    ci = stats.binomtest(int(successes), int(trials)).proportion_ci(confidence_level=1 - ALPHA, method="wilson")
    return float(ci.low), float(ci.high)


def two_proportion_test(x_a: int, n_a: int, x_b: int, n_b: int) -> dict[str, float | None]:
    """Two-sided two-proportion z-test (pooled variance) of B against A, and a Wald 95% interval of p_b - p_a."""
    if n_a <= 0 or n_b <= 0:
        return {"difference": None, "z": None, "p_value": None, "ci_low": None, "ci_high": None}
    p_a, p_b = x_a / n_a, x_b / n_b
    pooled = (x_a + x_b) / (n_a + n_b)
    se_pooled = math.sqrt(pooled * (1 - pooled) * (1 / n_a + 1 / n_b))
    se = math.sqrt(p_a * (1 - p_a) / n_a + p_b * (1 - p_b) / n_b)
    z_crit = float(stats.norm.ppf(1 - ALPHA / 2))
    z = (p_b - p_a) / se_pooled if se_pooled > 0 else None
    return {"difference": p_b - p_a, "z": z,
            "p_value": float(2 * stats.norm.sf(abs(z))) if z is not None else None,
            "ci_low": p_b - p_a - z_crit * se, "ci_high": p_b - p_a + z_crit * se}


def welch_test(a: Sequence[float], b: Sequence[float]) -> dict[str, float | None]:
    """Welch's two-sided t-test of mean(b) - mean(a), with its 95% interval."""
    if len(a) < 2 or len(b) < 2 or (np.var(a) == 0 and np.var(b) == 0):
        diff = float(np.mean(b) - np.mean(a)) if len(a) and len(b) else None
        return {"difference": diff, "t": None, "p_value": None, "ci_low": None, "ci_high": None}
    result = stats.ttest_ind(b, a, equal_var=False)
    ci = result.confidence_interval(confidence_level=1 - ALPHA)
    return {"difference": float(np.mean(b) - np.mean(a)), "t": float(result.statistic),
            "p_value": float(result.pvalue), "ci_low": float(ci.low), "ci_high": float(ci.high)}


def mean_interval(values: Sequence[float]) -> tuple[float, float] | None:
    """95% t interval of a mean (None with fewer than two values)."""
    if len(values) < 2:
        return None
    mean, sem = float(np.mean(values)), float(stats.sem(values))
    if sem == 0:
        return mean, mean
    low, high = stats.t.interval(1 - ALPHA, len(values) - 1, loc=mean, scale=sem)
    return float(low), float(high)


def sample_size_proportions(p_a: float, relative_effect: float, alpha: float = ALPHA,
                            power: float = POWER) -> int | None:
    """Units per arm to detect p_a -> p_a * (1 + relative_effect) with a two-sided z-test (Fleiss, no continuity
    correction); None when the baseline or the effect make it undefined."""
    p_b = p_a * (1 + relative_effect)
    if not (0 < p_a < 1 and 0 < p_b < 1) or p_a == p_b:
        return None
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    p_bar = (p_a + p_b) / 2
    n = (z_a * math.sqrt(2 * p_bar * (1 - p_bar)) + z_b * math.sqrt(p_a * (1 - p_a) + p_b * (1 - p_b))) ** 2
    return math.ceil(n / (p_b - p_a) ** 2)


def sample_size_means(mean_a: float, sd: float, relative_effect: float, alpha: float = ALPHA,
                      power: float = POWER) -> int | None:
    """Units per arm to detect mean_a -> mean_a * (1 + relative_effect) with standard deviation ``sd``."""
    delta = abs(mean_a * relative_effect)
    if delta <= 0 or sd <= 0:
        return None
    z_a, z_b = stats.norm.ppf(1 - alpha / 2), stats.norm.ppf(power)
    return math.ceil(2 * ((z_a + z_b) * sd / delta) ** 2)


# --- lifecycle ------------------------------------------------------------------------------------------------------

def _loadable(version: ModelVersion | None, field: str, errors: dict[str, list[str]]) -> None:
    if version is None:
        errors.setdefault(field, []).append("Choose a model version.")
        return
    if version.status not in LOADABLE or not version.artifact:
        errors.setdefault(field, []).append(
            f"Version {version.pk} is {version.get_status_display().lower()}: only a trained version (ready, live or "
            "retired) with an artifact can serve.")
        return
    _, system = version_system(version_token(version), live=live_token())
    if system is None:
        version.refresh_from_db(fields=["load_error"])
        errors.setdefault(field, []).append(
            f"Version {version.pk} cannot be loaded: {version.load_error or 'see the server log'}.")


def validate_start(*, version_a: ModelVersion | None, version_b: ModelVersion | None, share_b: float, slot: str,
                   minimum_detectable_effect: float, exclude: int | None = None) -> None:
    """Raise ExperimentError with field errors unless an experiment with these settings may start now."""
    errors: dict[str, list[str]] = {}
    if version_a is not None and version_b is not None and version_a.pk == version_b.pk:
        errors["version_b"] = ["Version B must differ from version A."]
    if not 0 < share_b < 1:
        errors["share_b"] = ["The share of version B must be between 0 and 1 (e.g. 0.5), both excluded."]
    if not 0 < minimum_detectable_effect <= 10:
        errors["minimum_detectable_effect"] = ["Give a relative lift above 0, e.g. 0.05 for +5%."]
    names = slot_names()
    if slot and names and slot not in names:
        errors["slot"] = [f"Unknown slot {slot!r}; choose one of {', '.join(names)} or leave it empty."]
    running = Experiment.objects.filter(status=Experiment.Status.RUNNING).exclude(pk=exclude)
    clash = running.filter(slot=slot).first() if slot else running.first()
    clash = clash or running.filter(slot="").first()
    if clash is not None:
        errors.setdefault("slot", []).append(
            f"Experiment {clash.pk} ({clash.name}) is running on {clash.slot or 'every slot'}: end it first; one "
            "experiment runs per slot, and one on every slot runs alone.")
    if not errors.get("version_b"):
        _loadable(version_a, "version_a", errors)
        _loadable(version_b, "version_b", errors)
    if errors:
        raise ExperimentError(errors)


def end(experiment: Experiment, *, user: Any = None, promote_winner: bool = False) -> Experiment:
    """Stop serving the experiment; with ``promote_winner`` make its winner live (forced). Records who and when.

    The winner is B when it beats A significantly on the primary metric (p < 0.05), else A (the control)."""
    with transaction.atomic():
        experiment = Experiment.objects.select_for_update().get(pk=experiment.pk)
        if experiment.status != Experiment.Status.RUNNING:
            raise ExperimentError({"status": [f"Experiment {experiment.pk} has already ended."]})
        summary = results(experiment) if promote_winner else None
        experiment.status = Experiment.Status.ENDED
        experiment.ended_at = timezone.now()
        experiment.ended_by = user if getattr(user, "pk", None) else None
        experiment.outcome = "Ended without promoting."
        if summary is not None:
            winner = summary["winner"]
            version = experiment.version_b if winner == "B" else experiment.version_a
            if version.status != ModelVersion.Status.LIVE:
                registry.promote(version, force=True)
            experiment.promoted = version
            experiment.outcome = f"Ended; arm {winner} won: version {version.pk} is live. {summary['verdict']}"
        experiment.save()
    logger.info("%s ended experiment %s: %s", user, experiment.pk, experiment.outcome)
    return experiment


# --- results ----------------------------------------------------------------------------------------------------------

def visitor_outcomes(experiment: Experiment) -> dict[str, dict[str, Any]]:
    """Per subject of the experiment: arm, lists, seen and clicked positions, purchases, revenue."""
    lists = served_lists(RecommendationLog.objects.filter(experiment=experiment))
    per: dict[str, dict[str, Any]] = defaultdict(lambda: {"arm": "", "lists": 0, "impressions": 0, "clicks": 0,
                                                           "purchases": 0, "revenue": 0.0})
    if not lists:
        return {}
    first = min(x.created_at for x in lists.values())
    last = max(x.created_at for x in lists.values()) + timedelta(microseconds=1)
    attribution = attribute(lists, outcome_events(first, last))
    for served in lists.values():
        row = per[served.subject]
        row["arm"] = served.arm
        row["lists"] += 1
    for (list_id, _position), outcome in attribution.outcomes.items():
        row = per[lists[list_id].subject]
        row["impressions"] += outcome.impressed
        row["clicks"] += outcome.clicked
        row["purchases"] += outcome.purchases
        row["revenue"] += outcome.revenue
    return dict(per)


def _arm_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    impressions = sum(r["impressions"] for r in rows)
    clicks = sum(r["clicks"] for r in rows)
    converted = sum(1 for r in rows if r["purchases"])
    revenue = [r["revenue"] for r in rows]
    visitors = len(rows)
    return {
        "visitors": visitors, "lists": sum(r["lists"] for r in rows), "impressions": impressions, "clicks": clicks,
        "ctr": clicks / impressions if impressions else None, "ctr_ci": wilson_interval(clicks, impressions),
        "converted": converted, "conversion": converted / visitors if visitors else None,
        "conversion_ci": wilson_interval(converted, visitors),
        "revenue": float(sum(revenue)), "revenue_per_visitor": float(np.mean(revenue)) if revenue else None,
        "revenue_per_visitor_ci": mean_interval(revenue), "_revenue": revenue,
    }


def results(experiment: Experiment) -> dict[str, Any]:
    """Per-arm figures, tests, the needed sample size and a verdict in words (see the module docstring)."""
    by_arm: dict[str, list[dict[str, Any]]] = {"A": [], "B": []}
    for row in visitor_outcomes(experiment).values():
        by_arm.setdefault(row["arm"] or "A", []).append(row)
    arms = {arm: _arm_summary(by_arm[arm]) for arm in ("A", "B")}
    a, b = arms["A"], arms["B"]
    tests = {
        "ctr": two_proportion_test(a["clicks"], a["impressions"], b["clicks"], b["impressions"]),
        "conversion": two_proportion_test(a["converted"], a["visitors"], b["converted"], b["visitors"]),
        "revenue": welch_test(a.pop("_revenue"), b.pop("_revenue")),
    }
    metric = experiment.primary_metric
    mde = float(experiment.minimum_detectable_effect)
    if metric == Experiment.Metric.REVENUE:
        unit = "visitors"
        values = [r["revenue"] for r in by_arm["A"]]
        needed = sample_size_means(a["revenue_per_visitor"] or 0.0, float(np.std(values, ddof=1))
                                   if len(values) > 1 else 0.0, mde)
    else:
        unit = "impressions" if metric == Experiment.Metric.CTR else "visitors"
        needed = sample_size_proportions(a[metric] or 0.0, mde)
    have = min(a[unit], b[unit])
    test = tests[metric]
    significant = test["p_value"] is not None and test["p_value"] < ALPHA
    winner = "B" if significant and (test["difference"] or 0) > 0 else "A"
    warning = ""
    if needed is None:
        warning = (f"Not enough data in arm A to size the test yet (no baseline {metric}): keep it running; do not "
                   "stop it early.")
    elif have < needed:
        warning = (f"Each arm needs {needed} {unit} to detect a {mde:.0%} lift of {metric} (alpha 0.05, power 0.8); "
                   f"the smaller arm has {have}. Do not stop now, even on a significant result: peeking early makes "
                   "false winners likely.")
    if test["p_value"] is None:
        verdict = f"No test of {metric} yet (too little data)."
    elif significant:
        verdict = (f"{metric}: B {'beats' if winner == 'B' else 'is worse than'} A significantly "
                   f"(p = {test['p_value']:.4f}).")
    else:
        verdict = f"{metric}: no significant difference (p = {test['p_value']:.4f}); A (the control) stays."
    return {"experiment": experiment.pk, "primary_metric": metric, "minimum_detectable_effect": mde, "arms": arms,
            "tests": tests, "sample_size_per_arm": needed, "sample_unit": unit, "smaller_arm_sample": have,
            "enough_data": needed is not None and have >= needed, "warning": warning, "significant": significant,
            "winner": winner, "verdict": verdict}
