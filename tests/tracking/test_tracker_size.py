"""tracker.js stays small: every page of every site that installs the app downloads it."""

from __future__ import annotations

import gzip
from pathlib import Path

import personalization

TRACKER = Path(personalization.__file__).parent / "static" / "personalization" / "tracker.js"


def test_tracker_is_under_3_kb_gzipped():
    assert len(gzip.compress(TRACKER.read_bytes(), compresslevel=9)) < 3 * 1024
