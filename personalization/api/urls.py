"""URLs of the REST API: ``path("api/personalization/", include("personalization.api.urls"))``."""

from django.urls import path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from personalization.api import schema  # noqa: F401 - registers the OpenAPI extensions
from personalization.api.events import EventsView
from personalization.api.segment import SegmentBatchView

app_name = "personalization"

urlpatterns = [
    path("events/", EventsView.as_view(), name="events"),
    path("segment/v1/batch", SegmentBatchView.as_view(), name="segment-batch"),
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="personalization:schema"), name="docs"),
]

from personalization.api.notifications import urlpatterns as notification_urls  # noqa: E402

urlpatterns += notification_urls  # inbox, opt-out, open pixel (README "Notifications")

from personalization.api.blocks import BlockView, PageView  # noqa: E402 - the delivery routes

urlpatterns += [
    path("blocks/<slug:slot>/", BlockView.as_view(), name="block"),
    path("page/", PageView.as_view(), name="page"),
]

from personalization.api.model_versions import urlpatterns as serving_urls  # noqa: E402

urlpatterns += serving_urls  # recommendations, similar items, staff model registry (README "API")

from personalization.api.bundle import BundleView  # noqa: E402 - on-device re-ranking (README)

urlpatterns += [path("bundle/", BundleView.as_view(), name="bundle")]

from personalization.api.me import MyDataView  # noqa: E402 - the person's own data (README "Privacy")

urlpatterns += [path("me/data/", MyDataView.as_view(), name="my-data")]

from personalization.api.monitoring import urlpatterns as monitoring_urls  # noqa: E402 - learning loop (README)

urlpatterns += monitoring_urls  # staff: list statistics, A/B test results
