"""Admin faces of insight: the mean |SHAP| bar chart and the bias report on a ModelVersion's page, and the "why"
page (a visitor's list with, per item, the features behind it as sentences).

The chart is a matplotlib SVG drawn on the server (no JavaScript, no CDN) and cached per version and summary.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from typing import Any

from django import forms
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe

from personalization import privacy, shared_cache
from personalization.monitoring.explanations import bias_report, shap_summary

logger = logging.getLogger("personalization.admin")

#: Bars in the per-version chart (the largest mean |SHAP| features).
CHART_FEATURES = 20
CHART_CACHE_SECONDS = 7 * 24 * 3600


def shap_chart_svg(summary: dict[str, Any], top: int = CHART_FEATURES) -> str:
    """A horizontal bar chart of the ``top`` features of a :func:`shap_summary` as an ``<svg>`` element."""
    from matplotlib import rc_context
    from matplotlib.figure import Figure

    items = list(summary["features"].items())[:top]
    names = [name for name, _ in items][::-1]
    values = [value for _, value in items][::-1]
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "personalization"}):
        fig = Figure(figsize=(7.0, 0.28 * len(items) + 1.0))
        ax = fig.add_subplot()
        ax.barh(names, values, color="#417690")
        ax.set_xlabel(f"mean |SHAP| (log-odds) over {summary.get('rows', '?')} (visitor, item) rows")
        ax.tick_params(axis="y", labelsize=8)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        fig.tight_layout()
        out = io.StringIO()
        fig.savefig(out, format="svg", metadata={"Date": None})
    svg = out.getvalue()
    return svg[svg.index("<svg"):]


def shap_chart_html(version: Any) -> SafeString | str:
    """The version's chart (cached), or a line saying why there is none."""
    summary = shap_summary(version)
    if summary is None:
        stored = (version.insights or {}).get("shap")
        error = stored.get("error") if isinstance(stored, dict) else None
        return error or "-  (no gradient-boosted ranker, or trained before SHAP summaries existed)"
    digest = hashlib.sha256(json.dumps(summary, sort_keys=True).encode()).hexdigest()[:16]
    key = f"personalization:insight:shap-svg:{version.pk}:{digest}"
    try:
        svg = shared_cache.cache().get(key)
    except Exception:  # noqa: BLE001 - a cache fault only costs drawing it again
        svg = None
    if not svg:
        try:
            svg = shap_chart_svg(summary)
        except ImportError:  # matplotlib (the [explain] extra) is missing: the figures as a table
            rows = list(summary["features"].items())[:CHART_FEATURES]
            return format_html("<table>{}</table>", format_html_join(
                "", "<tr><th>{}</th><td>{}</td></tr>", ((name, _figure(value, 4)) for name, value in rows)))
        try:
            shared_cache.cache().set(key, svg, CHART_CACHE_SECONDS)
        except Exception:  # noqa: BLE001
            logger.warning("personalization: SHAP chart not cached", exc_info=True)
    # our own matplotlib output: feature names come from the code, and matplotlib escapes text in SVG
    return mark_safe(f'<div class="personalization-shap-chart" style="max-width:720px">{svg}</div>')  # noqa: S308


def _figure(value: Any, digits: int = 3) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else "-"


def bias_html(version: Any) -> SafeString | str:
    """The version's bias report: warnings first, then exposure, then quality per segment."""
    report = bias_report(version)
    if report is None:
        return "-  (trained before bias reports existed)"
    if "quality" not in report:
        return report.get("unevaluated") or report.get("error") or "-"
    quality, exposure = report["quality"], report.get("exposure") or {}
    k = quality.get("k", 10)
    warnings = format_html_join(
        "", '<li style="color:#ba2121"><strong>{} = {}</strong>: NDCG@{} {} is below half the overall {} '
            "({} visitors)</li>",
        ((w["dimension"], w["segment"], k, _figure(w["ndcg"]), _figure(w["overall"]), w["users"])
         for w in report["warnings"]))
    exposure_rows = format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", (
        ("catalogue coverage (share ever recommended)", _figure(exposure.get("coverage"))),
        ("Gini coefficient of exposure (0 = even)", _figure(exposure.get("gini"))),
        ("popularity percentile of recommended items", _figure(exposure.get("recommended_popularity"))),
        ("popularity percentile of consumed items", _figure(exposure.get("consumed_popularity"))),
    ))
    overall = quality["overall"]
    flagged = {(w["dimension"], w["segment"]) for w in report["warnings"]}
    segment_rows = format_html_join("", "<tr{}><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>", (
        (mark_safe(' style="background:#fbe3e4"') if (dim, label) in flagged else "", dim, label, row["users"],
         _figure(row.get(f"ndcg@{k}")), _figure(row.get(f"recall@{k}")))
        for dim, per in quality["segments"].items() for label, row in per.items()))
    return format_html(
        "{}<p>{} test-window visitors, top {} lists.</p><table>{}</table>"
        "<table><tr><th>segment</th><th>value</th><th>visitors</th><th>NDCG@{}</th><th>recall@{}</th></tr>"
        "<tr><td>overall</td><td></td><td>{}</td><td>{}</td><td>{}</td></tr>{}</table>",
        format_html("<ul>{}</ul>", warnings) if report["warnings"] else "", report.get("users", "?"), k,
        exposure_rows, k, k, overall["users"], _figure(overall.get(f"ndcg@{k}")),
        _figure(overall.get(f"recall@{k}")), segment_rows)


class WhyForm(forms.Form):
    """Whose list: a user id or a visitor id, and how many items."""

    user_id = forms.IntegerField(required=False, min_value=1, label="User id")
    visitor_id = forms.CharField(required=False, max_length=privacy.MAX_VISITOR_ID, label="Visitor id",
                                 help_text="Event.visitor_id")
    n = forms.IntegerField(required=False, min_value=1, max_value=50, initial=10, label="Items")
    slot = forms.CharField(required=False, max_length=64, label="Slot", help_text="empty: the default slot")

    def clean_slot(self) -> str:
        from personalization import serving

        try:
            return serving.slot_spec(self.cleaned_data.get("slot") or "")["name"]
        except serving.UnknownSlot as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if not self.errors and (data.get("user_id") is None) == (not data.get("visitor_id")):
            raise forms.ValidationError("Give either a user id or a visitor id.")
        return data

    def subject(self) -> str:
        data = self.cleaned_data
        return f"u:{data['user_id']}" if data.get("user_id") is not None else f"v:{data['visitor_id']}"


def why_view(model_admin: Any, request: HttpRequest) -> HttpResponse:
    """GET with a user or visitor id: their list as the live model serves it, each item with its source reason and
    the features that raised its score (SHAP sentences). Nothing is logged as served."""
    from personalization import serving

    form = WhyForm(request.GET or None)
    result = None
    if request.GET and form.is_valid():
        result = serving.recommend(form.subject(), form.cleaned_data.get("n") or 10,
                                   slot=form.cleaned_data["slot"], explain=True, log=False)
        logger.info("%s looked at why %s gets their list", request.user, form.subject()[:2])
    display = serving.item_display(result.keys()) if result and result.items else {}
    rows = [{"rec": r, "title": (display.get(r.item) or {}).get("title") or ""} for r in (result.items if result
                                                                                           else [])]
    context = {**model_admin.admin_site.each_context(request), "title": "Why these recommendations",
               "form": form, "result": result, "rows": rows, "opts": model_admin.model._meta}
    return TemplateResponse(request, "personalization/admin/why.html", context, status=400 if form.errors else 200)
