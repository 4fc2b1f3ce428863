"""The demo storefront project: a small gift shop wired to django-personalization."""

from .celery import app as celery_app

__all__ = ("celery_app",)
