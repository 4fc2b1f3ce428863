"""``manage.py personalization_export_person --user ID | --visitor ID``: everything stored about a person, as JSON."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from personalization import privacy
from personalization.management.person_arguments import add_person_arguments


class Command(BaseCommand):
    help = ("Print (or write to --output) everything the app stores about a person as JSON: events, visitor links, "
            "recommendation logs, notifications, preferences and their rows in the live model.")

    def add_arguments(self, parser: Any) -> None:
        add_person_arguments(parser, "exports")
        parser.add_argument("--output", metavar="FILE", help="write the JSON to this file instead of stdout")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            data = privacy.export_person(user_id=opts["user"], visitor_id=opts["visitor"])
        except ValueError as exc:
            raise CommandError(f"{exc} E.g. --user 42 or --visitor 3f2b9c0e8d7a4b1c.") from exc
        text = json.dumps(data, indent=2, sort_keys=True)
        if not opts["output"]:
            self.stdout.write(text)
            return
        path = Path(opts["output"])
        try:
            path.write_text(text + "\n", encoding="utf-8")
        except OSError as exc:
            raise CommandError(f"Cannot write {path}: {exc.strerror}. Give a writable path to --output.") from exc
        self.stdout.write(f"Wrote {len(data['events'])} events and the rest of the person's data to {path}.")
