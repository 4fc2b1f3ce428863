"""The demo, with its simulator sending traffic over HTTP, shows per-version click-through in the admin (issue #13's
"done when"): ``manage.py demo_traffic`` against a live server of the demo, with a trained live model."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db.models import Sum
from django.urls import reverse

from tests.conftest import SHOP_ARGS


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_simulated_shoppers_fill_the_admin_s_per_version_click_through(live_server, settings, tmp_path, client,
                                                                      django_user_model):
    from personalization import registry
    from personalization.models import Event, ListDailyStat, RecommendationLog

    settings.MEDIA_ROOT = str(tmp_path / "media")
    call_command("demo", *[a for a in SHOP_ARGS if a != "--no-train"], stdout=StringIO())
    live = registry.live_version()
    assert live is not None

    out = StringIO()
    call_command("demo_traffic", "--url", live_server.url, "--visits", "40", "--rate", "100000", "--visitors", "10",
                 "--no-periodic", stdout=out)
    # every visit was served a list by the live model, and its impressions and clicks came back with the list's id
    logs = RecommendationLog.objects.filter(slot="home", model_version=live.pk)
    assert logs.count() >= 40, out.getvalue()
    impressions = Event.objects.filter(event_type="impression", recommendation_id__in=logs.values("pk")).count()
    assert impressions >= 40 * 4, out.getvalue()
    # each shopper is one visitor across its visits (its cookie came back): its views, lists and impressions
    assert Event.objects.filter(event_type="impression").values("visitor_id").distinct().count() <= 10

    # run again with its periodic tasks (the embedded demo has no beat): the list statistics are aggregated
    err = StringIO()
    call_command("demo_traffic", "--url", live_server.url, "--visits", "1", "--rate", "100000", "--visitors", "10",
                 stdout=StringIO(), stderr=err)
    assert not err.getvalue()
    stats = ListDailyStat.objects.filter(slot="home", model_version=live.pk).aggregate(
        shown=Sum("impressions"), clicked=Sum("clicks"))
    assert stats["shown"] >= impressions and stats["clicked"] > 0

    staff = django_user_model.objects.create_superuser("boss", "boss@example.com", "pw")
    client.force_login(staff)
    page = client.get(reverse("admin:personalization_listdailystat_changelist")
                      + f"?slot=home&model_version__id__exact={live.pk}").content.decode()
    assert f"{stats['shown']} seen, {stats['clicked']} clicks" in page


def test_demo_traffic_explains_a_missing_server_or_shop(db):
    with pytest.raises(CommandError, match="run `manage.py demo` first"):
        call_command("demo_traffic", "--visits", "1", stdout=StringIO())
    call_command("demo", *SHOP_ARGS, stdout=StringIO())
    with pytest.raises(CommandError, match="Cannot reach the demo"):
        call_command("demo_traffic", "--url", "http://127.0.0.1:9", "--visits", "1", stdout=StringIO())
    with pytest.raises(CommandError, match="--shift-to: unknown categories"):
        call_command("demo_traffic", "--shift-to", "nope", "--visits", "1", stdout=StringIO())
