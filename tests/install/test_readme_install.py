"""The README's "Install into an existing site" section, applied block by block to a fresh ``startproject`` site.

Each fenced block of the section is marked ``<!-- install:NAME -->``; this test builds a throwaway project from
those blocks (plus a minimal ``shop`` app standing in for the user's own), then runs it as a user would, in
subprocesses with the project's own settings and the app importable as an installed package: ``check``,
``migrate``, a week of traffic, training, the README's Python block and template, and the OpenAPI schema. With eager
tasks here; with a real worker and beat on the production services in the integration variant.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
import uuid
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Install into an existing site"
BLOCK = re.compile(r"<!-- install:([\w.-]+) -->\n```(\w+)\n(.*?)\n```", re.S)
BLOCKS = ["pip", "settings", "urls", "celery.py", "celery-init", "eager", "worker", "worker-run", "manage", "template",
          "python"]
UA = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36"

pytestmark = pytest.mark.slow

SHOP_MODELS = '''
from django.db import models
from django.urls import reverse


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)


class Product(models.Model):
    name = models.CharField(max_length=200)
    category = models.ForeignKey(Category, on_delete=models.PROTECT)
    price = models.DecimalField(max_digits=8, decimal_places=2)
    description = models.TextField(blank=True)
    in_stock = models.BooleanField(default=True)

    def get_absolute_url(self):
        return reverse("shop:product", kwargs={"pk": self.pk})
'''
SHOP_VIEWS = '''
from django.shortcuts import get_object_or_404, render

from .models import Product


def product(request, pk):
    return render(request, "shop/product.html", {"product": get_object_or_404(Product, pk=pk)})
'''
SHOP_URLS = '''
from django.urls import path

from . import views

app_name = "shop"
urlpatterns = [path("products/<int:pk>/", views.product, name="product")]
'''


def install_blocks() -> dict[str, str]:
    """The marked code blocks of the README's install section; every fenced block there must be marked."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index(SECTION):]
    section = section[:section.index("\n## ", len(SECTION))]
    found = BLOCK.findall(section)
    assert section.count("```") == 2 * len(found), "every code block of the install section needs an install: mark"
    blocks = {name: body for name, _language, body in found}
    assert list(blocks) == BLOCKS, "the install section's blocks changed: apply the new ones in this test"
    return blocks


def commands(block: str) -> list[list[str]]:
    """The command lines of a shell block, comments removed."""
    return [line.split("#")[0].split() for line in block.splitlines() if line.split("#")[0].strip()]


class Site:
    """A throwaway project built from the README's blocks in ``root``, run in subprocesses."""

    def __init__(self, root: Path, blocks: dict[str, str], tasks: str, extra_settings: str = "",
                 env: dict[str, str] | None = None):
        self.root, self.blocks = root / "yourproject", blocks
        packages = root / "site-packages"  # the app as an installed package: nothing else of this repository
        packages.mkdir()
        (packages / "personalization").symlink_to(ROOT / "personalization")
        self.env = {**os.environ, **(env or {}), "PYTHONPATH": str(packages), "DJANGO_SETTINGS_MODULE":
                    "yourproject.settings", "PYTHONDONTWRITEBYTECODE": "1",
                    "README_PYTHON_BLOCK": blocks["python"]}
        for name in ("DATABASE_URL", "CACHE_URL", "REDIS_URL", "CELERY_BROKER_URL", "PERSONALIZATION_COLLECTOR"):
            if env is None or name not in env:
                self.env.pop(name, None)  # the project reads its own settings, not the suite's
        self.root.mkdir()
        bare = {k: v for k, v in self.env.items() if k != "DJANGO_SETTINGS_MODULE"}  # there is no project yet
        self.run(sys.executable, "-m", "django", "startproject", "yourproject", str(self.root), env=bare)
        package = self.root / "yourproject"
        shop = self.root / "shop"
        (shop / "templates" / "shop").mkdir(parents=True)
        (shop / "migrations").mkdir()
        for path, text in {"__init__.py": "", "models.py": SHOP_MODELS, "views.py": SHOP_VIEWS,
                           "urls.py": SHOP_URLS, "migrations/__init__.py": "",
                           "templates/shop/product.html": blocks["template"] + "\n"}.items():
            (shop / path).write_text(text)
        self.append(package / "settings.py", 'INSTALLED_APPS += ["shop"]', blocks["settings"], blocks[tasks],
                    extra_settings)
        self.append(package / "urls.py", blocks["urls"], 'urlpatterns += [path("shop/", include("shop.urls"))]')
        self.append(package / "celery.py", blocks["celery.py"])
        self.append(package / "__init__.py", blocks["celery-init"])
        shutil.copy(Path(__file__).with_name("drive.py"), self.root / "drive.py")

    @staticmethod
    def append(path: Path, *parts: str) -> None:
        existing = path.read_text() if path.exists() else ""
        path.write_text(existing + "\n\n" + "\n\n".join(p for p in parts if p) + "\n")

    def run(self, *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            timeout: float = 600) -> str:
        done = subprocess.run(argv, cwd=cwd or self.root, env=env or self.env, capture_output=True, text=True,
                              timeout=timeout)
        assert done.returncode == 0, f"{' '.join(argv)} failed:\n{done.stdout[-3000:]}\n{done.stderr[-5000:]}"
        return done.stdout + done.stderr

    def manage(self, line: list[str]) -> str:
        """A README ``python manage.py ...`` line, run with this interpreter."""
        assert line[:2] == ["python", "manage.py"], line
        return self.run(sys.executable, "manage.py", *line[2:])

    def drive(self, stage: str) -> dict:
        return json.loads(self.run(sys.executable, "drive.py", stage).strip().splitlines()[-1])

    def start(self, line: list[str], log: Path, *extra: str) -> subprocess.Popen:
        """A README ``celery -A yourproject ...`` line as a background process (its own session)."""
        assert line[:3] == ["celery", "-A", "yourproject"], line
        with log.open("w") as out:
            return subprocess.Popen([sys.executable, "-m", *line, *extra], cwd=self.root, env=self.env,
                                    stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def test_pip_command_names_this_package():
    """The install command and the wheel name match the project's metadata."""
    pip = install_blocks()["pip"]
    name = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["name"]
    assert f"pip install /path/to/{name}" in pip
    assert f"pip install dist/{name.replace('-', '_')}-*.whl" in pip
    assert "python -m build" in pip


def prepare(site: Site, *, worker: bool = False) -> tuple[list[str], list[str], list[str]]:
    """makemigrations for the stand-in shop, then the README's migrate and check; returns its three lines.

    With a broker and no worker started yet, the one warning is W004 (start a worker); the caller checks again once
    its worker runs. ``check --deploy`` may add Infos (I003: a local-memory cache is per process), no warning.
    """
    migrate, check, train = commands(site.blocks["manage"])
    site.run(sys.executable, "manage.py", "makemigrations", "shop")
    site.manage(migrate)
    checked = site.manage(check)
    if worker:
        assert re.findall(r"personalization\.[EW]\d+", checked) in ([], ["personalization.W004"]), checked
    else:
        assert "System check identified no issues (0 silenced)." in checked, checked
    deploy = site.run(sys.executable, "manage.py", "check", "--deploy")
    allowed = ["personalization.W004"] if worker else []
    assert set(re.findall(r"personalization\.[EW]\d+", deploy)) <= set(allowed), deploy
    assert "drf_spectacular." not in deploy, deploy
    return migrate, check, train


def assert_served(site: Site, version: int) -> None:
    """The README's Python block and template give a visitor with history the live model's lists."""
    seen = site.drive("verify")
    assert seen["live"] == [version]
    assert seen["purchase_stored"], "personalization.track(request, 'purchase', ...) stored nothing"
    assert seen["items"] and seen["model_version"] == version and not seen["fallback"], seen
    assert seen["page"] == 200
    assert "tracker" in seen["html"] and "Picked for you" in seen["html"], seen["html"][:2000]
    assert seen["html"].count("data-personalization-position=") == 8, seen["html"][:2000]  # limit=8 of "home"
    assert 'data-personalization-slot="similar"' in seen["html"], seen["html"][:2000]
    assert seen["schema"] == 200 and "openapi" in seen["schema_type"]


def test_readme_install_with_eager_tasks(tmp_path):
    site = Site(tmp_path, install_blocks(), tasks="eager")
    _migrate, _check, train = prepare(site)

    sent = site.drive("traffic")
    assert sent["api"] == 202 and sent["api_body"]["accepted"] == 8, sent
    out = site.manage(train)
    assert "live" in out.lower(), out

    seen = site.drive("verify")
    assert seen["sources"]["middleware"] >= sent["page_views"], seen["sources"]
    assert seen["sources"]["api"] == 8 and seen["sources"]["python"] >= sent["tracked"], seen["sources"]
    assert_served(site, seen["live"][0] if seen["live"] else -1)


@pytest.mark.integration
def test_readme_install_with_a_worker_and_beat(tmp_path):
    """The worker variant on the production services: PostgreSQL, a Redis cache and broker, celery worker + beat."""
    import environ
    import psycopg

    blocks = install_blocks()
    broker, cache = os.environ.get("TEST_CELERY_BROKER_URL"), os.environ.get("CACHE_URL", "")
    database = os.environ.get("DATABASE_URL", "")
    if not (broker and cache.startswith("redis") and database.startswith("postgres")):
        pytest.fail("This test needs DATABASE_URL (PostgreSQL), CACHE_URL (Redis) and TEST_CELERY_BROKER_URL; "
                    "`make test-prod` sets them.")
    for example in ("redis://127.0.0.1:6379/2", "redis://127.0.0.1:6379/1"):
        assert example in blocks["worker"]
    # by placeholders: a broker URL ending in /1x must not be taken for the cache URL ending in /1
    blocks["worker"] = (blocks["worker"].replace("redis://127.0.0.1:6379/2", "\0broker\0")
                        .replace("redis://127.0.0.1:6379/1", "\0cache\0").replace("\0broker\0", broker)
                        .replace("\0cache\0", cache.replace("rediscache://", "redis://")))
    name = f"readme_{uuid.uuid4().hex[:8]}"
    server = database.rsplit("/", 1)[0]
    with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=10) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    queue = f"readme-{uuid.uuid4().hex[:8]}"
    database_settings = (f'DATABASES = {{"default": {{**{environ.Env.db_url_config(database)!r}, "NAME": "{name}"}}}}\n'
                         f'MEDIA_ROOT = BASE_DIR / "media"\nCELERY_TASK_DEFAULT_QUEUE = "{queue}"\n'
                         f'CACHES["default"]["KEY_PREFIX"] = "{queue}"')  # beside the suite's xdist workers
    processes: list[subprocess.Popen] = []
    try:
        site = Site(tmp_path, blocks, tasks="worker", extra_settings=database_settings)
        _migrate, check, _train = prepare(site, worker=True)
        worker_line, beat_line = commands(blocks["worker-run"])
        processes.append(site.start(worker_line, tmp_path / "worker.log", "--pool=solo", "--without-heartbeat",
                                    "--without-gossip", "--without-mingle"))
        processes.append(site.start(beat_line, tmp_path / "beat.log", "-s", str(tmp_path / "beat-schedule")))
        wait_for(lambda: "ready." in (tmp_path / "worker.log").read_text(), 90, processes, tmp_path)
        assert "System check identified no issues (0 silenced)." in site.manage(check)  # W004 gone: a worker runs

        sent = site.drive("traffic")
        assert sent["api"] == 202, sent
        trained = site.drive("retrain")
        assert trained["status"] == "live", (trained, (tmp_path / "worker.log").read_text()[-4000:])
        assert_served(site, trained["version"])
        wait_for(lambda: "personalization.flush_events" in (tmp_path / "worker.log").read_text(), 30, processes,
                 tmp_path)  # beat's schedule reaches the worker
    finally:
        for proc in processes:
            proc.terminate()
        for proc in processes:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
        with psycopg.connect(f"{server}/postgres", autocommit=True, connect_timeout=10) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def wait_for(predicate, timeout: float, processes: list[subprocess.Popen], logs: Path) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        died = [p for p in processes if p.poll() is not None]
        if died or time.monotonic() > deadline:
            tails = "\n".join(f"--- {log.name}\n{log.read_text()[-3000:]}" for log in logs.glob("*.log"))
            pytest.fail(f"{'a process exited' if died else f'timed out after {timeout} s'}:\n{tails}")
        time.sleep(0.3)
