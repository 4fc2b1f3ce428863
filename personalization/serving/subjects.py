"""What the live model holds about given subjects: their training rows, for a person's data export."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from personalization.serving.forgotten import forgotten_among
from personalization.serving.live import live_revision, live_token, system_for
from personalization.subjects import model_subject


def live_model_rows(subjects: Sequence[str]) -> dict[str, Any]:
    """``{"model_version": id or None, "rows": {subject: [{"item", "weight"}, ...]}}``: the items each subject's
    training row in the live model holds (subjects it has no row for, or hides as forgotten, are left out)."""
    token = live_token()
    version_id, system = system_for(token, live_revision(token))
    if system is None:
        return {"model_version": None, "rows": {}}
    hidden = forgotten_among(subjects, token)
    rows = {}
    for subject in subjects:
        if subject in hidden:
            continue
        items = system.training_items(model_subject(system, subject))  # the artifact's pseudonym
        if items:
            rows[subject] = [{"item": key, "weight": round(weight, 6)} for key, weight in items]
    return {"model_version": version_id, "rows": rows}
