"""A site that installed the middleware but not ``personalization.api.urls``."""

from django.urls import path

from tests.tracking.urls import one_query_item_page, tag_page

urlpatterns = [
    path("counted/<int:pk>/", one_query_item_page),
    path("tag/", tag_page),
]
