"""ASGI entry point: ``uvicorn storefront_demo.asgi:application``."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "storefront_demo.settings")

application = get_asgi_application()
