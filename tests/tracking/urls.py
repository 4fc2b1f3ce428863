"""URLs for tracking tests: the demo's, plus pages whose database work is known exactly."""

from django.http import HttpResponse
from django.template import Context, Template
from django.urls import path

from storefront_demo.shop.models import Category
from storefront_demo.urls import urlpatterns as demo_urlpatterns


def one_query_item_page(request, pk):
    """A page about product <pk> that makes exactly one query and never touches request.user."""
    return HttpResponse(f"{Category.objects.count()} categories")


one_query_item_page.personalization_item = lambda request, pk: f"product:{pk}"


def tag_page(request):
    return HttpResponse(Template("{% load personalization %}[{% tracking_script %}]").render(
        Context({"request": request})))


urlpatterns = [
    path("counted/<int:pk>/", one_query_item_page),
    path("tag/", tag_page),
    *demo_urlpatterns,
]
