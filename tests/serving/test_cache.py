"""Caching: hits make no model call; a visitor's action or a new live model changes the key; precompute fills it."""

from __future__ import annotations

import uuid

from django.utils import timezone

import personalization
from personalization import registry, serving
from personalization.models import Event, RecommendationLog
from personalization.serving.state import states_from_db
from personalization.tracking.schema import EventData
from personalization.tracking.service import record
from tests.caches import clear_cache
from tests.serving.shop import (
    active_visitor,
    copy_of,
    counting,
    precomputed_and_online,
    uncount,
    warm_subjects,
)


def test_a_cache_hit_returns_the_same_items_without_calling_the_model(shop):
    visitor = active_visitor()
    first = serving.recommend(visitor, 6)
    _, system = serving.live_system()
    counts = counting(system)
    try:
        again = serving.recommend(visitor, 6)
        assert again.keys() == first.keys() and again.cached and not first.cached
        assert [r.reason for r in again.items] == [r.reason for r in first.items]
        assert again.recommendation_id != first.recommendation_id  # each served list is attributed on its own
        assert counts["recommend"] == 0
        serving.recommend(visitor, 6, slot="default", category="candles")  # other parameters: another entry
        assert counts["recommend"] == 1
    finally:
        uncount(system)


def test_an_action_of_the_visitor_invalidates_their_entries_only(shop, django_capture_on_commit_callbacks):
    visitor, other = active_visitor(), "v:" + "9" * 32
    before = serving.recommend(visitor, 6)
    serving.recommend(other, 6)
    _, system = serving.live_system()
    counts = counting(system)
    try:
        # the tracking service's path: record() -> prepare() -> freshness.invalidate_events()
        event = EventData(event_type="purchase", item_key=before.keys()[0], event_id=uuid.uuid4(),
                          occurred_at=timezone.now(), source="python")
        event.visitor_id = visitor[2:]
        with django_capture_on_commit_callbacks(execute=True):
            result = record(None, [event])
        assert result.accepted == 1
        after = serving.recommend(visitor, 6)
        assert counts["recommend"] == 1 and not after.cached
        assert before.keys()[0] not in after.keys()  # just bought: excluded now
        assert serving.recommend(other, 6).cached  # nobody else's entry changed
    finally:
        uncount(system)


def test_a_new_live_model_changes_every_key(shop, django_capture_on_commit_callbacks, settings):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PRECOMPUTE_ON_PROMOTION": False}
    visitor = active_visitor()
    assert serving.recommend(visitor, 5).model_version == shop.pk
    second = copy_of(shop)
    with django_capture_on_commit_callbacks(execute=True):
        registry.promote(second, force=True)
    result = serving.recommend(visitor, 5)
    assert result.model_version == second.pk and not result.cached
    with django_capture_on_commit_callbacks(execute=True):
        registry.rollback()
    assert serving.recommend(visitor, 5).model_version == shop.pk


def test_precompute_fills_the_cache_for_active_visitors(shop, settings):
    from django.core.cache import caches

    from personalization.tasks import precompute_recommendations

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {"default": {}, "home": {"n": 4}}}
    clear_cache(caches["default"])
    stats = precompute_recommendations.delay(days=30).get()
    assert stats["visitors"] > 10 and stats["entries"] >= stats["visitors"]  # warm visitors x 2 slots
    visitor = active_visitor()
    _, system = serving.live_system()
    counts = counting(system)
    try:
        home = serving.recommend(visitor, slot="home")
        default = serving.recommend(visitor)
        assert home.cached and default.cached and counts["recommend"] == 0
        assert len(home.keys()) == 4 and len(default.keys()) == 10
    finally:
        uncount(system)
    clear_cache(caches["default"])
    assert serving.recommend(visitor, slot="home").keys() == home.keys()  # computed online: the same list


def test_every_precomputed_list_is_the_list_the_visitor_gets_online(shop, settings):
    """Precomputing must not change a list: every visitor's precomputed list equals the one serving computes for
    them alone, with each slot's own exclusions (their purchases and cart, or everything they viewed): the same
    items, in the same order, with the same scores."""
    from django.core.cache import caches

    from personalization.tasks import precompute_recommendations

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {
        "default": {}, "home": {"n": 4}, "fresh": {"n": 6, "exclude_viewed": True}}}
    clear_cache(caches["default"])
    precompute_recommendations.delay(days=30).get()
    subjects = warm_subjects()
    states = states_from_db(subjects)
    precomputed, online = precomputed_and_online(subjects, ["default", "home", "fresh"])
    buyers = {s for s in subjects if states[s].purchased or states[s].in_cart}
    # most visitors, buyers among them, in every slot: the exclusions the model applies per visitor are covered
    assert len(precomputed) > 2 * len(subjects) and buyers & {s for s, _ in precomputed}
    assert {slot for _, slot in precomputed} == {"default", "home", "fresh"}
    differ = {key: (mine, online[key]) for key, mine in precomputed.items() if mine != online[key]}
    assert not differ, f"{len(differ)} of {len(precomputed)} differ, e.g. {next(iter(differ.items()))}"


def test_a_list_with_exclusions_is_filled_from_the_precomputed_lists_spare_items(shop, settings):
    """A page's later list excludes what the earlier lists showed: the precomputed list answers it, filtered,
    while its spare items fill the places; beyond them serving scores again. No excluded item is ever served."""
    from django.core.cache import caches

    from personalization.tasks import precompute_recommendations

    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SLOTS": {"default": {}, "home": {"n": 4}}}
    clear_cache(caches["default"])
    precompute_recommendations.delay(days=30, slots=["home"]).get()
    visitor = active_visitor()
    _, system = serving.live_system()
    counts = counting(system)
    try:
        top = serving.recommend(visitor, slot="home").keys()
        shown = {top[0], top[2]}
        later = serving.recommend(visitor, slot="home", exclude=shown)
        assert later.cached and counts["recommend"] == 0
        assert later.keys()[:2] == [top[1], top[3]] and len(later.keys()) == 4 and not shown & set(later.keys())
        spare = set(later.keys()) | set(top)
        beyond = serving.recommend(visitor, slot="home", exclude=spare)  # more excluded than spare items
        assert not beyond.cached and counts["recommend"] == 1
        assert len(beyond.keys()) == 4 and not spare & set(beyond.keys())
    finally:
        uncount(system)


def test_each_served_list_is_logged_for_attribution(shop, django_capture_on_commit_callbacks):
    visitor = active_visitor()
    with django_capture_on_commit_callbacks(execute=True):
        result = personalization.recommend(visitor, 4, slot="default")
    row = RecommendationLog.objects.get(pk=result.recommendation_id)
    assert row.subject == visitor and row.slot == "default" and row.model_version_id == shop.pk
    assert [i["item"] for i in row.items] == result.keys() and row.fallback == ""
    assert all(i["reason"] for i in row.items)
    # a click carrying the id is attributed to the list and the model that produced it
    Event.objects.create(event_type="click", item_key=result.keys()[0], visitor_id=visitor[2:],
                         recommendation_id=result.recommendation_id, occurred_at=row.created_at,
                         received_at=row.created_at)
    clicked = Event.objects.filter(recommendation_id=row.pk).values_list("item_key", flat=True)
    assert list(clicked) == [result.keys()[0]]


def test_session_history_length_limits_the_visitors_recent_items(shop, settings):
    visitor = active_visitor()
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SESSION_HISTORY_LENGTH": 3}
    assert len(serving.visitor_state(visitor, vv="a").history) == 3
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "SESSION_HISTORY_LENGTH": 0}
    state = serving.visitor_state(visitor, vv="b")  # another visitor version: not the cached state
    assert state.history == [] and state.actions  # no session history; purchases and cart still known


def test_the_single_visitor_query_reads_what_the_batch_query_reads(shop, django_user_model):
    """Serving's precompiled one-subject query and the batch query (precompute) agree, for visitors and users."""
    visitor = active_visitor()
    user = django_user_model.objects.create_user("history", "h@example.com", "pw")
    items = Event.objects.exclude(item_key="").values_list("item_key", flat=True).distinct()[:3]
    now = timezone.now()
    Event.objects.bulk_create([
        Event(event_type=kind, item_key=item, user=user, visitor_id="", occurred_at=now, received_at=now)
        for item, kind in zip(items, ["view", "add_to_cart", "purchase"], strict=True)
    ] + [Event(event_type="impression", item_key=items[0], user=user, occurred_at=now, received_at=now)])
    subjects = [visitor, f"u:{user.pk}", "u:999999999", "u:not-a-number"]
    batch = states_from_db(subjects)
    for subject in subjects:
        assert states_from_db([subject])[subject] == batch[subject]
    assert batch[f"u:{user.pk}"].purchased == [items[2]] and batch[visitor].history
