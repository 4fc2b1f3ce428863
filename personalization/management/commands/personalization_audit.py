"""``manage.py personalization_audit [--days N] [--baseline-days N] [--json] [--fail-on fail|warn|never]``."""

from __future__ import annotations

import json
from typing import Any

from django.core.management.base import BaseCommand, CommandError

from personalization.monitoring.audit import report_dict, report_table, run_audit

#: Exit status when the audit finds what --fail-on names (usage errors exit with 2, like argparse's).
FAILED = 1


class Command(BaseCommand):
    help = ("Audit the event data of the last --days (default 1) against the --baseline-days before them (default "
            "PERSONALIZATION['AUDIT']['baseline_days'], 28): volume per type and hour, duplicates, bots, "
            "rate-limited, unknown items, clock skew, context fields, impossible rates, attribution. Saves an "
            "AuditReport and prints a table (or JSON). Exits with 1 when a check fails (see --fail-on), for cron.")

    def add_arguments(self, parser: Any) -> None:
        parser.add_argument("--days", type=int, default=1, help="length of the audited period in days (default 1)")
        parser.add_argument("--baseline-days", type=int, default=None,
                            help="days before the period that give the usual range (default 28)")
        parser.add_argument("--json", action="store_true", help="print the report as JSON")
        parser.add_argument("--fail-on", choices=["fail", "warn", "never"], default="fail",
                            help="exit with status 1 when a check has this status or worse (default: fail)")
        parser.add_argument("--no-save", action="store_true", help="print the report without keeping it")

    def handle(self, *args: Any, **opts: Any) -> None:
        try:
            report = run_audit(opts["days"], opts["baseline_days"], trigger="command", save=not opts["no_save"])
        except ValueError as exc:
            raise CommandError(f"{exc} E.g. --days 1 --baseline-days 28.", returncode=2) from exc
        if opts["json"]:
            self.stdout.write(json.dumps(report_dict(report), indent=2, default=str))
        else:
            self.stdout.write(report_table(report))
        limit = {"fail": {"fail"}, "warn": {"warn", "fail"}, "never": set()}[opts["fail_on"]]
        if report.status in limit:
            names = ", ".join(c["name"] for c in report.checks if c["status"] in limit)
            raise CommandError(f"Audit status {report.status}: {names}.", returncode=FAILED)
