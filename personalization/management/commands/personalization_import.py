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

import pandas as pd
from django.core.management.base import BaseCommand, CommandError

FORMATS = ("csv", "parquet", "online-retail", "movielens", "yoochoose", "diginetica")
COLUMN_OPTIONS = {  # target column -> (option, default source column)
    "user": ("user_col", "user"),
    "item": ("item_col", "item"),
    "event": ("event_col", "event"),
    "timestamp": ("time_col", "timestamp"),
    "value": ("value_col", "value"),
}


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

        frame = self.read(fmt, path, options)
        if options["limit"] is not None:
            frame = frame.head(options["limit"])
        source = options["source"] or (path.stem if fmt in {"csv", "parquet"} else fmt)

        from personalization.importing import import_events

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

    def read(self, fmt: str, path: Path, options: dict) -> pd.DataFrame:
        if fmt in {"csv", "parquet"}:
            return self.read_table(fmt, path, options)
        from personalization.pipeline import datasets

        try:
            _, events, report = datasets.READERS[fmt](path)
        except (ValueError, FileNotFoundError) as exc:
            raise CommandError(f"Cannot read {fmt} data at {path}: {exc} Check the path points at the "
                               f"{fmt} files (see the datasets README).") from exc
        dropped = report.get("dropped") or {}
        if any(dropped.values()):
            self.stdout.write(f"Read {report['rows']:,} rows from {report['files']} file(s); dropped while reading: "
                              + ", ".join(f"{k} {v:,}" for k, v in dropped.items() if v))
        return events

    def read_table(self, fmt: str, path: Path, options: dict) -> pd.DataFrame:
        if path.is_dir():
            raise CommandError(f"{path} is a folder; --format {fmt} reads one file.")
        try:
            if fmt == "csv":
                frame = pd.read_csv(path, dtype=str, keep_default_na=False, na_values=[""])
            else:
                frame = pd.read_parquet(path)
        except ImportError as exc:
            raise CommandError(f"Reading Parquet needs pyarrow: pip install pyarrow ({exc}).") from exc
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            raise CommandError(f"Cannot read {path} as {fmt}: {exc}") from exc

        mapping: dict[str, str] = {}
        missing: list[str] = []
        for target, (option, default) in COLUMN_OPTIONS.items():
            column = options[option]
            if column in frame.columns:
                mapping[column] = target
            elif target == "value" and column == default:
                continue  # optional
            elif target == "event" and options["event_type"]:
                continue
            else:
                flag = "--" + option.replace("_", "-")
                missing.append(f"{column!r} ({flag})")
        if missing:
            hint = " Pass --event-type if the file has no event column." if any("--event-col" in m for m in missing) \
                else ""
            raise CommandError(
                f"{path.name} is missing column(s): {', '.join(missing)}. Its columns are: "
                f"{', '.join(map(str, frame.columns))}. Map them with --user-col, --item-col, --event-col, "
                f"--time-col, --value-col.{hint}"
            )
        keep = list(mapping)
        context = [c for c in ("country", "device", "os", "browser", "quantity", "session") if c in frame.columns
                   and c not in mapping]
        frame = frame[keep + context].rename(columns=mapping)
        if "event" not in frame.columns:
            frame["event"] = options["event_type"]
        return frame
