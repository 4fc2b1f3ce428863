"""``manage.py personalization_purge [--days N]``: delete what is older than the retention limit, in batches."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandError

from personalization import privacy


class Command(BaseCommand):
    help = ("Delete events, recommendation logs and notifications older than PERSONALIZATION['RETENTION_DAYS'] "
            "(or --days), in batches. The personalization.purge_expired_data beat task runs the same every night.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, help="the limit in days (default: RETENTION_DAYS)")
        parser.add_argument("--batch-size", type=int, default=5000, help="rows per delete (default 5000)")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            counts = privacy.purge_expired(opts["days"], batch_size=opts["batch_size"])
        except ValueError as exc:
            raise CommandError(f"{exc} E.g. --days 395 --batch-size 5000.") from exc
        if counts is None:
            raise CommandError("No retention limit: set PERSONALIZATION['RETENTION_DAYS'] (e.g. 395) or pass "
                               "--days N.")
        self.stdout.write("Purged " + ", ".join(f"{n} {t.replace('_', ' ')}" for t, n in counts.items()) + ".")
