"""Views of the demo shop. Every interaction worth learning from is recorded with ``personalization.track``."""

from __future__ import annotations

import logging
from decimal import Decimal
from typing import Any

from django.contrib import messages
from django.contrib.auth import login
from django.core.paginator import Paginator
from django.db import transaction
from django.db.models import Count, Q
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

import personalization
from personalization.tracking.identity import get_visitor

from .cart import Cart
from .forms import QuantityForm, SignupForm
from .models import Category, Order, OrderLine, Product

logger = logging.getLogger(__name__)

PAGE_SIZE = 24
LAST_ORDERS_KEY = "shop_orders"
SORTS = {"name": ("name", "pk"), "price": ("price", "pk"), "-price": ("-price", "pk"), "new": ("-created_at", "-pk")}


def _track(request: HttpRequest, event_type: str, item_key: str | None, value: float | None = None,
           **context: Any) -> None:
    """Record an event; a tracking failure is logged and never breaks the shopper's page."""
    try:
        personalization.track(request, event_type, item_key, value=value, **context)
    except Exception:
        logger.exception("Could not record a %s event for %s", event_type, item_key)


def _products():
    return Product.objects.select_related("category", "brand")


def _categories():
    return Category.objects.annotate(n_products=Count("products")).filter(n_products__gt=0)


def _next_url(request: HttpRequest, default: str) -> str:
    candidate = request.POST.get("next") or request.GET.get("next")
    if candidate and url_has_allowed_host_and_scheme(candidate, {request.get_host()}, request.is_secure()):
        return candidate
    return default


def _quantity(request: HttpRequest, default: int = 1) -> int | None:
    form = QuantityForm(request.POST or {"quantity": default})
    return form.cleaned_data["quantity"] if form.is_valid() else None


def home(request: HttpRequest) -> HttpResponse:
    featured = list(_products().filter(in_stock=True).order_by("-created_at", "-pk")[:12])
    return render(request, "shop/home.html", {"featured": featured, "categories": _categories()})


def category(request: HttpRequest, slug: str) -> HttpResponse:
    cat = get_object_or_404(Category, slug=slug)
    sort = request.GET.get("sort", "name")
    qs = _products().filter(category=cat).order_by(*SORTS.get(sort, SORTS["name"]))
    page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
    return render(request, "shop/category.html", {
        "category": cat, "page": page, "products": page.object_list, "sort": sort, "categories": _categories(),
    })


def product(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(_products(), pk=pk)
    return render(request, "shop/product.html", {"product": item, "in_cart": Cart(request).quantity(pk)})


def search(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "").replace("\x00", "").strip()[:100]  # PostgreSQL text cannot hold a NUL
    page = None
    if q:
        qs = _products().filter(Q(name__icontains=q) | Q(description__icontains=q)).order_by("name", "pk")
        page = Paginator(qs, PAGE_SIZE).get_page(request.GET.get("page"))
        if not request.GET.get("page"):  # one search event per query, not per result page
            _track(request, "search", None, query=q, results=page.paginator.count)
    return render(request, "shop/search.html", {
        "q": q, "page": page, "products": page.object_list if page else [],
    })


def cart(request: HttpRequest) -> HttpResponse:
    c = Cart(request)
    lines = c.lines()
    return render(request, "shop/cart.html", {"lines": lines, "total": c.total(lines)})


@require_POST
def cart_add(request: HttpRequest, pk: int) -> HttpResponse:
    item = get_object_or_404(Product, pk=pk)
    quantity = _quantity(request) or 1
    if not item.in_stock:
        messages.error(request, f"Sorry, {item.name} is out of stock.")
        return redirect(_next_url(request, item.get_absolute_url()))
    before = Cart(request).quantity(pk)
    after = Cart(request).add(pk, quantity)
    added = after - before
    if added > 0:
        _track(request, "add_to_cart", item.item_key, value=float(item.price * added), quantity=added)
    messages.success(request, f"Added {item.name} to your cart.")
    return redirect(_next_url(request, "shop:cart"))


@require_POST
def cart_remove(request: HttpRequest, pk: int) -> HttpResponse:
    removed = Cart(request).remove(pk)
    if removed:
        item = Product.objects.filter(pk=pk).first()
        value = float(item.price * removed) if item else None
        _track(request, "remove_from_cart", f"product:{pk}", value=value, quantity=removed)
    return redirect(_next_url(request, "shop:cart"))


@require_POST
def cart_update(request: HttpRequest, pk: int) -> HttpResponse:
    quantity = _quantity(request)
    if quantity is None:
        messages.error(request, "Quantity must be a whole number from 0 to 99.")
        return redirect("shop:cart")
    c = Cart(request)
    before = c.quantity(pk)
    item = Product.objects.filter(pk=pk).first()
    if item is None:
        c.remove(pk)
        return redirect("shop:cart")
    c.set(pk, quantity)
    delta = c.quantity(pk) - before
    if delta > 0:
        _track(request, "add_to_cart", item.item_key, value=float(item.price * delta), quantity=delta)
    elif delta < 0:
        _track(request, "remove_from_cart", item.item_key, value=float(item.price * -delta), quantity=-delta)
    return redirect("shop:cart")


def checkout(request: HttpRequest) -> HttpResponse:
    c = Cart(request)
    lines = c.lines()
    if request.method != "POST":
        return render(request, "shop/checkout.html", {"lines": lines, "total": c.total(lines)})
    if not lines:
        messages.error(request, "Your cart is empty.")
        return redirect("shop:cart")
    user = request.user if request.user.is_authenticated else None
    visitor_id = get_visitor(request).visitor_id
    with transaction.atomic():
        order = Order.objects.create(user=user, visitor_id=visitor_id or "", total=Decimal("0.00"))
        OrderLine.objects.bulk_create(
            [OrderLine(order=order, product=line.product, quantity=line.quantity, unit_price=line.product.price)
             for line in lines]
        )
        order.total = c.total(lines)
        order.save(update_fields=["total"])
    for line in lines:
        _track(request, "purchase", line.product.item_key, value=float(line.total), quantity=line.quantity,
               order=order.pk)
    c.clear()
    request.session[LAST_ORDERS_KEY] = [*request.session.get(LAST_ORDERS_KEY, [])[-9:], order.pk]
    return redirect("shop:order_done", pk=order.pk)


def order_done(request: HttpRequest, pk: int) -> HttpResponse:
    if pk not in request.session.get(LAST_ORDERS_KEY, []):
        raise Http404("No such order in this session.")
    order = get_object_or_404(Order.objects.prefetch_related("lines__product__category"), pk=pk)
    return render(request, "shop/thanks.html", {"order": order})


def signup(request: HttpRequest) -> HttpResponse:
    if request.method == "POST":
        form = SignupForm(request.POST)
        if form.is_valid():
            user = form.save()
            login(request, user)  # the one backend of AUTHENTICATION_BACKENDS
            messages.success(request, f"Welcome, {user.get_username()}!")
            return redirect(_next_url(request, "shop:home"))
    else:
        form = SignupForm()
    return render(request, "registration/signup.html", {"form": form})
