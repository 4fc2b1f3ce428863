"""The demo's URLs plus static files served by Django (as in development)."""

from django.contrib.staticfiles.urls import staticfiles_urlpatterns

from storefront_demo.urls import urlpatterns as demo_urlpatterns

urlpatterns = [*demo_urlpatterns, *staticfiles_urlpatterns()]
