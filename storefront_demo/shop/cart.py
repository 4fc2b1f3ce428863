"""A session cart: ``{product pk (str): quantity}`` under one session key."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from django.http import HttpRequest

from .models import Product

SESSION_KEY = "cart"
MAX_QUANTITY = 99


@dataclass
class CartLine:
    product: Product
    quantity: int

    @property
    def total(self) -> Decimal:
        return self.product.price * self.quantity


class Cart:
    def __init__(self, request: HttpRequest):
        self.session = request.session
        raw = self.session.get(SESSION_KEY)
        self.items: dict[str, int] = raw if isinstance(raw, dict) else {}

    def save(self) -> None:
        self.session[SESSION_KEY] = self.items
        self.session.modified = True

    @property
    def count(self) -> int:
        return sum(q for q in self.items.values() if isinstance(q, int))

    def quantity(self, pk: int) -> int:
        return self.items.get(str(pk), 0)

    def add(self, pk: int, quantity: int = 1) -> int:
        new = min(MAX_QUANTITY, self.quantity(pk) + max(1, quantity))
        self.items[str(pk)] = new
        self.save()
        return new

    def set(self, pk: int, quantity: int) -> None:
        if quantity <= 0:
            self.items.pop(str(pk), None)
        else:
            self.items[str(pk)] = min(MAX_QUANTITY, quantity)
        self.save()

    def remove(self, pk: int) -> int:
        removed = self.items.pop(str(pk), 0)
        self.save()
        return removed

    def clear(self) -> None:
        self.items = {}
        self.save()

    def lines(self) -> list[CartLine]:
        pks = [int(k) for k in self.items if k.isdigit()]
        products = Product.objects.select_related("category", "brand").in_bulk(pks)
        return [CartLine(products[int(k)], q) for k, q in self.items.items() if k.isdigit() and int(k) in products]

    def total(self, lines: list[CartLine] | None = None) -> Decimal:
        return sum((line.total for line in (lines if lines is not None else self.lines())), Decimal("0.00"))
