"""Each trigger selects the right users and items; the threshold is respected."""

from __future__ import annotations

from datetime import timedelta

from django.core import mail

from personalization.models import Notification

from .conftest import NOW, add_event, run


def sent(rule=None):
    rows = Notification.objects.filter(status=Notification.Status.SENT)
    return rows.filter(rule=rule) if rule is not None else rows


def item_keys(notification):
    return [i["key"] for i in notification.payload["items"]]


def test_recommended_items_go_to_active_users_with_available_unbought_items(engaged, inactive, catalog, make_rule):
    catalog[1].in_stock = False
    catalog[1].save()
    rule = make_rule(threshold=0.0)
    report = run()
    assert set(sent(rule).values_list("user_id", flat=True)) == {engaged.pk, inactive.pk}
    mine = sent(rule).get(user=engaged)
    keys = item_keys(mine)
    assert keys and len(keys) <= 4
    assert catalog[0].item_key not in keys  # bought
    assert catalog[1].item_key not in keys  # unavailable
    assert mine.payload["trigger"] == "recommended_items" and mine.payload["fallback"] == "popularity"
    assert mine.subject == "Picked for you, Engaged"
    assert mine.payload["items"][0]["url"].startswith("https://shop.example/")
    assert report[f"{rule.pk}:{rule.name}"] == {"sent": 2}
    assert len(mail.outbox) == 2


def test_the_threshold_is_respected(engaged, inactive, make_rule):
    everyone = make_rule(name="low", threshold=0.0)
    picky = make_rule(name="mid", threshold=0.5)
    nobody = make_rule(name="high", threshold=0.99)
    report = run()
    assert sent(everyone).count() == 2
    assert list(sent(picky).values_list("user_id", flat=True)) == [engaged.pk]
    assert not sent(nobody).exists()
    assert report[f"{nobody.pk}:high"] == {"below_threshold": 2}
    assert sent(picky).get().payload["score"] >= 0.5


def test_abandoned_cart_selects_idle_carts_only_with_their_items(make_user, catalog, make_rule):
    idle = make_user("idle")  # carted two items 5 hours ago, removed one of them
    add_event(idle, "add_to_cart", catalog[0].item_key, NOW - timedelta(hours=6))
    add_event(idle, "add_to_cart", catalog[1].item_key, NOW - timedelta(hours=5))
    add_event(idle, "add_to_cart", catalog[2].item_key, NOW - timedelta(hours=5))
    add_event(idle, "remove_from_cart", catalog[2].item_key, NOW - timedelta(hours=4, minutes=50))
    buyer = make_user("buyer")  # carted then bought
    add_event(buyer, "add_to_cart", catalog[0].item_key, NOW - timedelta(hours=8))
    add_event(buyer, "purchase", catalog[0].item_key, NOW - timedelta(hours=7), value=10.0)
    shopping = make_user("shopping")  # still shopping: last cart change an hour ago
    add_event(shopping, "add_to_cart", catalog[0].item_key, NOW - timedelta(hours=9))
    add_event(shopping, "add_to_cart", catalog[3].item_key, NOW - timedelta(hours=1))
    stale = make_user("stale")  # a cart left a month ago is left alone
    add_event(stale, "add_to_cart", catalog[0].item_key, NOW - timedelta(days=30))
    later = make_user("later")  # a cart filled after "now" does not exist yet
    add_event(later, "add_to_cart", catalog[0].item_key, NOW + timedelta(hours=1))
    rule = make_rule("abandoned_cart", subject="You left {{ items|length }} items behind")

    run()
    note = sent(rule).get()
    assert note.user == idle
    assert item_keys(note) == [catalog[1].item_key, catalog[0].item_key]  # most recently carted first
    assert note.subject == "You left 2 items behind"
    assert "in your cart" in note.body and "Product 2" in note.body

    run(now=NOW + timedelta(hours=1))  # same cart: no second reminder
    assert sent(rule).count() == 1
    add_event(idle, "add_to_cart", catalog[4].item_key, NOW + timedelta(hours=2))
    run(now=NOW + timedelta(hours=7))  # the cart changed and went idle again: a new reminder
    assert sent(rule).filter(user=idle).count() == 2
    assert catalog[4].item_key in item_keys(sent(rule).filter(user=idle).order_by("-pk").first())
    # by then the other two carts have been idle long enough too
    assert set(sent(rule).values_list("user_id", flat=True)) == {idle.pk, shopping.pk, later.pk}


def test_back_in_stock_tells_the_users_who_wanted_the_item_once(make_user, catalog, make_rule):
    sold_out = catalog[2]
    sold_out.in_stock = False
    sold_out.save()
    viewer = make_user("viewer")
    add_event(viewer, "view", sold_out.item_key, NOW - timedelta(days=2))
    carter = make_user("carter")
    add_event(carter, "add_to_cart", sold_out.item_key, NOW - timedelta(days=1))
    other = make_user("other")  # never looked at it
    add_event(other, "view", catalog[0].item_key, NOW - timedelta(days=1))
    rule = make_rule("back_in_stock", subject="{{ item.title }} is back")

    run()  # first run: the snapshot records the item as unavailable, nothing to announce
    assert not sent(rule).exists()

    run(now=NOW + timedelta(hours=1))  # still sold out
    assert not sent(rule).exists()

    sold_out.in_stock = True
    sold_out.save()
    run(now=NOW + timedelta(hours=2))
    assert set(sent(rule).values_list("user_id", flat=True)) == {viewer.pk, carter.pk}
    assert all(item_keys(n) == [sold_out.item_key] for n in sent(rule))
    assert sent(rule).first().subject == f"{sold_out.name} is back"
    assert "back in stock" in sent(rule).first().body

    run(now=NOW + timedelta(hours=3))  # the restock is announced once
    assert sent(rule).count() == 2


def test_a_restock_seen_during_quiet_hours_is_announced_after_them(make_user, catalog, make_rule):
    sold_out = catalog[2]
    sold_out.in_stock = False
    sold_out.save()
    viewer = make_user("viewer")
    add_event(viewer, "view", sold_out.item_key, NOW - timedelta(days=2))
    rule = make_rule("back_in_stock", quiet_start=21, quiet_end=8)
    night = NOW.replace(hour=22)
    run(now=night)
    sold_out.in_stock = True
    sold_out.save()
    report = run(now=night + timedelta(hours=1))
    assert report[f"{rule.pk}:{rule.name}"] == {"deferred_quiet_hours": 1}
    run(now=night + timedelta(hours=11))  # 09:00 the next morning
    assert sent(rule).get().user == viewer
    run(now=night + timedelta(days=4))  # long after: nothing new
    assert sent(rule).count() == 1
