"""Public import path of the tracking middleware: ``personalization.middleware.TrackingMiddleware``."""

from personalization.tracking.middleware import TrackingMiddleware

__all__ = ["TrackingMiddleware"]
