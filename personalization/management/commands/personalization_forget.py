"""``manage.py personalization_forget --user ID | --visitor ID``: erase a person and print the receipt."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from personalization import privacy
from personalization.management.person_arguments import add_person_arguments


class Command(BaseCommand):
    help = ("Forget a person: delete their events (and those of every visitor id linked to them), visitor links, "
            "recommendation logs, notifications and preferences, clear their cached lists, and hide them from the "
            "live model at once. Prints the receipt; an audit record without personal data is kept.")

    def add_arguments(self, parser: Any) -> None:
        add_person_arguments(parser, "forgets")
        parser.add_argument("--json", action="store_true", help="print the receipt as JSON")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            receipt = privacy.forget(user_id=opts["user"], visitor_id=opts["visitor"], channel="command",
                                     requested_by="manage.py personalization_forget")
        except ValueError as exc:
            raise CommandError(f"{exc} E.g. --user 42 or --visitor 3f2b9c0e8d7a4b1c.") from exc
        if opts["json"]:
            self.stdout.write(json.dumps(receipt.as_dict(), indent=2, sort_keys=True))
            return
        deleted = ", ".join(f"{receipt.counts[t]} {t.replace('_', ' ')}" for t in privacy.TABLES)
        self.stdout.write(f"Forget request {receipt.request_id}: deleted {deleted}; "
                          f"{receipt.subjects} subject id(s) hidden from the live model.")
        for note in receipt.notes:
            self.stdout.write(self.style.WARNING(note))
