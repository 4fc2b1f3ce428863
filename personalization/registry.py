"""Model versions: save and load artifacts in Django storage; promote, roll back, find the live one.

Artifacts are zip files written only by the training service (never uploaded by users), unpacked into a local
per-process folder before loading, so any storage backend (local disk, S3, ...) works.
"""

from __future__ import annotations

import io
import logging
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from personalization.conf import settings
from personalization.models import ModelVersion
from personalization.signals import model_promoted

logger = logging.getLogger("personalization.registry")
_LOCAL = Path(tempfile.gettempdir()) / "personalization-artifacts"


class PromotionRefused(Exception):
    """The candidate does not beat the live version (or cannot be promoted); the message says why."""


def save_artifact(version: ModelVersion, directory: Path) -> str:
    """Zip a trained system's folder into storage; returns the storage name recorded on the version."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    name = f"{settings.ARTIFACT_DIR.rstrip('/')}/v{version.pk}.zip"
    if default_storage.exists(name):
        default_storage.delete(name)
    return default_storage.save(name, ContentFile(buffer.getvalue()))


def artifact_dir(version: ModelVersion) -> Path:
    """A local folder holding the version's unpacked artifact (unpacked once per process and machine)."""
    if not version.artifact:
        raise FileNotFoundError(f"Model version {version.pk} has no artifact.")
    # the creation time makes the folder unique to this row: ids are reused when a database is recreated
    created = int(version.created_at.timestamp() * 1e6) if version.created_at else 0
    target = _LOCAL / f"v{version.pk}-{Path(version.artifact).stem}-{created}"
    marker = target / ".complete"
    if marker.exists():
        return target
    tmp = Path(tempfile.mkdtemp(prefix="unpack-", dir=_ensure(_LOCAL)))
    with default_storage.open(version.artifact, "rb") as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as archive:
        for member in archive.namelist():
            if member.startswith("/") or ".." in Path(member).parts:
                raise ValueError(f"Unsafe path in artifact of version {version.pk}: {member!r}")
        archive.extractall(tmp)
    (tmp / ".complete").touch()
    try:
        tmp.rename(target)
    except OSError:  # another process unpacked it first
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def load_system(version: ModelVersion) -> Any:
    """The trained RecommenderSystem of a version."""
    from personalization.recommenders.system import RecommenderSystem

    return RecommenderSystem.load(artifact_dir(version))


def live_version() -> ModelVersion | None:
    return ModelVersion.objects.filter(status=ModelVersion.Status.LIVE).first()


def make_live(version: ModelVersion, *, previous: ModelVersion | None) -> ModelVersion:
    """Swap the live version atomically (the one-live constraint holds at every instant)."""
    with transaction.atomic():
        current = ModelVersion.objects.select_for_update().filter(status=ModelVersion.Status.LIVE).first()
        if current is not None and current.pk != version.pk:
            current.status = ModelVersion.Status.RETIRED
            current.save(update_fields=["status"])
        version.status = ModelVersion.Status.LIVE
        version.promoted_at = timezone.now()
        if previous is not None and previous.pk != version.pk:
            version.previous = previous
        version.save(update_fields=["status", "promoted_at", "previous"])
    live_id = version.pk
    transaction.on_commit(lambda: model_promoted.send(sender=ModelVersion, version_id=live_id))
    logger.info("Model version %s is live (previous: %s)", version.pk, previous.pk if previous else None)
    return version


def promote(version: ModelVersion, *, force: bool = False) -> ModelVersion:
    """Make a trained version live if it beats the live one by PROMOTION_MARGIN (or when forced by staff)."""
    if version.status not in {ModelVersion.Status.READY, ModelVersion.Status.RETIRED, ModelVersion.Status.LIVE}:
        raise PromotionRefused(f"Version {version.pk} is {version.status}; only trained versions can go live.")
    if not version.artifact:
        raise PromotionRefused(f"Version {version.pk} has no artifact.")
    current = live_version()
    if current is None or current.pk == version.pk:
        return make_live(version, previous=current)
    if not force:
        ours, theirs = version.score, comparable_live_score(version, current)
        metric = settings.PROMOTION_METRIC
        unscored = ours is None and current.score is None
        if unscored and version.data_end and current.data_end and version.data_end >= current.data_end:
            return make_live(version, previous=current)  # neither could be scored yet: the one with newer data
        if ours is None:
            raise PromotionRefused(f"Version {version.pk} has no {metric} on its test window.")
        if theirs is not None and ours <= theirs + settings.PROMOTION_MARGIN:
            raise PromotionRefused(
                f"Version {version.pk} {metric}={ours:.4f} does not beat live version {current.pk} "
                f"({theirs:.4f}) by more than {settings.PROMOTION_MARGIN}. Use force to promote anyway."
            )
    return make_live(version, previous=current)


def comparable_live_score(candidate: ModelVersion, current: ModelVersion) -> float | None:
    """The live version's metric on the candidate's test window (recorded at training time when possible)."""
    recorded = (candidate.test_metrics.get("live") or {}).get(settings.PROMOTION_METRIC)
    if recorded is not None and candidate.test_metrics.get("live_version") == current.pk:
        return float(recorded)
    return current.score


def rollback() -> ModelVersion:
    """Return to the version that was live before the current one."""
    current = live_version()
    if current is None:
        raise PromotionRefused("No version is live; nothing to roll back.")
    target = current.previous
    if target is None or not target.artifact:
        raise PromotionRefused(f"Live version {current.pk} has no previous version to roll back to.")
    return make_live(target, previous=target.previous)
