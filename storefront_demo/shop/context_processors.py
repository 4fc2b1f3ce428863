from .cart import Cart


def shop(request):
    """Cart size for the navigation bar (read from the session, no query)."""
    session = getattr(request, "session", None)
    return {"cart_count": Cart(request).count if session is not None else 0}
