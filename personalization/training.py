"""The offline service: extract -> clean -> split -> fit -> evaluate -> register -> promote.

Its door for the faces (admin, API, management commands, Celery tasks): :func:`train`, :func:`enqueue`,
:func:`cancel`, :func:`promote`, :func:`rollback`, :func:`families`, :func:`evaluate_version`, :func:`in_progress`,
:func:`reap_stale_runs`. ``train()`` records its stage, progress and heartbeat on the ModelVersion row, can be
cancelled between stages, and never touches the live version until the new artifact is completely stored; a run
whose heartbeat goes stale is marked failed and its work folder removed.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
import traceback
import weakref
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pandas as pd
from django.db import connections, transaction
from django.db.models import Max, Q
from django.utils import timezone

from personalization import background_runs, registry, runtime
from personalization.conf import settings
from personalization.evaluation.system import evaluate_system, evaluation_users
from personalization.extraction import extract_events, extract_feedback, load_items
from personalization.models import Event, ModelVersion
from personalization.pipeline._util import json_safe, utc_series, utc_timestamp
from personalization.pipeline.clean import clean_events
from personalization.pipeline.columns import TIMESTAMP, USER
from personalization.pipeline.split import adaptive_cutoff, temporal_split
from personalization.registry import PromotionRefused
from personalization.signals import training_cancelled, training_queued
from personalization.subjects import FORMAT as SUBJECT_IDS
from personalization.subjects import pseudonymise

__all__ = ["PromotionRefused", "TrainingCancelled", "TrainingError", "cancel", "enqueue", "evaluate_version",
           "families", "heartbeat_seconds", "in_progress", "new_version", "promote", "queued_after",
           "reap_stale_runs", "rollback", "run_name", "runs_here", "stale_after", "train"]

logger = logging.getLogger("personalization.training")
TEST_SHARE = 0.2  # the test window holds at most this share of the events
#: The fits that are only evaluated (the configuration choice, tuning, the test-window fit when a refit on
#: everything follows, a live version's paired refit) score known users, whom the user ranker orders: they skip the
#: session ranker, and the served fit alone trains it.
EVALUATED_ONLY = {"session_ranker": False}


class TrainingCancelled(Exception):
    """Raised between stages when staff cancelled the version."""


class TrainingError(Exception):
    """Training cannot proceed (e.g. not enough events); the message says what to do."""


class Progress:
    """Writes stage, percent and heartbeat to the version row; checks for cancellation at each report.

    From the first report on, a heartbeat thread also stamps the row every ``HEARTBEAT_SECONDS`` while the run is
    ``training``, so a long stage (a big fit) never looks like a dead run. It stops when this object is dropped
    (the run ended), when the thread that trains ends, or when the row stops training.
    """

    def __init__(self, version: ModelVersion, echo: Callable[[str, float], None] | None = None):
        self.version = version
        self.echo = echo
        self._heartbeat: _Heartbeat | None = None

    def __call__(self, stage: str, fraction: float) -> None:
        fraction = max(0.0, min(1.0, float(fraction)))
        ModelVersion.objects.filter(pk=self.version.pk).update(stage=stage[:64], progress=round(fraction * 100, 1),
                                                               heartbeat_at=timezone.now())
        # inside a transaction no other connection sees the row: nothing to keep alive from another thread
        if self._heartbeat is None and not transaction.get_connection().in_atomic_block:
            self._heartbeat = _Heartbeat(self.version.pk)
            weakref.finalize(self, self._heartbeat.stopped.set)
            self._heartbeat.start()
        if self.echo:
            self.echo(stage, fraction)
        if ModelVersion.objects.filter(pk=self.version.pk, cancel_requested=True).exists():
            raise TrainingCancelled(f"Version {self.version.pk} was cancelled during {stage}.")

    def scaled(self, start: float, end: float) -> Callable[[str, float], None]:
        return lambda stage, fraction: self(stage, start + (end - start) * fraction)


HEARTBEAT_SECONDS = 20.0  # a live run's heartbeat is never much older than this ...
MISSED_BEATS = 3  # ... and a run that missed this many beats lost its process (cancel closes it at once)


def heartbeat_seconds() -> float:
    """How often a live run stamps its heartbeat: every HEARTBEAT_SECONDS, and at least six times per
    ``TRAINING['stale_after_seconds']``, so a live run is never taken for a dead one."""
    return min(HEARTBEAT_SECONDS, stale_after().total_seconds() / 6)


class _Heartbeat(threading.Thread):
    """Stamps ``heartbeat_at`` of a training version until told to stop, its training thread ends or the row
    stops training."""

    def __init__(self, version_id: int):
        super().__init__(name=f"personalization-heartbeat-v{version_id}", daemon=True)
        self.version_id = version_id
        self.owner = threading.current_thread()
        self.stopped = threading.Event()
        self.interval = heartbeat_seconds()

    def run(self) -> None:
        try:
            while not self.stopped.wait(self.interval) and self.owner.is_alive():
                beating = ModelVersion.objects.filter(pk=self.version_id, status=ModelVersion.Status.TRAINING).update(
                    heartbeat_at=timezone.now())
                if not beating:
                    break
        except Exception:  # noqa: BLE001 - the run's own reports still stamp the row
            logger.warning("Heartbeat of version %s stopped", self.version_id, exc_info=True)
        finally:
            connections.close_all()  # this thread's connections only


def train(
    version: ModelVersion,
    *,
    until: datetime | None = None,
    models: list[str] | None = None,
    tune: bool = False,
    echo: Callable[[str, float], None] | None = None,
    promote_if_better: bool = True,
) -> ModelVersion:
    """Train, validate on the later window, store and (when it wins) promote one version. Idempotent per version."""
    from personalization.evaluation.configurations import MAX_USERS as CHOICE_MAX_USERS
    from personalization.evaluation.configurations import choose_configuration
    from personalization.recommenders.system import RecommenderSystem

    if version.status in {ModelVersion.Status.READY, ModelVersion.Status.LIVE, ModelVersion.Status.RETIRED}:
        return version  # already trained: a retried task must not train twice
    config = dict(settings.TRAINING)
    families = {name: config["models"].get(name, {}) for name in (models or config["models"])}
    progress = Progress(version, echo)
    workdir = Path(tempfile.mkdtemp(prefix=work_folder_prefix(version.pk, version.created_at)))
    try:
        version.status = ModelVersion.Status.TRAINING
        version.started_at = timezone.now()
        version.error = ""
        version.save(update_fields=["status", "started_at", "error"])
        progress("extract", 0.0)
        until = until or timezone.now()
        # The window ends at the latest event before `until`, not at the clock: an imported history (or a
        # quiet site) still trains on its most recent `window_days`.
        latest = Event.objects.filter(occurred_at__lt=until).aggregate(m=Max("occurred_at"))["m"] or until
        since = latest - timedelta(days=config["window_days"])
        events = pseudonymise(extract_events(since, until), USER)  # artifacts never hold a subject id
        items = load_items()
        progress("clean", 0.08)
        known = set(items["item"]) if len(items) else None
        events, quality = clean_events(events, known_items=known, now=until)
        if len(events) < config["min_events"]:
            raise TrainingError(_too_few_events_hint(len(events), quality.to_dict(), since, until,
                                                     config["min_events"]))
        # The test window is the last test_days, shrunk to at most a fifth of the events (a young site's traffic
        # often came in a burst); with too little history to hold one out, the version trains on everything and
        # goes live unevaluated (a first version) rather than failing.
        cutoff = adaptive_cutoff(events[TIMESTAMP], config["test_days"], TEST_SHARE, min_train=config["min_events"])
        changed_since = ((version.params or {}).get("requested") or {}).get("changed_since")
        if changed_since and cutoff is not None:
            cutoff = drift_cutoff(cutoff, events[TIMESTAMP], utc_timestamp(changed_since), config["min_events"])
        if cutoff is None:
            train_events, test_events = events, events.iloc[:0]
        else:
            train_events, test_events = temporal_split(events, cutoff=cutoff)
        params = {
            "models": families,
            "ranker": config["ranker"],
            "event_weights": runtime.event_weights(),  # the settings' with the dashboard's overrides
            "value_weighted_events": settings.value_weighted_events,
            "half_life_days": config["half_life_days"],
            "scaling": config["scaling"],
            "candidates_per_model": config["candidates_per_model"],
            "random_state": settings.RANDOM_STATE,
        }
        if config["context_features"]:  # off: the parameters (and the system) stay what they always were
            params["context_features"] = True
        if not config["session_ranker"]:  # on (the system's default): the parameters stay what they always were
            params["session_ranker"] = False
        # recorded beside the fitted parameters: the subject id format, whether served lists taught the ranker,
        # and which weights the dashboard overrode
        recorded = {"subject_ids": SUBJECT_IDS, "impression_feedback": config["impression_feedback"],
                    "event_weight_overrides": runtime.event_weight_overrides()}
        if changed_since:  # why this version's test window starts later than test_days says
            recorded["changed_since"] = changed_since
        version.params = {**params, **recorded}
        version.data_quality = quality.to_dict()
        version.data_start = events[TIMESTAMP].min().to_pydatetime()
        version.data_end = events[TIMESTAMP].max().to_pydatetime()
        version.cutoff = cutoff.to_pydatetime() if cutoff is not None else None
        version.save(update_fields=["params", "data_quality", "data_start", "data_end", "cutoff"])
        if config["choose_configuration"] and cutoff is not None:
            progress("choose", 0.1)
            choice = choose_configuration(
                lambda p: RecommenderSystem(**{**p, **EVALUATED_ONLY}), train_events, items, params,
                settings.PROMOTION_METRIC,
                validation_days=config["test_days"], max_share=TEST_SHARE, min_train=config["min_events"],
                max_users=min(config["eval_max_users"] or CHOICE_MAX_USERS, CHOICE_MAX_USERS),
                random_state=settings.RANDOM_STATE, min_users=config["choose_min_users"])
            params.update(choice.get("overrides", {}))
            version.params = {**params, **recorded}
            version.tuning = {"configuration": choice}
            version.save(update_fields=["tuning", "params"])
        if tune:
            version.tuning = {**(version.tuning or {}), **tune_system(train_events, items, params,
                                                                      progress.scaled(0.1, 0.3))}
            params.update(version.tuning.get("best_params", {}))
            version.params = {**params, **recorded}
            version.save(update_fields=["tuning", "params"])

        # served lists as ranker rows: those of the training events' window only (no click of the test window)
        feedback = (pseudonymise(extract_feedback(since, cutoff or until), USER)
                    if config["impression_feedback"] else None)
        refits = bool(config["refit_full"] and len(test_events))  # then this fit is only evaluated
        system = RecommenderSystem(**{**params, **(EVALUATED_ONLY if refits else {})},
                                   **drift_label_days(train_events, changed_since)).fit(
            train_events, items, progress=progress.scaled(0.3, 0.6), feedback=feedback)
        progress("evaluate", 0.6)
        # one seeded sample of the test-window users, scored by every model and by the live version (paired)
        sample = evaluation_users(system, test_events, max_users=config["eval_max_users"],
                                  random_state=settings.RANDOM_STATE) if len(test_events) else None
        if len(test_events):
            test_metrics = evaluate_system(system, test_events, users=sample)
            if not (test_metrics.get("system") or {}).get("n_users"):
                test_metrics["unevaluated"] = ("no test-window visitor had a history before the window, so no "
                                               "list could be scored; it fills as visitors return")
        else:
            test_metrics = {"unevaluated": (
                f"too little history to hold out a test window ({len(events)} events; at least "
                f"{config['min_events']} must come before it, TRAINING['min_events']): trained on everything")}
        live = registry.live_version()
        if live is not None and live.cutoff is not None and live.data_end is not None and len(test_events):
            window_feedback = lambda: pseudonymise(extract_feedback(since, cutoff), USER)  # noqa: E731
            test_metrics.update(_paired_live_score(live, version, params, train_events, test_events, items, sample,
                                                   test_metrics.get("system") or {}, window_feedback))
        version.test_metrics = test_metrics
        version.metrics = getattr(system, "metrics_", {}) or {}
        progress("insights", 0.62)
        version.insights = {"bias": _insight(lambda: _bias_report(system, train_events, test_events, sample))}
        version.save(update_fields=["test_metrics", "metrics", "insights"])

        if refits:
            if feedback is not None:
                feedback = pseudonymise(extract_feedback(since, until), USER)
            system = RecommenderSystem(**params, **drift_label_days(events, changed_since)).fit(
                events, items, progress=progress.scaled(0.65, 0.9), feedback=feedback)
            if "session_ranker" in system.metrics_:  # trained by the served fit only
                version.metrics = {**version.metrics, "session_ranker": system.metrics_["session_ranker"]}
        progress("insights", 0.91)
        # the served model's own attributions (refitted or not), on the lists of the test-window sample
        version.insights["shap"] = _insight(lambda: _shap_summary(system, sample))
        version.save(update_fields=["insights", "metrics"])
        progress("save", 0.92)
        system.save(workdir)
        version.artifact = registry.save_artifact(version, workdir)
        # "ready" and the promotion decision commit together: a client polling the version never sees it ready
        # (i.e. refused) just before it goes live.
        with transaction.atomic():
            version.status = ModelVersion.Status.READY
            version.finished_at = timezone.now()
            version.stage = "done"
            version.progress = 100.0
            version.save(update_fields=["artifact", "artifact_sha256", "status", "finished_at", "stage", "progress"])
            if promote_if_better:
                try:
                    registry.promote(version)
                except registry.PromotionRefused as exc:
                    logger.info("%s", exc)
        version.refresh_from_db()
        return version
    except TrainingCancelled as exc:
        _finish(version, ModelVersion.Status.CANCELLED, str(exc))
        raise
    except Exception as exc:
        detail = str(exc) if isinstance(exc, TrainingError) else f"{exc}\n\n{traceback.format_exc()}"
        _finish(version, ModelVersion.Status.FAILED, detail)
        raise
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _insight(compute: Callable[[], Any]) -> Any:
    """An insight's value, or ``{"error": ...}``: a report that cannot be computed never fails the training run."""
    try:
        return compute()
    except Exception as exc:  # noqa: BLE001
        logger.exception("personalization: insight not computed")
        return {"error": f"{type(exc).__name__}: {exc}"}


def _bias_report(system: Any, train_events: pd.DataFrame, test_events: pd.DataFrame, sample: Any) -> dict[str, Any]:
    from personalization.evaluation.insights import bias_report

    conf = settings.INSIGHTS
    return bias_report(system, train_events, test_events, k=conf["bias_k"], users=sample,
                       max_users=conf["bias_max_users"], top_countries=conf["top_countries"],
                       random_state=settings.RANDOM_STATE)


def _shap_summary(system: Any, sample: Any) -> dict[str, Any] | None:
    from personalization.evaluation.insights import shap_summary

    conf = settings.INSIGHTS
    return shap_summary(system, sample, max_rows=conf["shap_sample_rows"], k=conf["bias_k"],
                        random_state=settings.RANDOM_STATE)


def _paired_live_score(live: ModelVersion, version: ModelVersion, params: dict[str, Any],
                       train_events: pd.DataFrame, test_events: pd.DataFrame, items: pd.DataFrame, sample: Any,
                       ours: dict[str, Any],
                       window_feedback: Callable[[], pd.DataFrame] | None = None) -> dict[str, Any]:
    """The live version scored on the candidate's test window, paired (same window, same users, fitted on data
    that excludes it): ``{"live": metrics, "live_version", "live_paired": how}`` or ``{}`` when impossible.

    The live artifact itself when it never saw the window; otherwise (the nightly case: it was refitted on data
    that includes the window) its configuration refitted on the candidate's training events. The same
    configuration needs no refit: its paired score is the candidate's own. Learning from served lists or not
    (``params["impression_feedback"]``) is part of the configuration: a live version trained with it is refitted
    with the training window's lists (``window_feedback()``)."""
    from personalization.evaluation.configurations import CHOSEN_KEYS
    from personalization.recommenders.system import RecommenderSystem

    try:
        if live.data_end <= version.cutoff:  # the live model never saw this test window
            scored = evaluate_system(registry.load_system(live), test_events, users=sample)
            return {"live": scored.get("system", {}), "live_version": live.pk, "live_paired": "live artifact"}
        names = set(RecommenderSystem().get_params())
        theirs = {k: v for k, v in (live.params or {}).items() if k in names}
        mine = {k: v for k, v in params.items() if k in names}
        # what the configuration choice set is part of the procedure, re-run on the newer data
        live_feedback = bool((live.params or {}).get("impression_feedback", False))
        if json_safe({k: v for k, v in theirs.items() if k not in CHOSEN_KEYS}) == json_safe(
                {k: v for k, v in mine.items() if k not in CHOSEN_KEYS}) and live_feedback == bool(
                (version.params or {}).get("impression_feedback", False)):
            return {"live": dict(ours), "live_version": live.pk, "live_paired": "same configuration"}
        feedback = window_feedback() if live_feedback and window_feedback is not None else None
        refit = RecommenderSystem(**{**theirs, **EVALUATED_ONLY}).fit(train_events, items, feedback=feedback)
        scored = evaluate_system(refit, test_events, users=sample)
        return {"live": scored.get("system", {}), "live_version": live.pk,
                "live_paired": "live configuration refitted on the same training events"}
    except Exception:  # noqa: BLE001 - a broken old artifact or configuration must not block training
        logger.exception("Could not score live version %s on the new test window", live.pk)
        return {}


def _too_few_events_hint(count: int, quality: dict[str, Any], since: datetime, until: datetime,
                         needed: int) -> str:
    """Why training cannot start, with the step that helps for the data at hand."""
    dropped = {k: v for k, v in (quality.get("dropped") or {}).items() if v}
    message = (f"Only {count} usable events between {since:%Y-%m-%d} and {until:%Y-%m-%d}; at least {needed} are "
               "needed (TRAINING['min_events']).")
    if dropped:
        biggest = max(dropped, key=dropped.get)
        message += (f" Cleaning dropped {sum(dropped.values())} events, most as {biggest} ({dropped[biggest]}): "
                    "see the version's data-quality report.")
    return message + (" Track more traffic, import history with `manage.py personalization_import`, or lower "
                      "TRAINING['min_events'] for a trial run.")


def _finish(version: ModelVersion, status: str, error: str) -> None:
    ModelVersion.objects.filter(pk=version.pk).update(status=status, error=error[:20000], finished_at=timezone.now())
    version.refresh_from_db()


#: Hyperparameters searched per family by ``--tune`` (only for the families being trained).
FAMILY_SPACES: dict[str, dict[str, list[Any]]] = {
    "als": {"factors": [32, 64, 128], "regularization": [0.001, 0.01, 0.1], "iterations": [10, 20]},
    "ease": {"l2": [50.0, 200.0, 500.0, 2000.0]},
    "itemknn": {"k": [20, 50, 100, 200]},
}


def tune_system(
    train_events: pd.DataFrame, items: pd.DataFrame, params: dict[str, Any], progress: Callable[[str, float], None]
) -> dict[str, Any]:
    """Tune the families being trained (each on its own matrix) and then the ranker and the blend (the whole
    system on rolling folds), all on windows carved from the training events only (never the test window)."""
    from personalization.evaluation.ranker_tuning import tune_ranker
    from personalization.evaluation.tuning import TUNING_EXTRA_HINT, bayesian_available, tune
    from personalization.pipeline.interactions import build_interactions
    from personalization.recommenders import FAMILIES
    from personalization.recommenders.system import RecommenderSystem

    config = settings.TRAINING
    cutoff = train_events[TIMESTAMP].max() - pd.Timedelta(days=config["test_days"])
    fit_part, valid_part = temporal_split(train_events, cutoff=cutoff)
    weights = params["event_weights"]
    fit_matrix = build_interactions(fit_part, weights, params["half_life_days"], scaling=params["scaling"],
                                    value_weighted=params.get("value_weighted_events") or ())
    valid_matrix = build_interactions(valid_part, weights, None, user_ids=fit_matrix.user_ids,
                                      item_ids=fit_matrix.item_ids)
    method = "bayesian" if bayesian_available() else "random"
    models = {name: dict(p or {}) for name, p in params["models"].items()}
    tunable = [name for name in FAMILY_SPACES if name in models]  # --models decides what is tuned
    report: dict[str, Any] = {"method": method, "metric": "ndcg@10", "families": {}, "trials": []}
    for i, family in enumerate(tunable):
        progress(f"tune {family}", i / (len(tunable) + 1))
        fixed = {k: v for k, v in models[family].items() if k not in FAMILY_SPACES[family]}

        def make(_family=family, _fixed=fixed, **p):
            cls = FAMILIES[_family]
            seeded = {"random_state": settings.RANDOM_STATE} if "random_state" in cls().get_params() else {}
            return cls(**{**_fixed, **seeded, **p})

        result = tune(make, FAMILY_SPACES[family], fit_matrix.csr, valid_matrix.csr, metric="ndcg@10",
                      method=method, n_trials=8, time_budget_s=120, random_state=settings.RANDOM_STATE,
                      max_users=config["eval_max_users"])
        models[family] = {**models[family], **result.best_params}
        report["families"][family] = {"space": FAMILY_SPACES[family], "best_params": result.best_params,
                                      "best_score": result.best_score}
        report["trials"] += [{**t, "family": family} for t in result.trials]
    best_params: dict[str, Any] = {"models": models}
    if params.get("ranker") == "gbdt":
        progress("tune ranker", len(tunable) / (len(tunable) + 1))
        ranker = tune_ranker(lambda p: RecommenderSystem(**{**p, **EVALUATED_ONLY}), train_events, items,
                             {**params, "models": models}, settings.PROMOTION_METRIC, test_days=config["test_days"],
                             max_users=config["eval_max_users"], random_state=settings.RANDOM_STATE)
        report["ranker"] = ranker
        best_params.update(ranker.get("best_params", {}))
    progress("tune", 1.0)
    report["best_params"] = best_params
    scores = [t["score"] for t in report["trials"] if t.get("score") == t.get("score")]
    report["best_score"] = max(scores) if scores else None
    if method != "bayesian":
        report["note"] = TUNING_EXTRA_HINT
    return report


def evaluate_version(version: ModelVersion, *, since: datetime | None = None) -> dict[str, Any]:
    """Score a stored version on events it never saw (after its data, or since ``since``); recorded on the row.

    This is how a live model is checked against fresh traffic between retrains.
    """
    if since is None and version.data_end is None:
        raise TrainingError(f"Version {version.pk} has no data window; train it first.")
    start = since or version.data_end + timedelta(microseconds=1)  # strictly after its last training event
    events = extract_events(start, timezone.now())
    if (version.params or {}).get("subject_ids") == SUBJECT_IDS:
        events = pseudonymise(events, USER)
    events, _ = clean_events(events, now=timezone.now())
    if events.empty:
        raise TrainingError(f"No events since {start:%Y-%m-%d %H:%M} to evaluate version {version.pk} on.")
    metrics = evaluate_system(registry.load_system(version), events, max_users=settings.TRAINING["eval_max_users"],
                              random_state=settings.RANDOM_STATE)
    recheck = {"since": start.isoformat(), "events": len(events), "at": timezone.now().isoformat(),
               "system": metrics.get("system", {})}
    ModelVersion.objects.filter(pk=version.pk).update(test_metrics={**version.test_metrics, "recheck": recheck})
    version.refresh_from_db()
    return recheck


# == the service's faces' entry points: admin, API, commands and tasks call these and nothing below them ========
def families() -> list[str]:
    """Names of the model families a version can be trained with (``models`` of the API, the command and admin)."""
    from personalization.recommenders import FAMILIES

    return sorted(FAMILIES)


def new_version(*, user: Any = None, until: datetime | None = None, models: list[str] | None = None,
                tune: bool = False, changed_since: datetime | None = None) -> ModelVersion:
    """A queued version row recording who asked for what: :func:`train` it here, or :func:`enqueue` a worker's run.

    ``changed_since``: the traffic changed then (a drift detection): the version trains on the first half of what
    came since and is tested, against the live version, on the second half (see :func:`drift_cutoff`).
    Runs that died first are marked failed (:func:`reap_stale_runs`): each new run cleans up after dead ones.
    """
    reap_stale_runs()
    requested = {"models": models, "tune": tune, "until": until.isoformat() if until else None}
    if changed_since is not None:
        requested["changed_since"] = changed_since.isoformat()
    return ModelVersion.objects.create(
        status=ModelVersion.Status.QUEUED,
        created_by=user if getattr(user, "is_authenticated", False) else None,
        params={"requested": requested},
    )


def drift_label_days(events: pd.DataFrame, changed_since: str | None) -> dict[str, float]:
    """``label_days`` for a retrain after the traffic changed at ``changed_since``: the ranker learns what visitors do
    after the change, not the older behaviour that fills the default label part (the last fifth of the time span).
    Nothing when there was no change or when the default part is already shorter."""
    if not changed_since or not len(events):
        return {}
    ts = utc_series(events[TIMESTAMP])
    since = utc_timestamp(changed_since)
    first, last = ts.min(), ts.max()
    if not first < since < last or last - since >= (last - first) * 0.2:
        return {}
    return {"label_days": (last - since) / pd.Timedelta(days=1)}


def drift_cutoff(cutoff: pd.Timestamp, timestamps: pd.Series, changed_since: pd.Timestamp,
                 min_train: int) -> pd.Timestamp:
    """The test window's start for a retrain after the traffic changed at ``changed_since``: the median event
    since the change, when that is later than ``cutoff``. With the usual window (the last days), a drift retrain
    would be tested on all of the new traffic and trained on none of it, so it could never show what it learns
    from the change; this way it learns from the first half and both it and the live version are scored on the
    second."""
    ordered = utc_series(timestamps).sort_values(kind="stable").reset_index(drop=True)
    since = ordered[ordered >= changed_since]
    if len(since) < 2:
        return cutoff
    middle = since.iloc[len(since) // 2]
    if middle <= cutoff or int((ordered < middle).sum()) < min_train or middle >= ordered.iloc[-1]:
        return cutoff
    return middle


def enqueue(*, user: Any = None, until: datetime | None = None, models: list[str] | None = None,
            tune: bool = False, changed_since: datetime | None = None) -> ModelVersion:
    """Create a queued version; once the surrounding transaction commits, a worker is asked to train it.

    The hand-over to Celery is a ``training_queued`` receiver in the tasks module: a service never imports a face.
    When no worker can take it, that receiver trains it in a background thread of this process instead.
    """
    version = new_version(user=user, until=until, models=models, tune=tune, changed_since=changed_since)
    request = {"version_id": version.pk, "until": until.isoformat() if until else None, "models": models,
               "tune": tune}
    transaction.on_commit(lambda: training_queued.send(sender=ModelVersion, **request))
    return version


def run_name(version_id: int) -> str:
    """The name of a version's training run in :mod:`personalization.background_runs`."""
    return f"training-v{version_id}"


def runs_here(version: ModelVersion) -> str | None:
    """Why ``version`` trains in a background thread of this process (no worker could take it); None otherwise."""
    return background_runs.reason_for(run_name(version.pk))


def in_progress() -> bool:
    """Whether a version is queued or training (the nightly retrain then waits), after reaping the dead runs."""
    reap_stale_runs()
    return ModelVersion.objects.filter(
        status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.TRAINING]).exists()


def cancel(versions: Any) -> int:
    """Cancel the queued or training versions among ``versions`` (a queryset); returns how many.

    A queued version no run has started is cancelled at once (and its Celery task revoked, through the
    ``training_cancelled`` signal); a training one stops at its next stage, and one whose heartbeat missed
    ``MISSED_BEATS`` beats lost its process: it is marked failed at once and its work folder removed.
    """
    gone = _close_silent_runs(versions)
    waiting = list(versions.filter(status=ModelVersion.Status.QUEUED, started_at__isnull=True)
                   .values_list("pk", "task_id"))
    cancelled = ModelVersion.objects.filter(
        pk__in=[pk for pk, _ in waiting], status=ModelVersion.Status.QUEUED, started_at__isnull=True,
    ).update(status=ModelVersion.Status.CANCELLED, cancel_requested=True, finished_at=timezone.now(),
             error="Cancelled by staff before it started.")
    task_ids = [task_id for _, task_id in waiting if task_id]
    if task_ids:
        transaction.on_commit(lambda: training_cancelled.send(sender=ModelVersion, task_ids=task_ids))
    flagged = versions.filter(status__in=[ModelVersion.Status.QUEUED, ModelVersion.Status.TRAINING]).update(
        cancel_requested=True)
    return len(gone) + cancelled + flagged


def _close_silent_runs(versions: Any, now: datetime | None = None) -> list[int]:
    """Mark failed the training versions among ``versions`` that missed MISSED_BEATS heartbeats (staff asked to
    cancel them: nobody is left to see the request); returns their ids."""
    now = now or timezone.now()
    cutoff = now - timedelta(seconds=MISSED_BEATS * heartbeat_seconds())
    silent = Q(status=ModelVersion.Status.TRAINING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff))
    closed = []
    for pk, beat, started, created in versions.filter(silent).values_list(
            "pk", "heartbeat_at", "started_at", "created_at"):
        last = beat or started
        error = (f"Cancelled by staff: the training run had stopped (no heartbeat since "
                 f"{last:%Y-%m-%d %H:%M:%S %Z}); its process is gone, so the run was closed and its work folder "
                 "removed. Retrain when ready.")
        if ModelVersion.objects.filter(Q(pk=pk) & silent).update(
                status=ModelVersion.Status.FAILED, error=error, finished_at=now, cancel_requested=True):
            logger.warning("Version %s marked failed: %s", pk, error)
            _remove_work_folders(pk, created)
            closed.append(pk)
    return closed


def stale_after() -> timedelta:
    """How long a training run may stay silent before it counts as dead."""
    return timedelta(seconds=settings.TRAINING["stale_after_seconds"])


def queued_after() -> timedelta:
    """How long a version may wait queued, with no run started, before it counts as never picked up."""
    return timedelta(seconds=settings.TRAINING["queued_after_seconds"])


def _minutes(limit: timedelta) -> str:
    return f"{limit.total_seconds() / 60:g} minute{'s' if limit.total_seconds() != 60 else ''}"


def reap_stale_runs(now: datetime | None = None) -> list[int]:
    """Mark dead runs failed and remove their work folders; returns the ids of the versions marked.

    A ``training`` version whose heartbeat is older than ``TRAINING['stale_after_seconds']`` lost its process
    (killed, out of memory, a restarted worker); a ``queued`` one no run started within
    ``TRAINING['queued_after_seconds']`` was never picked up (no worker, or every worker busy). Called before each
    new run, by ``in_progress()`` and by the beat task ``personalization.reap_stale_runs``, so nothing stays "in
    progress" forever (DESIGN rule 10).
    """
    now = now or timezone.now()
    cutoff = now - stale_after()
    silent = Q(status=ModelVersion.Status.TRAINING) & (
        Q(heartbeat_at__lt=cutoff) | Q(heartbeat_at__isnull=True, started_at__lt=cutoff)
        | Q(heartbeat_at__isnull=True, started_at__isnull=True, created_at__lt=cutoff))
    unstarted = Q(status=ModelVersion.Status.QUEUED, started_at__isnull=True, created_at__lt=now - queued_after())
    reaped = []
    for pk, status, *signs in ModelVersion.objects.filter(silent | unstarted).values_list(
            "pk", "status", "heartbeat_at", "started_at", "created_at"):
        last_sign = next(sign for sign in signs if sign is not None)
        if status == ModelVersion.Status.TRAINING:
            error = (f"The training run stopped: no heartbeat since {last_sign:%Y-%m-%d %H:%M:%S %Z} (more than "
                     f"{_minutes(stale_after())}). Its process probably died (killed, out of memory, a worker "
                     "restart); its work folder was removed. Retrain when ready.")
        else:
            error = (f"No worker picked it up in {_minutes(queued_after())}: is a Celery worker running (and "
                     "free) for this site's broker? See the README, \"Models and training\". Retrain when one is.")
        marked = ModelVersion.objects.filter(Q(pk=pk) & (silent | unstarted)).update(
            status=ModelVersion.Status.FAILED, error=error, finished_at=now)
        if marked:
            logger.warning("Version %s marked failed: %s", pk, error)
            _remove_work_folders(pk, signs[-1])
            reaped.append(pk)
    return reaped


def work_folder_prefix(pk: int, created_at: datetime) -> str:
    """The name prefix of version ``pk``'s temporary work folder, from the row's token
    (:meth:`ModelVersion.token_of`): reaping one site's dead run must not delete another site's live run of a version
    with the same id."""
    return f"personalization-v{ModelVersion.token_of(pk, created_at).replace('@', '-')}-"


def _remove_work_folders(pk: int, created_at: datetime) -> None:
    """Delete the temporary folders a run of version ``pk`` left on this machine."""
    for folder in Path(tempfile.gettempdir()).glob(f"{work_folder_prefix(pk, created_at)}*"):
        shutil.rmtree(folder, ignore_errors=True)


def promote(version: ModelVersion, *, force: bool = False) -> ModelVersion:
    """Make a trained version live when it beats the live one (always when ``force``); raises PromotionRefused."""

    return registry.promote(version, force=force)


def rollback() -> ModelVersion:
    """Return to the version that was live before the current one; raises PromotionRefused when there is none."""

    return registry.rollback()
