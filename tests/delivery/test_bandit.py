"""Thompson sampling converges on the better variant; the control share is random at the configured rate."""

import types

import numpy as np
import pytest

from personalization.delivery import bandit


def test_thompson_sampling_converges_to_the_better_variant():
    rng = np.random.default_rng(7)
    truth = [0.04, 0.12, 0.06]
    stats = [[0, 0] for _ in truth]
    picks = []
    for _ in range(4000):
        arm, how = bandit.choose([tuple(s) for s in stats], rng, control_share=0.0)
        assert how == "thompson"
        stats[arm][1] += 1
        stats[arm][0] += int(rng.random() < truth[arm])
        picks.append(arm)
    assert np.mean(np.array(picks[-1000:]) == 1) > 0.85


def test_control_share_picks_uniformly_at_the_configured_rate():
    rng = np.random.default_rng(11)
    stats = [(500, 1000), (10, 1000), (10, 1000)]  # arm 0 is clearly best
    n, share = 20000, 0.2
    results = [bandit.choose(stats, rng, control_share=share) for _ in range(n)]
    control = [arm for arm, how in results if how == "control"]
    sd = (share * (1 - share) / n) ** 0.5
    assert abs(len(control) / n - share) < 4 * sd
    counts = np.bincount(control, minlength=3) / len(control)
    assert np.all(np.abs(counts - 1 / 3) < 0.03)  # uniform among arms, the best arm included
    assert all(arm == 0 for arm, how in results if how == "thompson")


def test_seeded_choice_is_reproducible():
    stats = [(3, 50), (4, 50)]
    first = [bandit.choose(stats, bandit.seeded_rng("v:abc", "hero", 7))[0] for _ in range(5)]
    assert len(set(first)) == 1
    with pytest.raises(ValueError):
        bandit.choose([], np.random.default_rng(0))


@pytest.mark.django_db
def test_choose_variant_respects_the_blocks_control_share_across_visitors(monkeypatch):
    from personalization.delivery import blocks
    from personalization.delivery.blocks import Audience, VariantOption, choose_variant
    from personalization.models import ContentBlock, VariantStat

    # one sticky period for the whole test (and the same seeded draws every day): a period turning between the
    # two choices below would make the second one new, not sticky
    monkeypatch.setattr(blocks, "time", types.SimpleNamespace(time=lambda: 1_700_000_000.0))

    ContentBlock.objects.create(slot="promo", control_share=0.3)
    VariantStat.objects.create(slot="promo", variant="a", impressions=1000, clicks=300)
    VariantStat.objects.create(slot="promo", variant="b", impressions=1000, clicks=10)
    options = [VariantOption("a"), VariantOption("b")]
    n = 1500
    hows = [choose_variant("promo", options, Audience(subject=f"v:{i}")).how for i in range(n)]
    rate = hows.count("control") / n
    assert abs(rate - 0.3) < 4 * (0.3 * 0.7 / n) ** 0.5
    # sticky: the same visitor gets the same answer again
    first = choose_variant("promo", options, Audience(subject="v:again"))
    again = choose_variant("promo", options, Audience(subject="v:again"))
    assert (again.how, again.variant.key) == ("sticky", first.variant.key)
