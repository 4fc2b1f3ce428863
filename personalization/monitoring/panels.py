"""The dashboard's learning-loop and insight panels: why items are recommended, for whom it works, whether the data
looks normal, drift, A/B tests, and CTR per slot and version from the daily list aggregates.

Each reads what its own module stores (``explanations``, ``audit``, ``drift``, ``experiments``, ``ListDailyStat``)
and registers a :class:`~personalization.monitoring.dashboard.Panel`; ``dashboard_admin`` imports this module, so
the page shows them whenever the admin is installed.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db.models import Count, Max, Q, Sum
from django.http import HttpRequest
from django.urls import NoReverseMatch, reverse
from django.utils import timezone
from django.utils.html import format_html

from personalization import registry
from personalization.conf import settings
from personalization.models import DriftDetection, Experiment, ListDailyStat
from personalization.monitoring.dashboard import (
    Panel,
    cached_context,
    ctr_figure,
    events_ctr_panel,
    new_figure,
    register,
    svg_figure,
)

#: Features drawn in the live version's SHAP chart.
SHAP_FEATURES = 15
#: Days of drift detections shown.
DRIFT_DAYS = 14
STATUS_COLOURS = {"pass": "#2e7d32", "warn": "#f9a825", "fail": "#c62828"}


def _link(url_name: str, text: str, *args: Any) -> Any:
    """An admin link, or the bare text where that admin page is not installed."""
    try:
        return format_html('<a href="{}">{}</a>', reverse(url_name, args=args), text)
    except NoReverseMatch:
        return text


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


# --- why this item: SHAP of the live version ---------------------------------------------------------------------
def _shap_panel(request: HttpRequest) -> dict[str, Any] | None:
    from personalization.monitoring.explanations import shap_summary

    live = registry.live_version()
    summary = shap_summary(live) if live is not None else None
    if summary is None:
        return None

    def build() -> dict[str, Any]:
        features = list(summary["features"].items())[:SHAP_FEATURES]
        fig = new_figure(8.0, max(2.4, 0.28 * len(features) + 1.0))
        ax = fig.add_subplot()
        ys = list(range(len(features)))
        ax.barh(ys, [v for _, v in features], color="#1565c0")
        ax.set_yticks(ys)
        ax.set_yticklabels([name for name, _ in features], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel("mean |SHAP| (log-odds)")
        ax.grid(axis="x", alpha=0.3)
        top = ", ".join(f"{name} {value:.3f}" for name, value in features[:5])
        title = f"What the live ranker (v{live.pk}) looks at most"
        return {
            "figure": svg_figure(fig, title, f"Mean absolute SHAP value per feature, largest first: {top}."),
            "summary": format_html(
                "Mean |SHAP| of the ranker's features on {} served rows of the test window. Why one visitor got an "
                "item: {}.", summary.get("rows") or "the", _link("admin:personalization_modelversion_why",
                                                                   "Why these recommendations?")),
        }

    return cached_context("shap", (live.pk, live.status), build)


# --- for whom: the live version's bias report ----------------------------------------------------------------------
def _bias_panel(request: HttpRequest) -> dict[str, Any] | None:
    from personalization.monitoring.explanations import bias_report

    live = registry.live_version()
    report = bias_report(live) if live is not None else None
    if report is None:
        return None
    if "quality" not in report:
        return {"summary": f"v{live.pk} has no bias report: {report.get('unevaluated') or 'not evaluated'}."}

    def build() -> dict[str, Any]:
        quality = report["quality"]
        k = quality.get("k", 10)
        overall = (quality.get("overall") or {}).get(f"ndcg@{k}")
        rows = []
        for dim, per in (quality.get("segments") or {}).items():
            for name, figures in list(per.items())[:10]:
                rows.append((f"{dim}: {name}", figures.get(f"ndcg@{k}"), figures.get(f"recall@{k}"),
                             figures.get("users")))
        fig = new_figure(8.0, max(2.4, 0.26 * len(rows) + 1.0))
        ax = fig.add_subplot()
        ys = list(range(len(rows)))
        low = settings.INSIGHTS["low_quality_ratio"]
        colours = ["#c62828" if overall and v is not None and v < low * overall else "#1565c0" for _, v, _, _ in rows]
        ax.barh(ys, [v or 0.0 for _, v, _, _ in rows], color=colours)
        if overall is not None:
            ax.axvline(overall, color="black", linewidth=1, linestyle="--", label=f"overall {overall:.3f}")
            ax.axvline(low * overall, color="#c62828", linewidth=1, linestyle=":", label=f"{low:g} x overall")
            ax.legend(fontsize=8, loc="lower right")
        ax.set_yticks(ys)
        ax.set_yticklabels([r[0] for r in rows], fontsize=8)
        ax.invert_yaxis()
        ax.set_xlabel(f"NDCG@{k}")
        ax.grid(axis="x", alpha=0.3)
        exposure = report.get("exposure") or {}
        warnings = report.get("warnings") or []
        text = (f"Catalogue coverage {_pct(exposure.get('coverage'))}, Gini of exposure "
                f"{exposure.get('gini', float('nan')):.2f}, popularity lift {exposure.get('popularity_lift', 0):.2f}.")
        title = f"Quality per segment of v{live.pk} (test window)"
        return {
            "figure": svg_figure(fig, title, f"NDCG@{k} per device, country, new or returning visitor and history "
                                             f"length; red: below {low:g} of the overall {overall}."),
            "summary": text + (f" {len(warnings)} segment(s) below {low:g} x the overall quality: "
                               + "; ".join(str(w) for w in warnings[:5]) if warnings else " No segment is flagged."),
            "table": {"columns": ["segment", f"NDCG@{k}", f"recall@{k}", "users"],
                      "rows": [[name, "-" if n is None else f"{n:.4f}", "-" if r is None else f"{r:.4f}", u]
                               for name, n, r, u in rows]},
        }

    return cached_context("bias", (live.pk, live.status), build)


# --- does yesterday's data look normal: the latest audit -----------------------------------------------------------
def _audit_panel(request: HttpRequest) -> dict[str, Any] | None:
    from personalization.monitoring.audit import latest_report

    report = latest_report()
    if report is None:
        return None

    def build() -> dict[str, Any]:
        checks = report.checks or []
        counts = {status: sum(1 for c in checks if c.get("status") == status) for status in STATUS_COLOURS}
        fig = new_figure(8.0, 1.8)
        ax = fig.add_subplot()
        left = 0
        for status, count in counts.items():
            if count:
                ax.barh([0], [count], left=left, color=STATUS_COLOURS[status], label=f"{status} {count}")
                left += count
        ax.set_yticks([])
        ax.set_xlabel("checks")
        ax.legend(fontsize=8, loc="upper right", ncols=3)
        text = ", ".join(f"{count} {status}" for status, count in counts.items())
        title = f"Data audit of {report.period_start:%Y-%m-%d %H:%M} to {report.period_end:%Y-%m-%d %H:%M}"
        return {
            "figure": svg_figure(fig, title, f"Checks by status: {text}."),
            "summary": format_html("Overall {} ({}), run {}. {}.", report.status.upper(), text,
                                   f"{timezone.localtime(report.created_at):%Y-%m-%d %H:%M}",
                                   _link("admin:personalization_auditreport_change", "Details", report.pk)),
            "table": {"columns": ["check", "status", "what was found"],
                      "rows": [[c.get("name", ""), c.get("status", ""), c.get("summary", "")] for c in checks]},
        }

    return cached_context("audit", (report.pk,), build)


# --- drift ---------------------------------------------------------------------------------------------------------
def _drift_panel(request: HttpRequest) -> dict[str, Any] | None:
    since = timezone.now() - timedelta(days=DRIFT_DAYS)
    recent = DriftDetection.objects.filter(detected_at__gte=since)
    stamp = recent.aggregate(last=Max("id"), n=Count("id"), open=Count("id", filter=Q(acknowledged=False)))
    if not stamp["n"]:
        return None

    def build() -> dict[str, Any]:
        per_day: dict[str, dict[str, int]] = {}
        for detected_at, detector in recent.values_list("detected_at", "detector"):
            day = timezone.localtime(detected_at).date().isoformat()
            per_day.setdefault(day, {}).setdefault(detector, 0)
            per_day[day][detector] += 1
        days = sorted(per_day)
        detectors = sorted({d for counts in per_day.values() for d in counts})
        fig = new_figure(8.0, 2.6)
        ax = fig.add_subplot()
        bottom = [0] * len(days)
        for detector in detectors:
            counts = [per_day[d].get(detector, 0) for d in days]
            ax.bar(range(len(days)), counts, bottom=bottom, label=detector)
            bottom = [b + c for b, c in zip(bottom, counts, strict=True)]
        ax.set_xticks(range(len(days)))
        ax.set_xticklabels([d[5:] for d in days], fontsize=8)
        ax.set_ylabel("detections")
        ax.legend(fontsize=8)
        latest = list(recent.order_by("-detected_at")[:8])
        title = f"Drift detections per day, last {DRIFT_DAYS} days"
        return {
            "figure": svg_figure(fig, title, f"{stamp['n']} detections by {', '.join(detectors)}."),
            "summary": format_html("{} detection(s), {} not acknowledged. {}.", stamp["n"], stamp["open"],
                                   _link("admin:personalization_driftdetection_changelist", "All detections")),
            "table": {"columns": ["when", "detector", "what moved", "statistic", "value", "threshold", "retrain"],
                      "rows": [[f"{timezone.localtime(d.detected_at):%Y-%m-%d %H:%M}", d.detector, d.subject,
                                d.statistic, f"{d.value:.4g}", f"{d.threshold:.4g}",
                                f"v{d.retrain_id}" if d.retrain_id else "-"] for d in latest]},
        }

    return cached_context("drift", (stamp["last"], stamp["open"]), build)


# --- running A/B tests ---------------------------------------------------------------------------------------------
def _experiments_panel(request: HttpRequest) -> dict[str, Any] | None:
    from personalization.monitoring.experiments import results

    running = list(Experiment.objects.filter(status=Experiment.Status.RUNNING).order_by("pk"))
    if not running:
        return None
    rows, labels, ctr, low, high = [], [], [], [], []
    verdicts = []
    for experiment in running:
        outcome = results(experiment)
        for arm in ("A", "B"):
            figures = outcome["arms"][arm]
            version = experiment.version_a_id if arm == "A" else experiment.version_b_id
            interval = figures.get("ctr_ci") or (None, None)
            labels.append(f"#{experiment.pk} {arm} (v{version})")
            ctr.append(100 * (figures["ctr"] or 0.0))
            low.append(100 * ((figures["ctr"] or 0.0) - (interval[0] or 0.0)) if interval[0] is not None else 0.0)
            high.append(100 * ((interval[1] or 0.0) - (figures["ctr"] or 0.0)) if interval[1] is not None else 0.0)
            rows.append([f"#{experiment.pk} {experiment.name}", arm, f"v{version}", figures["visitors"],
                         _pct(figures["ctr"]), _pct(figures["conversion"]),
                         "-" if figures["revenue_per_visitor"] is None else f"{figures['revenue_per_visitor']:.2f}"])
        verdicts.append(f"#{experiment.pk}: {outcome['verdict']} {outcome['warning']}".strip())
    fig = new_figure(8.0, max(2.0, 0.4 * len(labels) + 1.0))
    ax = fig.add_subplot()
    ys = list(range(len(labels)))
    ax.barh(ys, ctr, xerr=[low, high], color=["#1565c0" if "A (" in lab else "#ef6c00" for lab in labels],
            capsize=3)
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("CTR % (95% interval)")
    ax.grid(axis="x", alpha=0.3)
    return {
        "figure": svg_figure(fig, "Running A/B tests: CTR per arm", "; ".join(verdicts)),
        "summary": format_html("{} End one, or end it and promote the winner: {}.", " ".join(verdicts),
                               _link("admin:personalization_experiment_changelist", "Experiments")),
        "table": {"columns": ["experiment", "arm", "version", "visitors", "CTR", "conversion", "revenue / visitor"],
                  "rows": rows},
    }


# --- CTR and conversion from the daily list aggregates, when the aggregation runs -----------------------------------
def _ctr_panel(request: HttpRequest) -> dict[str, Any] | None:
    days = settings.DASHBOARD["ctr_days"]
    since = timezone.localdate() - timedelta(days=days)
    stats = ListDailyStat.objects.filter(day__gte=since)
    stamp = stats.aggregate(updated=Max("updated_at"), n=Count("id"))
    if not stamp["n"]:
        return events_ctr_panel(request)  # no aggregates yet: events joined to the served lists

    def build() -> dict[str, Any] | None:
        grouped = (stats.values("slot", "model_version").annotate(
            impressions=Sum("impressions"), clicks=Sum("clicks"), purchases=Sum("purchases"), revenue=Sum("revenue"))
            .order_by("slot", "-model_version"))
        rows = [r for r in grouped if r["impressions"] or r["clicks"] or r["purchases"]]
        if not rows:
            return None
        labels = [f"{r['slot'] or '(none)'} · {'v' + str(r['model_version']) if r['model_version'] else 'fallback'}"
                  for r in rows]
        ctr = [r["clicks"] / r["impressions"] if r["impressions"] else None for r in rows]
        conversion = [r["purchases"] / r["impressions"] if r["impressions"] else None for r in rows]
        title = f"CTR and conversion per slot and model version, last {days} days (daily list aggregates)"
        return {
            "figure": ctr_figure(labels, ctr, conversion, title),
            "summary": format_html("From the daily list aggregates (purchases within ATTRIBUTION_WINDOW_HOURS of a "
                                   "list count too). Per position, arm and explored slot: {}.",
                                   _link("admin:personalization_listdailystat_changelist", "List daily stats")),
            "table": {"columns": ["slot", "model version", "impressions", "clicks", "purchases", "revenue"],
                      "rows": [[r["slot"] or "(none)", r["model_version"] or "fallback", f"{r['impressions']:,}",
                                f"{r['clicks']:,}", f"{r['purchases']:,}", f"{r['revenue']:.2f}"] for r in rows]},
        }

    return cached_context("ctr-aggregates", (stamp["updated"], stamp["n"], days), build)


register(Panel(
    "ctr", "CTR and conversion per slot and model version", 20, _ctr_panel,
    empty="No impressions, clicks or purchases attributed to served lists yet: they carry the list's "
          "recommendation_id. {% recommended_items %} with {% tracking_script %} does it; API clients send the "
          "recommendation_id of GET recommendations/ with their events.",
))
register(Panel("shap", "Why items are recommended: the live ranker's features", 50, _shap_panel,
               empty="The live version has no SHAP summary: it is computed at training for the gradient-boosted "
                     "ranker (shap installed, TRAINING[\"ranker\"] = \"gbdt\"). Retrain to get one."))
register(Panel("bias", "For whom it works: quality per segment and exposure", 60, _bias_panel,
               empty="The live version has no bias report: it is computed at training on the test window. "
                     "Retrain to get one."))
register(Panel("audit", "Does the latest data look normal? The data audit", 70, _audit_panel,
               empty="No audit yet: the personalization.audit_data beat task runs daily, or run manage.py "
                     "personalization_audit, or Run audit now on the audit reports page."))
register(Panel("drift", "Drift", 80, _drift_panel,
               empty=f"No drift detected in the last {DRIFT_DAYS} days (personalization.detect_drift runs every "
                     "15 minutes on beat)."))
register(Panel("experiments", "Running A/B tests", 90, _experiments_panel,
               empty="No A/B test is running: start one on the Experiments admin page (versions A and B, traffic "
                     "share)."))
