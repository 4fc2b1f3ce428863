"""The demo's defaults are safe to run in public once configured: ``check --deploy`` passes on the production
configuration, and ``manage.py demo`` warns while SECRET_KEY is the public default."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command

ROOT = Path(__file__).resolve().parents[2]


def check_deploy(**env: str) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items()
                   if k not in {"DEBUG", "SECRET_KEY", "HTTPS", "ALLOWED_HOSTS", "DJANGO_SETTINGS_MODULE"}}
    environment.update(DJANGO_SETTINGS_MODULE="storefront_demo.settings", **env)
    return subprocess.run([sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=120)


def test_the_production_configuration_passes_check_deploy():
    result = check_deploy(DEBUG="False", HTTPS="True", SECRET_KEY=secrets.token_urlsafe(50),
                          ALLOWED_HOSTS="shop.example")
    assert result.returncode == 0, result.stdout + result.stderr


def test_check_deploy_fails_with_the_public_secret_key():
    result = check_deploy(DEBUG="False", HTTPS="True", ALLOWED_HOSTS="shop.example")
    assert result.returncode != 0 and "security.W009" in result.stdout + result.stderr


@pytest.mark.django_db
def test_demo_warns_when_secret_key_is_the_public_default(settings):
    from storefront_demo.settings import DEMO_SECRET_KEY

    args = ["--products", "10", "--visitors", "10", "--days", "2", "--seed", "5", "--no-progress", "--no-train"]
    settings.SECRET_KEY = DEMO_SECRET_KEY
    err = StringIO()
    call_command("demo", *args, stdout=StringIO(), stderr=err)
    assert "SECRET_KEY is the demo's public default" in err.getvalue()
    settings.SECRET_KEY = secrets.token_urlsafe(50)
    err = StringIO()
    call_command("demo", *args, stdout=StringIO(), stderr=err)
    assert "SECRET_KEY" not in err.getvalue()
