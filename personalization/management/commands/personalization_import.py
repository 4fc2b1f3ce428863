"""``manage.py personalization_import``: load past interactions (CSV, Parquet or a public dataset) as events.

Examples::

    manage.py personalization_import --format online-retail ../shared/datasets/online-retail/by-day
    manage.py personalization_import --format movielens ../shared/datasets/ml-100k --item-type movie
    manage.py personalization_import --format csv orders.csv --user-col customer --item-col sku \\
        --time-col ordered_at --event-type purchase --value-col amount
    manage.py personalization_import --format csv clicks.csv --dry-run --limit 1000

Re-running an import stores nothing twice (event ids are derived from the source and the row).
"""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from personalization.importing import FORMATS, ImportSourceError, MissingColumns, import_events, read_source

COLUMN_OPTIONS = {"user": "user_col", "item": "item_col", "event": "event_col", "timestamp": "time_col",
                  "value": "value_col"}  # table column -> the option naming the file's column


class Command(BaseCommand):
    help = "Import past interactions as events from a CSV/Parquet file or a public dataset. Idempotent."

    def add_arguments(self, parser):
        parser.add_argument("path", help="File or folder to read.")
        parser.add_argument("--format", required=True, help=f"One of: {', '.join(FORMATS)}.")
        parser.add_argument("--item-type", default="product",
                            help='The "<type>" of item keys "<type>:<id>" (default: product).')
        parser.add_argument("--source", default=None,
                            help="Name of the data source; seeds the event ids (default: the format, or the file "
                                 "name for csv/parquet). Use the same name when re-importing.")
        group = parser.add_argument_group("column mapping (csv and parquet)")
        group.add_argument("--user-col", default="user", help="User or session id column (default: user).")
        group.add_argument("--item-col", default="item", help="Item id column (default: item).")
        group.add_argument("--event-col", default="event", help="Event type column (default: event).")
        group.add_argument("--time-col", default="timestamp", help="Timestamp column (default: timestamp).")
        group.add_argument("--value-col", default="value", help="Optional numeric value column (default: value).")
        group.add_argument("--event-type", default=None,
                           help="Event type for every row when the file has no event column (e.g. purchase).")
        parser.add_argument("--user-field", default=None,
                            help="Link events to Django users whose field (e.g. username) equals the user id.")
        parser.add_argument("--limit", type=int, default=None, help="Import only the first N rows.")
        parser.add_argument("--batch-size", type=int, default=5000)
        parser.add_argument("--dry-run", action="store_true", help="Read and validate, write nothing.")
        parser.add_argument("--no-progress", action="store_true", help="No progress bar.")

    def handle(self, *args, **options):
        fmt = options["format"]
        if fmt not in FORMATS:
            raise CommandError(f"Unknown format {fmt!r}. Choose one of: {', '.join(FORMATS)}.")
        path = Path(options["path"]).expanduser()
        if not path.exists():
            raise CommandError(
                f"{path} does not exist. Give the path of the file or folder to import"
                + (" (the datasets live in PERSONALIZATION_DATASETS, e.g. ../shared/datasets)."
                   if fmt not in {"csv", "parquet"} else ".")
            )
        if options["limit"] is not None and options["limit"] < 1:
            raise CommandError("--limit must be a positive number of rows.")
        if options["batch_size"] < 1:
            raise CommandError("--batch-size must be at least 1.")

        columns = {target: options[option] for target, option in COLUMN_OPTIONS.items()}
        try:
            frame, dropped = read_source(fmt, path, columns=columns, event_type=options["event_type"])
        except MissingColumns as exc:
            named = ", ".join(f"{column!r} (--{COLUMN_OPTIONS[target].replace('_', '-')})"
                              for target, column in exc.missing)
            hint = " Pass --event-type if the file has no event column." if any(
                target == "event" for target, _ in exc.missing) else ""
            raise CommandError(
                f"{exc.name} is missing column(s): {named}. Its columns are: {', '.join(exc.available)}. "
                f"Map them with --user-col, --item-col, --event-col, --time-col, --value-col.{hint}") from exc
        except ImportSourceError as exc:
            raise CommandError(str(exc)) from exc
        if dropped:
            self.stdout.write(dropped)
        if options["limit"] is not None:
            frame = frame.head(options["limit"])
        source = options["source"] or (path.stem if fmt in {"csv", "parquet"} else fmt)

        try:
            report = import_events(
                frame,
                source=source,
                item_type=options["item_type"],
                user_field=options["user_field"],
                batch_size=options["batch_size"],
                progress=not options["no_progress"],
                dry_run=options["dry_run"],
            )
        except ValueError as exc:
            raise CommandError(f"{exc} (see --item-type).") from exc
        except Exception as exc:  # a bad --user-field is a FieldError; name it plainly
            if options["user_field"] and type(exc).__name__ == "FieldError":
                raise CommandError(f"--user-field {options['user_field']!r} is not a field of the user model: "
                                   f"{exc}") from exc
            raise
        self.stdout.write(report.summary())
        if report.skipped_total:
            self.stdout.write(self.style.WARNING(
                f"{report.skipped_total:,} bad rows were skipped (reasons above); fix the file and re-run to add "
                "them, nothing already imported is duplicated."
            ))
        if options["dry_run"]:
            self.stdout.write(self.style.NOTICE("Dry run: nothing was written."))
        else:
            self.stdout.write(self.style.SUCCESS(f"Done: {report.imported:,} new events from {source}."))
