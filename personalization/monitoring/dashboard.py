"""The admin dashboard's panels: a registry, the data they show and their plots (server-side matplotlib SVG).

The page (``/admin/personalization/dashboard/``) is a list of :class:`Panel` objects, ordered by ``order``. Adding
one takes a few lines::

    from personalization.monitoring.dashboard import Panel, cached_context, new_figure, register, svg_figure

    def _drift(request):
        report = latest_drift_report()  # your data; None when there is none yet
        if report is None:
            return None  # the page shows the panel's ``empty`` note instead
        return cached_context("drift", report.pk, lambda: {
            "figure": svg_figure(plot_drift(report), "Drift per feature", "Bars: drift score per feature ..."),
            "summary": f"{report.drifted} of {report.features} features drifted",
            "table": {"columns": ["feature", "score"], "rows": report.rows()},
        })

    register(Panel("drift", "Drift status", 50, _drift,
                   empty="No drift report yet: run manage.py personalization_drift or wait for the nightly job."))

``render(request)`` returns the panel's template context, or None when its data does not exist yet. The default
template (``personalization/admin/dashboard/panel.html``) shows any of ``figure`` (SVG markup from
:func:`svg_figure` or an ``<img>``), ``summary`` (a sentence), ``table`` (``{"columns": [...], "rows": [[...]]}``)
and ``note``; a panel with other needs names its own ``template``. A panel that raises is logged and shown as
failed: one broken panel never breaks the page. :func:`cached_context` caches a panel's context under a key that
includes the data's last change (``stamp``) for ``DASHBOARD["cache_seconds"]``.

Shipped panels: events per day by type, CTR and conversion per slot and model version, offline metrics across
versions, ingestion counters (bots, rate-limited).
"""

from __future__ import annotations

import hashlib
import io
import logging
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from typing import Any

from django.conf import settings as django_settings
from django.db import connection
from django.db.models import Max
from django.http import HttpRequest
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

from personalization import shared_cache
from personalization.conf import settings
from personalization.freshness import PREFIX
from personalization.models import Event, ModelVersion, RecommendationLog
from personalization.tracking import metrics

logger = logging.getLogger("personalization.monitoring")

PANEL_TEMPLATE = "personalization/admin/dashboard/panel.html"


@dataclass(frozen=True)
class Panel:
    """One section of the dashboard.

    ``render(request)`` returns the template context or None ("no data yet": the page shows ``empty``, which
    should say how to get the data). ``template`` renders the context (inside the panel's frame and heading).
    """

    key: str
    title: str
    order: int
    render: Callable[[HttpRequest], dict[str, Any] | None]
    empty: str = "No data yet."
    template: str = PANEL_TEMPLATE


_panels: dict[str, Panel] = {}


def register(panel: Panel) -> Panel:
    """Add (or replace, by key) a panel of the dashboard."""
    _panels[panel.key] = panel
    return panel


def unregister(key: str) -> None:
    """Remove a panel (e.g. a shipped one a site does not want); unknown keys are ignored."""
    _panels.pop(key, None)


def panels() -> list[Panel]:
    """The registered panels in page order."""
    return sorted(_panels.values(), key=lambda p: (p.order, p.key))


def render_panels(request: HttpRequest) -> list[dict[str, Any]]:
    """Each panel with its context (None: no data yet) or the failure that stopped it."""
    out = []
    for panel in panels():
        try:
            context, error = panel.render(request), ""
        except ModuleNotFoundError as exc:
            if (exc.name or "").split(".")[0] != "matplotlib":
                raise
            context, error = None, ("plots need matplotlib: pip install \"django-personalization[dashboard]\" "
                                    "(personalization.W091)")
        except Exception as exc:  # noqa: BLE001 - one broken panel must not take the page down
            logger.exception("personalization: dashboard panel %r failed", panel.key)
            context, error = None, f"{type(exc).__name__}: {exc}"
        out.append({"panel": panel, "context": context, "error": error})
    return out


# --- figures and their cache -----------------------------------------------------------------------------------

def new_figure(width: float = 8.0, height: float = 3.4) -> Any:
    """A matplotlib Figure on the Agg/SVG canvases (no pyplot: no global state shared between requests)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig


def svg_figure(fig: Any, title: str, description: str) -> SafeString:
    """Inline SVG markup of a matplotlib figure with an accessible name (``<title>``) and description (``<desc>``).

    Text stays text (``svg.fonttype: none``), and element ids get a per-figure salt so several figures on one page
    never share an id.
    """
    import matplotlib

    salt = hashlib.sha1(title.encode()).hexdigest()[:10]
    buffer = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buffer, format="svg", metadata={"Date": None})
    svg = buffer.getvalue()
    svg = svg[svg.index("<svg"):]
    labelled = (f'<svg role="img" aria-labelledby="t{salt} d{salt}" class="pers-figure"'
                f' style="max-width:100%;height:auto"')
    svg = svg.replace("<svg", labelled, 1)
    svg = re.sub(r"(<svg[^>]*>)", lambda m: (f'{m.group(1)}<title id="t{salt}">{escape(title)}</title>'
                                             f'<desc id="d{salt}">{escape(description)}</desc>'), svg, count=1)
    return mark_safe(svg)  # noqa: S308 - matplotlib's own output; title and description are escaped


def cached_context(key: str, stamp: Any, build: Callable[[], dict[str, Any] | None]) -> dict[str, Any] | None:
    """``build()`` cached under ``key`` and ``stamp`` (the data's last change, e.g. the newest event id) for
    ``DASHBOARD["cache_seconds"]``: a figure is drawn again when its data changed or the entry expired."""
    digest = hashlib.sha1(repr((key, stamp)).encode()).hexdigest()
    cache_key = f"{PREFIX}dashboard:{key}:{digest}"
    hit = shared_cache.get(cache_key)
    if isinstance(hit, dict):
        value = hit.get("value")
        if isinstance(value, dict) and "figure" in value:
            value = {**value, "figure": mark_safe(value["figure"])}  # noqa: S308 - stored by us, built above
        return value
    value = build()
    stored = {**value, "figure": str(value["figure"])} if isinstance(value, dict) and "figure" in value else value
    try:
        shared_cache.cache().set(cache_key, {"value": stored}, timeout=settings.DASHBOARD["cache_seconds"])
    except Exception:  # noqa: BLE001 - the cache only saves work
        logger.debug("dashboard figure %s not cached", key, exc_info=True)
    return value


def _today() -> date:
    return timezone.localdate()


def _midnight(day: date) -> datetime:
    start = datetime.combine(day, datetime.min.time())
    return timezone.make_aware(start) if django_settings.USE_TZ else start


def _since(days: int) -> datetime:
    """Midnight (current time zone) ``days - 1`` days ago: the window holds ``days`` whole calendar days."""
    return _midnight(_today() - timedelta(days=days - 1))


def newest_event_id() -> int:
    """The newest event's id (one index probe): the event panels' cache stamp."""
    return Event.objects.aggregate(m=Max("id"))["m"] or 0


# --- data ------------------------------------------------------------------------------------------------------

def events_per_day(days: int) -> tuple[list[date], dict[str, list[int]]]:
    """Event counts per calendar day (current time zone) and event type over the last ``days`` days.

    Read from the ``(event_type, occurred_at)`` index alone, by the plan each database runs fastest
    (benchmarks/dashboard.py, 10^6 events): PostgreSQL, one index-only scan per configured event type grouped by
    local date (0.15 s; one GROUP BY per day read the table: 1.2 s); SQLite, one small GROUP BY per day between two
    local midnights (0.3 s; its skip-scan covers every type; Django's TruncDate calls Python per row, 4x slower).
    """
    axis = [_today() - timedelta(days=days - 1 - i) for i in range(days)]
    position = {d: i for i, d in enumerate(axis)}
    adapt = connection.ops.adapt_datetimefield_value
    bounds = [adapt(_midnight(d)) for d in [*axis, axis[-1] + timedelta(days=1)]]
    qn = connection.ops.quote_name
    table, at, kind_col = qn(Event._meta.db_table), qn("occurred_at"), qn("event_type")
    series: dict[str, list[int]] = {}
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            local = f"({at} AT TIME ZONE %s)::date" if django_settings.USE_TZ else f"{at}::date"
            zone = [timezone.get_current_timezone_name()] if django_settings.USE_TZ else []
            sql = (f"SELECT {local}, COUNT(*) FROM {table} WHERE {kind_col} = %s AND {at} >= %s AND {at} < %s "
                   "GROUP BY 1")
            for kind in settings.event_types:
                cursor.execute(sql, [*zone, kind, bounds[0], bounds[-1]])
                for day, count in cursor.fetchall():
                    if day in position:
                        series.setdefault(kind, [0] * days)[position[day]] += int(count)
        else:
            sql = f"SELECT {kind_col}, COUNT(*) FROM {table} WHERE {at} >= %s AND {at} < %s GROUP BY {kind_col}"
            for i in range(days):
                cursor.execute(sql, [bounds[i], bounds[i + 1]])
                for kind, count in cursor.fetchall():
                    series.setdefault(kind, [0] * days)[i] += int(count)
    return axis, dict(sorted(series.items(), key=lambda kv: -sum(kv[1])))


#: Event types counted for served lists: shown, clicked, bought.
OUTCOMES = ("impression", "click", "purchase")


def attributed_outcomes(days: int) -> list[dict[str, Any]]:
    """Impressions, clicks and purchases per slot and model version of the lists they came from, over ``days``.

    Events carry the ``recommendation_id`` of the served list (RecommendationLog), which names the slot and the
    model version: one JOIN on the log's primary key, grouped. ``ctr`` = clicks / impressions, ``conversion`` =
    purchases / impressions (None without impressions).
    """
    event, log = Event._meta.db_table, RecommendationLog._meta.db_table
    qn = connection.ops.quote_name
    sql = (
        f"SELECT r.{qn('slot')}, r.{qn('model_version_id')}, e.{qn('event_type')}, COUNT(*) "
        f"FROM {qn(event)} e JOIN {qn(log)} r ON r.{qn('id')} = e.{qn('recommendation_id')} "
        f"WHERE e.{qn('occurred_at')} >= %s AND e.{qn('recommendation_id')} <> '' "
        f"AND e.{qn('event_type')} IN (%s, %s, %s) "
        f"GROUP BY r.{qn('slot')}, r.{qn('model_version_id')}, e.{qn('event_type')}"
    )
    with connection.cursor() as cursor:
        cursor.execute(sql, [connection.ops.adapt_datetimefield_value(_since(days)), *OUTCOMES])
        fetched = cursor.fetchall()
    groups: dict[tuple[str, Any], dict[str, Any]] = {}
    for slot, version, kind, count in fetched:
        row = groups.setdefault((slot or "", version), {"slot": slot or "(none)", "version": version,
                                                        **dict.fromkeys(OUTCOMES, 0)})
        row[kind] += int(count)
    out = []
    for row in groups.values():
        shown = row["impression"]
        row["ctr"] = row["click"] / shown if shown else None
        row["conversion"] = row["purchase"] / shown if shown else None
        out.append(row)
    return sorted(out, key=lambda r: (r["slot"], -(r["version"] or 0)))


def evaluated_versions(limit: int) -> list[ModelVersion]:
    """The newest ``limit`` versions with test-window metrics, oldest first."""
    qs = (ModelVersion.objects.exclude(test_metrics={}).filter(
        status__in=[ModelVersion.Status.READY, ModelVersion.Status.LIVE, ModelVersion.Status.RETIRED])
        .order_by("-id").only("id", "status", "test_metrics", "metrics", "created_at")[:limit])
    return [v for v in reversed(list(qs)) if isinstance((v.test_metrics or {}).get("system"), dict)]


#: Ranking metrics the offline panel draws (all within 0..1), besides the promotion metric.
OFFLINE_METRICS = ("ndcg@10", "recall@20", "precision@10", "map@10", "mrr@10", "hit_rate@10")


def _metric_names(versions: list[ModelVersion]) -> list[str]:
    """The promotion metric first, then those of OFFLINE_METRICS some version has on its test window."""
    promo = settings.PROMOTION_METRIC
    present = {k for v in versions for k, x in v.test_metrics["system"].items()
               if isinstance(x, (int, float)) and not isinstance(x, bool)}
    return [name for name in dict.fromkeys((promo, *OFFLINE_METRICS)) if name in present]


def ingestion_counters(days: int) -> tuple[list[date], dict[str, list[int]]]:
    """Events tracking dropped per day: from bots and over the rate limits (tracking/metrics.py, in the cache)."""
    axis = [_today() - timedelta(days=days - 1 - i) for i in range(days)]
    return axis, {name: [metrics.get(name, d.isoformat()) for d in axis] for name in COUNTERS}


#: Counter name -> label of the ingestion panel.
COUNTERS = {"bot_events": "bots", "rate_limited_events": "rate-limited"}


# --- shipped panels --------------------------------------------------------------------------------------------

def _day_ticks(ax: Any, axis: list[date]) -> None:
    step = max(1, len(axis) // 10)
    ax.set_xticks(range(0, len(axis), step))
    ax.set_xticklabels([d.strftime("%d %b") for d in axis[::step]], fontsize=8)


def _events_panel(request: HttpRequest) -> dict[str, Any] | None:
    days = settings.DASHBOARD["event_days"]
    stamp = (newest_event_id(), _today().isoformat(), days)

    def build() -> dict[str, Any] | None:
        axis, series = events_per_day(days)
        if not series:
            return None
        fig = new_figure()
        ax = fig.add_subplot()
        for name, counts in series.items():
            ax.plot(range(len(axis)), counts, marker="o", markersize=3, linewidth=1.5, label=name)
        _day_ticks(ax, axis)
        ax.set_ylabel("events per day")
        ax.set_yscale("symlog", linthresh=10)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        totals = {name: sum(counts) for name, counts in series.items()}
        text = ", ".join(f"{name} {total:,}" for name, total in totals.items())
        title = f"Events per day by type, last {days} days"
        return {
            "figure": svg_figure(fig, title, f"One line per event type (log scale). Totals: {text}."),
            "summary": f"{sum(totals.values()):,} events in {days} days: {text}.",
        }

    return cached_context("events", stamp, build)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def ctr_figure(labels: list[str], ctr: list[float | None], conversion: list[float | None], title: str) -> SafeString:
    """Horizontal bars of CTR and conversion (shares, None = no impressions) per labelled slot and version."""
    fig = new_figure(8.0, max(2.2, 0.45 * len(labels) + 1.2))
    ax = fig.add_subplot()
    ys = list(range(len(labels)))
    ax.barh([y - 0.2 for y in ys], [100 * (c or 0.0) for c in ctr], height=0.4, label="CTR (clicks / impressions)")
    ax.barh([y + 0.2 for y in ys], [100 * (c or 0.0) for c in conversion], height=0.4,
            label="conversion (purchases / impressions)")
    ax.set_yticks(ys)
    ax.set_yticklabels(labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("%")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    desc = "; ".join(f"{label}: CTR {_pct(c)}, conversion {_pct(v)}"
                     for label, c, v in zip(labels, ctr, conversion, strict=True))
    return svg_figure(fig, title, desc)


def events_ctr_panel(request: HttpRequest) -> dict[str, Any] | None:
    """CTR and conversion per slot and version from events joined to the served lists (monitoring/panels.py uses
    the daily list aggregates instead once the aggregation runs)."""
    days = settings.DASHBOARD["ctr_days"]
    stamp = (newest_event_id(), _today().isoformat(), days)

    def build() -> dict[str, Any] | None:
        rows = [r for r in attributed_outcomes(days) if r["impression"] or r["click"] or r["purchase"]]
        if not rows:
            return None
        labels = [f"{r['slot']} · {'v' + str(r['version']) if r['version'] else 'fallback'}" for r in rows]
        title = f"CTR and conversion per slot and model version, last {days} days"
        return {
            "figure": ctr_figure(labels, [r["ctr"] for r in rows], [r["conversion"] for r in rows], title),
            "table": {"columns": ["slot", "model version", "impressions", "clicks", "purchases", "CTR", "conversion"],
                      "rows": [[r["slot"], r["version"] or "fallback", f"{r['impression']:,}", f"{r['click']:,}",
                                f"{r['purchase']:,}", _pct(r["ctr"]), _pct(r["conversion"])] for r in rows]},
        }

    return cached_context("ctr", stamp, build)


def _offline_panel(request: HttpRequest) -> dict[str, Any] | None:
    limit = settings.DASHBOARD["versions"]
    ids = list(ModelVersion.objects.exclude(test_metrics={}).order_by("-id").values_list("id", "status")[:limit])
    stamp = (ids, settings.PROMOTION_METRIC)

    def build() -> dict[str, Any] | None:
        versions = evaluated_versions(limit)
        names = _metric_names(versions)
        if not versions or not names:
            return None
        promo = settings.PROMOTION_METRIC
        xs = list(range(len(versions)))
        fig = new_figure()
        ax = fig.add_subplot()
        for name in names:
            ys = [_num(v.test_metrics["system"].get(name)) for v in versions]
            main = name == promo
            ax.plot(xs, ys, marker="o", linewidth=3 if main else 1.2, markersize=6 if main else 3,
                    zorder=3 if main else 2, label=f"{name} (test, promotion metric)" if main else f"{name} (test)")
        valid = [_num(((v.metrics or {}).get("system") or {}).get(promo)) for v in versions]
        if any(not math.isnan(y) for y in valid):
            ax.plot(xs, valid, linestyle="--", marker="x", linewidth=1.5, label=f"{promo} (validation)")
        live = [i for i, v in enumerate(versions) if v.status == ModelVersion.Status.LIVE]
        for i in live:
            ax.axvline(i, color="#2e7d32", linewidth=6, alpha=0.18, zorder=1)
            ax.annotate("live", (i, 1.0), xycoords=("data", "axes fraction"), ha="center", va="bottom",
                        fontsize=8, color="#2e7d32", fontweight="bold")
        ax.set_xticks(xs)
        ax.set_xticklabels([f"v{v.pk}" for v in versions], fontsize=8)
        ax.set_ylabel("score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        live_text = f"v{versions[live[0]].pk} is live" if live else "no listed version is live"
        desc = (f"{promo} on the test window per version: "
                + ", ".join(f"v{v.pk} {_fmt(v.test_metrics['system'].get(promo))}" for v in versions)
                + f". {live_text}.")
        title = f"Offline metrics of the last {len(versions)} evaluated model versions"
        return {"figure": svg_figure(fig, title, desc),
                "summary": f"Promotion metric {promo} drawn thick; {live_text} (green band)."}

    return cached_context("offline", stamp, build)


def _num(value: Any) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else math.nan


def _fmt(value: Any) -> str:
    return f"{value:.4f}" if isinstance(value, (int, float)) else "-"


def _ingestion_panel(request: HttpRequest) -> dict[str, Any] | None:
    days = settings.DASHBOARD["counter_days"]
    axis, series = ingestion_counters(days)  # cache reads only; the figure is drawn again when a count changes

    def build() -> dict[str, Any]:
        fig = new_figure(8.0, 2.6)
        ax = fig.add_subplot()
        xs = list(range(len(axis)))
        width = 0.8 / len(series)
        for i, (name, counts) in enumerate(series.items()):
            ax.bar([x + (i - (len(series) - 1) / 2) * width for x in xs], counts, width=width, label=COUNTERS[name])
        _day_ticks(ax, axis)
        ax.set_ylabel("events dropped")
        ax.grid(axis="y", alpha=0.3)
        ax.legend(fontsize=8)
        totals = {COUNTERS[name]: sum(counts) for name, counts in series.items()}
        text = ", ".join(f"{label} {total:,}" for label, total in totals.items())
        title = f"Events dropped at ingestion per day, last {days} days"
        return {"figure": svg_figure(fig, title, f"Bars per day: {text} in total."),
                "summary": f"Dropped in {days} days: {text}. Counted in the cache (kept 8 days), so a cleared "
                           "cache starts again from zero."}

    return cached_context("ingestion", (axis[-1].isoformat(), series), build)


register(Panel(
    "events", "Events per day", 10, _events_panel,
    empty="No events in this window yet: add the tracking middleware and {% tracking_script %} (README, \"Install "
          "into an existing site\"), send events to the API, or import history with manage.py personalization_import.",
))
register(Panel(
    "ctr", "CTR and conversion per slot and model version", 20, events_ctr_panel,
    empty="No impressions, clicks or purchases attributed to served lists yet: they carry the list's "
          "recommendation_id. {% recommended_items %} with {% tracking_script %} does it; API clients send the "
          "recommendation_id of GET recommendations/ with their events.",
))
register(Panel(
    "offline", "Offline metrics across model versions", 30, _offline_panel,
    empty="No evaluated model version yet: train one (Retrain below, or manage.py personalization_train); a version "
          "is scored on a later test window once the site has enough history.",
))
register(Panel("ingestion", "Ingestion: bots and rate limits", 40, _ingestion_panel,
               empty="No counters yet."))
