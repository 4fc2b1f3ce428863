"""The demo's URLs plus the serving benchmark's baseline: a bare DRF view returning a fixed list of 10 items."""

from django.urls import path
from rest_framework.response import Response
from rest_framework.views import APIView

from storefront_demo.urls import urlpatterns as demo_urlpatterns

FIXED = {
    "recommendation_id": "0" * 32, "model_version": 1, "slot": "default", "fallback": "",
    "items": [{"key": f"product:{i}", "score": 1.0 - i / 10, "title": f"Product {i}", "url": f"/p/{i}/",
               "image": "", "price": 9.99 + i, "category": "bench"} for i in range(1, 11)],
}


class BareView(APIView):
    """What any DRF endpoint costs here (same middleware, no personalization work): the benchmark's floor."""

    permission_classes: list = []

    def get(self, request):
        return Response(FIXED)


urlpatterns = [path("bench/bare/", BareView.as_view()), *demo_urlpatterns]
