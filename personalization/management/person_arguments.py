"""The ``--user ID | --visitor ID`` arguments of the commands that act on one person (forget, export)."""

from __future__ import annotations

from typing import Any


def add_person_arguments(parser: Any, verb: str) -> None:
    """Add the required, mutually exclusive ``--user`` / ``--visitor``; ``verb`` says what a linked visitor does."""
    who = parser.add_mutually_exclusive_group(required=True)
    who.add_argument("--user", type=int, metavar="ID", help="the user's primary key")
    who.add_argument("--visitor", metavar="ID", help="a visitor id (Event.visitor_id); a visitor linked to a "
                                                      f"user at sign-in {verb} that user")
