"""Admin for notifications: the rules (trigger, threshold, channel, template, caps, quiet hours), a read-only log
of every message with its delivery status and when it was opened and read, and the users' preferences.

Registered by ``personalization/admin.py`` importing this module.
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.template import TemplateDoesNotExist, TemplateSyntaxError, engines
from django.template.loader import get_template
from django.utils import timezone
from django.utils.html import format_html

from personalization.delivery.channels import channel_paths
from personalization.delivery.notifications import ALLOWED, disallowed_variables, template_prefix
from personalization.models import Notification, NotificationPreference, NotificationRule
from personalization.read_only_admin import ReadOnlyAdmin

logger = logging.getLogger("personalization.admin")


class NotificationRuleForm(forms.ModelForm):
    class Meta:
        model = NotificationRule
        fields = "__all__"

    def clean_channel(self) -> str:
        value = self.cleaned_data["channel"]
        names = sorted(channel_paths())
        if value not in names:
            raise forms.ValidationError(
                f"Unknown channel {value!r}; choose one of {', '.join(names)} "
                '(PERSONALIZATION["NOTIFICATION_CHANNELS"]).'
            )
        return value

    def clean_threshold(self) -> float:
        value = self.cleaned_data["threshold"]
        if not 0.0 <= value <= 1.0:
            raise forms.ValidationError("The engagement score is between 0 and 1; use a threshold in 0..1.")
        return value

    def clean_subject(self) -> str:
        value = self.cleaned_data["subject"]
        try:
            template = engines["django"].from_string(value)
        except TemplateSyntaxError as exc:
            raise forms.ValidationError(f"The subject is a template and does not parse: {exc}") from exc
        _refuse_disallowed(template.template, "The subject")
        return value

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        for name in ("quiet_start", "quiet_end"):
            value = data.get(name)
            if value is not None and not 0 <= value <= 23:
                self.add_error(name, "An hour of the day: 0..23 (start = end means no quiet hours).")
        trigger, prefix = data.get("trigger"), data.get("template")
        if trigger and prefix is not None:
            probe = NotificationRule(trigger=trigger, template=prefix)
            try:
                get_template(f"{template_prefix(probe)}.txt")
            except TemplateDoesNotExist:
                self.add_error("template", f"No template {template_prefix(probe)}.txt (the text part is required; "
                                           "the .html part is optional).")
            else:
                for ext in ("txt", "html"):
                    try:
                        _refuse_disallowed(get_template(f"{template_prefix(probe)}.{ext}").template,
                                           f"Template {template_prefix(probe)}.{ext}")
                    except TemplateDoesNotExist:
                        pass
                    except forms.ValidationError as exc:
                        self.add_error("template", exc)
        return data


def _refuse_disallowed(template: Any, what: str) -> None:
    """A field error naming the variables ``template`` uses outside the notification whitelist."""
    bad = disallowed_variables(template)
    if bad:
        raise forms.ValidationError(
            f"{what} uses {', '.join('{{ ' + name + ' }}' for name in bad)}; messages may use only "
            f"{', '.join(sorted(ALLOWED))} ({{{{ user.first_name }}}} is the only field of user)."
        )


@admin.action(description="Activate the selected rules")
def activate_rules(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    count = queryset.update(active=True)
    logger.info("%s activated %s notification rule(s)", request.user, count)
    modeladmin.message_user(request, f"Activated {count} rule(s).")


@admin.action(description="Deactivate the selected rules")
def deactivate_rules(modeladmin: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet) -> None:
    count = queryset.update(active=False)
    logger.info("%s deactivated %s notification rule(s)", request.user, count)
    modeladmin.message_user(request, f"Deactivated {count} rule(s).")


@admin.register(NotificationRule)
class NotificationRuleAdmin(admin.ModelAdmin):
    form = NotificationRuleForm
    list_display = ("name", "trigger", "channel", "threshold", "max_per_week", "quiet_hours", "active",
                    "sent_7d")
    list_filter = ("trigger", "channel", "active")
    search_fields = ("name", "subject")
    actions = [activate_rules, deactivate_rules]
    fieldsets = (
        (None, {"fields": ("name", "active", "trigger", "channel")}),
        ("Who", {"fields": ("threshold",),
                 "description": "Users whose engagement score (0..1) is at least the threshold get the message."}),
        ("What", {"fields": ("subject", "template"),
                  "description": "The subject is a Django template that may use only {{ first_name }}, {{ items }}, "
                                 "{{ item.title }}, the links and {{ site_name }} / {{ site_url }}."}),
        ("How often", {"fields": ("max_per_week", "quiet_start", "quiet_end"),
                       "description": "Quiet hours are in each user's time zone; messages due then are deferred."}),
    )

    @admin.display(description="quiet hours")
    def quiet_hours(self, obj: NotificationRule) -> str:
        if obj.quiet_start == obj.quiet_end:
            return "-"
        return f"{obj.quiet_start:02d}:00-{obj.quiet_end:02d}:00"

    @admin.display(description="sent (7 days)")
    def sent_7d(self, obj: NotificationRule) -> int:
        return Notification.objects.filter(rule=obj, status=Notification.Status.SENT,
                                           created_at__gte=timezone.now() - timedelta(days=7)).count()


class OpenedFilter(admin.SimpleListFilter):
    title = "opened"
    parameter_name = "opened"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return [("yes", "Opened"), ("no", "Not opened")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(opened_at__isnull=False)
        if self.value() == "no":
            return queryset.filter(opened_at__isnull=True)
        return queryset


@admin.register(Notification)
class NotificationAdmin(ReadOnlyAdmin):
    """What was sent to whom, through which channel, whether it failed, when it was opened and read."""

    list_display = ("created_at", "user", "rule", "channel", "status", "subject", "opened_at", "read_at")
    list_filter = ("status", "channel", "rule", OpenedFilter)
    search_fields = ("subject", "idempotency_key", "user__username", "user__email")
    date_hierarchy = "created_at"
    list_select_related = ("user", "rule")
    readonly_fields = ("user", "rule", "channel", "status", "error", "subject", "body", "payload_pretty",
                       "idempotency_key", "created_at", "opened_at", "read_at")
    exclude = ("payload",)
    show_full_result_count = False
    deletable = False

    @admin.display(description="payload")
    def payload_pretty(self, obj: Notification) -> str:
        return format_html("<pre style='white-space:pre-wrap'>{}</pre>",
                           json.dumps(obj.payload, indent=2, sort_keys=True, default=str))


@admin.register(NotificationPreference)
class NotificationPreferenceAdmin(admin.ModelAdmin):
    list_display = ("user", "opted_out", "timezone", "updated_at")
    list_filter = ("opted_out",)
    search_fields = ("user__username", "user__email")
    raw_id_fields = ("user",)
