"""Admin of content blocks: blocks with their variants inline (targeting, HTML), variant statistics read-only."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from personalization.delivery.blocks import forget_block_config
from personalization.models import ContentBlock, Variant, VariantStat

logger = logging.getLogger("personalization.admin")


class VariantInline(admin.StackedInline):
    model = Variant
    extra = 0
    fields = (("key", "active"), "html", ("category", "segment"), ("device", "country", "audience"))


def reset_statistics(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    """Start the bandit afresh for the selected blocks (their variants' impressions and clicks are zeroed)."""
    slots = list(queryset.values_list("slot", flat=True))
    count = VariantStat.objects.filter(slot__in=slots).update(impressions=0, clicks=0)
    logger.info("personalization: %s reset the statistics of blocks %s", request.user, slots)
    modeladmin.message_user(request, f"Reset {count} variant statistics.", messages.SUCCESS)


reset_statistics.short_description = "Reset the bandit statistics of the selected blocks"


@admin.register(ContentBlock)
class ContentBlockAdmin(admin.ModelAdmin):
    list_display = ("slot", "name", "active", "control_share", "variant_count", "created_at")
    list_filter = ("active",)
    search_fields = ("slot", "name")
    inlines = [VariantInline]
    actions = [reset_statistics]

    @admin.display(description="variants")
    def variant_count(self, obj: ContentBlock) -> int:
        return obj.variants.count()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        forget_block_config(form.instance.slot)  # pages use the new variants within seconds, not a minute


@admin.register(Variant)
class VariantAdmin(admin.ModelAdmin):
    list_display = ("__str__", "block", "key", "active", "category", "segment", "device", "country", "audience")
    list_filter = ("active", "audience", "device", "block")
    search_fields = ("key", "block__slot", "category", "segment")
    list_select_related = ("block",)

    def save_model(self, request: HttpRequest, obj: Variant, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        forget_block_config(obj.block.slot)


@admin.register(VariantStat)
class VariantStatAdmin(admin.ModelAdmin):
    list_display = ("slot", "variant", "impressions", "clicks", "ctr", "updated_at")
    list_filter = ("slot",)
    search_fields = ("slot", "variant")
    readonly_fields = ("slot", "variant", "impressions", "clicks", "updated_at")

    @admin.display(description="CTR")
    def ctr(self, obj: VariantStat) -> str:
        return f"{obj.clicks / obj.impressions:.1%}" if obj.impressions else "-"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
