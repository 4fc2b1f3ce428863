"""A forgotten person is gone from the live model at once: cold-start lists, no word of their history, in every
process; other people keep their personalized lists; a model trained after the erasure is not masked."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count

from personalization import privacy, serving, shared_cache
from personalization.freshness import invalidate_visitor
from personalization.models import Event, ForgetRequest
from personalization.serving.forgotten import FORGOTTEN_GEN_KEY, forgotten_hashes, is_forgotten, subject_hash
from personalization.serving.keys import state_key
from personalization.serving.live import live_token
from personalization.subjects import model_subject


def trained_users(n: int = 2) -> list[int]:
    """Simulated users with the most item events (they have rows in the live model)."""
    rows = (Event.objects.filter(user__isnull=False).exclude(item_key="").values("user_id")
            .annotate(c=Count("id")).order_by("-c", "user_id")[:n])
    return [row["user_id"] for row in rows]


def personalized(result) -> bool:
    return result.fallback == "" and not all(r.reason.startswith("popularity") for r in result.items)


def test_a_forgotten_user_gets_cold_start_lists_and_no_word_of_their_history(shop, django_capture_on_commit_callbacks):
    user, other = trained_users()
    _, system = serving.live_system()
    assert system.training_items(model_subject(system, f"u:{user}"))  # the live model holds their row ...
    before = serving.recommend(f"u:{user}", 6, explain=True)
    assert personalized(before)
    assert any(r.explanation.startswith(("Because you", "You looked at")) for r in before.items)
    assert serving.live_model_rows([f"u:{user}"])["rows"]

    assert shared_cache.get(state_key(f"u:{user}")) is not None  # their cached visitor state
    with django_capture_on_commit_callbacks(execute=True):
        privacy.forget(user_id=user)
    assert shared_cache.get(state_key(f"u:{user}")) is None

    after = serving.recommend(f"u:{user}", 6, explain=True)
    assert not after.cached and after.fallback == "popularity"
    assert after.items and all(r.reason.startswith("popularity") for r in after.items)
    assert not any("you" in r.explanation.lower() for r in after.items)  # "Popular in the shop", nothing of theirs
    assert serving.live_model_rows([f"u:{user}"])["rows"] == {}  # ... and the export says it no longer counts
    assert personalized(serving.recommend(f"u:{other}", 6))  # another person keeps their lists


def test_another_process_hides_the_person_on_its_next_request(shop):
    """Another process's memo is current (same live version, same generation); the erasure's announcement in the
    shared cache makes it re-read the set on its very next request, however young its memo."""
    user = trained_users(1)[0]
    assert personalized(serving.recommend(f"u:{user}", 6))  # memo read: nobody hidden
    ForgetRequest.objects.create(subject_hash=subject_hash(f"u:{user}"), subject_hashes=[subject_hash(f"u:{user}")],
                                 channel="python")
    # what the forgetting process did, except resetting its own memo: this one's is still current
    Event.objects.filter(user_id=user).delete()
    invalidate_visitor(f"u:{user}")
    shared_cache.set_many({FORGOTTEN_GEN_KEY: 12345}, timeout=None)

    assert serving.recommend(f"u:{user}", 5).fallback == "popularity"


def test_a_version_trained_after_the_erasure_is_not_masked(shop):
    """Such a version never saw the deleted rows: a person who came back since is served from their new history."""
    user = trained_users(1)[0]
    token = live_token()
    row = ForgetRequest.objects.create(subject_hash=subject_hash(f"u:{user}"),
                                       subject_hashes=[subject_hash(f"u:{user}")], channel="python")
    serving.announce_forgotten()
    assert is_forgotten(f"u:{user}", token)
    ForgetRequest.objects.filter(pk=row.pk).update(created_at=shop.created_at - timedelta(seconds=1))
    serving.announce_forgotten()
    assert forgotten_hashes(token) == frozenset()
    assert personalized(serving.recommend(f"u:{user}", 6))


def test_precompute_skips_forgotten_people(shop, django_capture_on_commit_callbacks):
    from personalization.serving.precomputation import precompute

    user = trained_users(1)[0]
    Event.objects.filter(user_id=user).update(occurred_at=shop.created_at + timedelta(seconds=1))  # recently active
    with django_capture_on_commit_callbacks(execute=True):
        privacy.forget(user_id=user)
    Event.objects.create(event_type="view", item_key=Event.objects.exclude(item_key="").first().item_key,
                         user_id=user, occurred_at=shop.created_at + timedelta(days=1),
                         received_at=shop.created_at + timedelta(days=1))  # they came back

    _, system = serving.live_system()
    seen = []
    original = type(system).recommend.__get__(system)
    system.recommend = lambda users, *a, **k: seen.extend(users) or original(users, *a, **k)
    try:
        precompute(days=3650)
    finally:
        system.__dict__.pop("recommend", None)
    assert seen and f"u:{user}" not in seen


def test_deleting_a_user_drops_them_from_the_live_model(shop, django_capture_on_commit_callbacks, django_user_model):
    """The issue's finding: after the deletion, explain=1 still said "Because you added ... to your cart"."""
    user = trained_users(1)[0]
    assert personalized(serving.recommend(f"u:{user}", 6))
    with django_capture_on_commit_callbacks(execute=True):
        django_user_model.objects.get(pk=user).delete()
    after = serving.recommend(f"u:{user}", 6, explain=True)
    assert after.fallback == "popularity" and not any("you" in r.explanation.lower() for r in after.items)
    assert not Event.objects.filter(user_id=user).exists()
