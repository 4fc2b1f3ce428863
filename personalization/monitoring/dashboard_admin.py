"""The admin dashboard page (``/admin/personalization/dashboard/``): panels, and the actions staff take from it.

Registered for the ``Dashboard`` proxy model, so the admin index and the app index link to it. The actions are POST
forms (CSRF-protected), each checking its permission: retrain (``train_modelversion``), promote a version
(``promote_modelversion``), roll back (``rollback_modelversion``), pause/resume exploration and edit the training
weights (``change_runtimecontrol``). Retrain, promote and roll back reuse the model-version admin's actions, so the
messages and logs are the same on both pages.
"""

from __future__ import annotations

import logging
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse

from personalization import runtime
from personalization.admin import promote_versions, retrain_now, rollback_live
from personalization.conf import EVENT_WEIGHT_LIMIT, event_weight_errors, settings
from personalization.models import Dashboard, ModelVersion
from personalization.monitoring import panels  # noqa: F401 - registers the learning-loop and insight panels
from personalization.monitoring.dashboard import render_panels
from personalization.read_only_admin import ReadOnlyAdmin
from personalization.serving.slots import slot_spec

logger = logging.getLogger("personalization.admin")

#: Permission each dashboard action checks.
ACTION_PERMISSIONS = {
    "retrain": "personalization.train_modelversion",
    "promote": "personalization.promote_modelversion",
    "rollback": "personalization.rollback_modelversion",
    "exploration": "personalization.change_runtimecontrol",
    "weights": "personalization.change_runtimecontrol",
}
PREFIX = "weight_"


class EventWeightsForm(forms.Form):
    """One number per configured event type: the training weight the next training uses."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.defaults = settings.event_weights
        current = runtime.event_weights()
        for name, default in self.defaults.items():
            self.fields[PREFIX + name] = forms.FloatField(
                label=name, initial=current[name],
                help_text=f"settings: {default:g}",
                widget=forms.NumberInput(attrs={"step": "any", "style": "width:6em",
                                                "min": -EVENT_WEIGHT_LIMIT, "max": EVENT_WEIGHT_LIMIT}),
            )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        unknown = sorted(k[len(PREFIX):] for k in self.data if k.startswith(PREFIX) and k not in self.fields)
        if unknown:
            raise forms.ValidationError(
                f"Unknown event type(s): {', '.join(unknown)}. Known: {', '.join(sorted(self.defaults))} "
                "(add new types to PERSONALIZATION['EXTRA_EVENT_TYPES']).")
        weights = {k[len(PREFIX):]: v for k, v in data.items() if k.startswith(PREFIX) and v is not None}
        for name, problem in event_weight_errors(weights, self.defaults).items():
            self.add_error(PREFIX + name, problem)
        return data

    def weights(self) -> dict[str, float]:
        return {k[len(PREFIX):]: v for k, v in self.cleaned_data.items() if k.startswith(PREFIX)}

    def rows(self) -> list[Any]:
        return [self[PREFIX + name] for name in self.defaults]


class PromoteForm(forms.Form):
    """Which version to make live."""

    version = forms.ModelChoiceField(
        queryset=ModelVersion.objects.filter(status__in=[ModelVersion.Status.READY, ModelVersion.Status.RETIRED]),
        error_messages={"invalid_choice": "Choose a ready or retired version (the live one is live already)."},
    )


@admin.register(Dashboard)
class DashboardAdmin(ReadOnlyAdmin):
    """The dashboard: no list, no forms of the model; its index entry opens the page."""

    deletable = False

    def has_module_permission(self, request: HttpRequest) -> bool:
        return request.user.is_active and request.user.is_staff

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return request.user.is_active and request.user.is_staff

    def get_urls(self) -> list:
        view = self.admin_site.admin_view
        return [
            path("", view(self.dashboard_view), name="personalization_dashboard_changelist"),
            *(path(f"{name}/", view(self.action_view), {"action": name}, name=f"personalization_dashboard_{name}")
              for name in ACTION_PERMISSIONS),
        ]

    def dashboard_view(self, request: HttpRequest, weights_form: EventWeightsForm | None = None,
                       promote_form: PromoteForm | None = None, status: int = 200) -> HttpResponse:
        """GET: the panels, the controls and the forms (staff only; each control shows when permitted)."""
        if not self.has_view_permission(request):
            raise PermissionDenied
        user = request.user
        can = {name: user.has_perm(perm) for name, perm in ACTION_PERMISSIONS.items()}
        live = ModelVersion.objects.filter(status=ModelVersion.Status.LIVE).first()
        exploring = {}
        for name in settings.SLOTS:
            try:
                spec = slot_spec(name)
            except Exception:  # noqa: BLE001 - a misconfigured slot is the checks' business, not the page's
                continue
            if spec["exploration"] and spec["exploration_rate"] > 0:
                exploring[name] = f"{spec['exploration']} {spec['exploration_rate']:g}"
        context = {
            **self.admin_site.each_context(request),
            "title": "Personalization dashboard",
            "opts": self.model._meta,
            "panels": render_panels(request),
            "can": can,
            "live": live,
            "previous": live.previous if live else None,
            "promote_form": promote_form or PromoteForm(),
            "weights_form": weights_form or EventWeightsForm(),
            "weight_overrides": runtime.event_weight_overrides(),
            "paused": runtime.exploration_paused(),
            "exploring": exploring,
        }
        return TemplateResponse(request, "personalization/admin/dashboard/index.html", context, status=status)

    def action_view(self, request: HttpRequest, action: str) -> HttpResponse:
        """POST only: run one control after checking its permission, then back to the page with a message."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not request.user.has_perm(ACTION_PERMISSIONS[action]):
            raise PermissionDenied(f"You may not {action} here (needs {ACTION_PERMISSIONS[action]}).")
        back = HttpResponseRedirect(reverse("admin:personalization_dashboard_changelist"))
        if action == "retrain":
            retrain_now(self, request, ModelVersion.objects.none())  # reads the "tune" box itself
        elif action == "promote":
            form = PromoteForm(request.POST)
            if not form.is_valid():
                return self.dashboard_view(request, promote_form=form, status=400)
            promote_versions(self, request, ModelVersion.objects.filter(pk=form.cleaned_data["version"].pk))
        elif action == "rollback":
            rollback_live(self, request, ModelVersion.objects.none())
        elif action == "exploration":
            paused = request.POST.get("paused") in ("1", "true", "on")
            runtime.set_exploration_paused(paused, by=request.user.get_username())
            self.message_user(request, "Exploration paused: no position of any slot is explored from now on."
                              if paused else "Exploration resumed: slots explore at their configured rates.")
        elif action == "weights":
            if "reset" in request.POST:
                runtime.set_event_weights({}, by=request.user.get_username())
                self.message_user(request, "Training weights reset to the settings; the next training uses them.")
                return back
            form = EventWeightsForm(request.POST)
            if not form.is_valid():
                self.message_user(request, "The weights were not saved: see the errors below.", messages.ERROR)
                return self.dashboard_view(request, weights_form=form, status=400)
            overrides = runtime.set_event_weights(form.weights(), by=request.user.get_username())
            changed = ", ".join(f"{k} {v:g}" for k, v in overrides.items()) or "none (the settings' weights)"
            self.message_user(request, f"Training weights saved; overrides: {changed}. The next training uses them "
                                       "and records them in the version's parameters.")
        return back
