"""``manage.py personalization_export --to PATH|storage:<alias>/<prefix> [--since DATE] [--full] [--raw-ids]``."""

from __future__ import annotations

from datetime import date
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from personalization.monitoring.parquet_export import CHUNK_SIZE, TABLES, ExportError, export


class Command(BaseCommand):
    help = ("Export events and daily aggregates as Parquet files partitioned by UTC day (events/date=YYYY-MM-DD/"
            "part-0.parquet) into a folder or a Django storage. Incremental: days already exported are skipped "
            "(see _manifest.json in the target); today is exported once it is over. Visitor and user ids are "
            "pseudonymised like model artifacts unless --raw-ids.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--to", required=True, metavar="PATH_OR_STORAGE",
                            help="a folder, or storage:<alias>/<prefix> for an alias of settings.STORAGES")
        parser.add_argument("--since", metavar="YYYY-MM-DD", help="first UTC day to export (default: all)")
        parser.add_argument("--full", action="store_true", help="rewrite every day, even those already exported")
        parser.add_argument("--raw-ids", action="store_true",
                            help="keep visitor and user ids (and the truncated IP) as stored: personal data")
        parser.add_argument("--table", action="append", choices=[t.name for t in TABLES],
                            help="export only this table (repeatable; default: all)")
        parser.add_argument("--chunk-size", type=int, default=CHUNK_SIZE,
                            help=f"rows read and written at a time (default {CHUNK_SIZE})")

    def handle(self, *args: Any, **opts: Any) -> None:
        since = None
        if opts["since"]:
            try:
                since = date.fromisoformat(opts["since"])
            except ValueError as exc:
                raise CommandError(f"--since {opts['since']!r} is not a date; use YYYY-MM-DD, e.g. --since "
                                   "2026-11-01.", returncode=2) from exc
        try:
            summary = export(opts["to"], since=since, full=opts["full"], raw_ids=opts["raw_ids"],
                             chunk_size=opts["chunk_size"], tables=opts["table"],
                             progress=self.stdout.write if opts["verbosity"] > 1 else None)
        except ExportError as exc:
            raise CommandError(str(exc), returncode=2) from exc
        parts = [f"{name}: {len(days)} day(s), {summary['rows'][name]} rows" for name, days in summary["days"].items()]
        self.stdout.write(f"Exported to {summary['target']}: " + "; ".join(parts) + ".")
