"""The benchmark settings without ``TrackingMiddleware``: the baseline of the middleware-overhead benchmark."""

from benchmarks.settings_bench import *  # noqa: F403
from benchmarks.settings_bench import MIDDLEWARE

MIDDLEWARE = [m for m in MIDDLEWARE if m != "personalization.middleware.TrackingMiddleware"]
