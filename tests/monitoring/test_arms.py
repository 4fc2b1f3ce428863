"""Sticky assignment of subjects to the arms of an A/B test."""

from __future__ import annotations

import pytest

from personalization.serving.arms import arm_of, bucket


def test_a_subject_stays_in_its_arm():
    for i in range(200):
        subject = f"v:visitor-{i}"
        assert len({arm_of(subject, 7, 0.3) for _ in range(3)}) == 1


@pytest.mark.parametrize("share", [0.1, 0.5, 0.8])
def test_the_share_of_b_is_respected_on_10k_subjects(share):
    in_b = sum(arm_of(f"u:{i}", 11, share) == "B" for i in range(10_000))
    # binomial standard deviation at n = 10k is at most 0.005: 4 of them as tolerance
    assert abs(in_b / 10_000 - share) < 0.02


def test_each_experiment_reshuffles_subjects():
    same = sum(arm_of(f"v:{i}", 1, 0.5) == arm_of(f"v:{i}", 2, 0.5) for i in range(2000))
    assert 850 < same < 1150  # independent halves agree about half of the time


def test_the_assignment_depends_on_the_secret_key(settings):
    before = [bucket(f"v:{i}", 3) for i in range(50)]
    settings.SECRET_KEY = "another-secret-key-for-this-test-only-0123456789"
    assert [bucket(f"v:{i}", 3) for i in range(50)] != before
