"""Model versions: save and load artifacts in the private artifact storage; promote, roll back, find the live one.

Artifacts are zip files written only by the training service (never uploaded by users) to ``ARTIFACT_STORAGE``
(``artifact_storage.py``: by default a folder no URL serves); their sha256 is recorded on the version and checked
before they are unpacked into a private local folder and loaded (the ranker inside is a pickle), so any storage
backend (local disk, a private S3 bucket, ...) works. An artifact saved before the private storage existed (in
the default storage, often under MEDIA_ROOT) is moved into it on first load.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.db import transaction
from django.utils import timezone

from personalization.artifact_storage import artifact_storage
from personalization.conf import settings
from personalization.models import ModelVersion
from personalization.signals import model_promoted

logger = logging.getLogger("personalization.registry")
_LOCAL = Path(tempfile.gettempdir()) / "personalization-artifacts"


class PromotionRefused(Exception):
    """The candidate does not beat the live version (or cannot be promoted); the message says why."""


class ArtifactIntegrityError(Exception):
    """A stored or unpacked artifact does not match the sha256 recorded when it was saved: it is not loaded."""


#: Comment written into every zip saved with a recorded sha256: such a zip on a version without one was tampered.
_ZIP_COMMENT = b"django-personalization artifact; sha256 on ModelVersion.artifact_sha256"


def save_artifact(version: ModelVersion, directory: Path) -> str:
    """Zip a trained system's folder into storage; returns the storage name and sets ``version.artifact_sha256``
    (the hash of the stored bytes, checked before every unpack: the ranker inside is a pickle)."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.comment = _ZIP_COMMENT
        for path in sorted(Path(directory).rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(directory).as_posix())
    data = buffer.getvalue()
    name = f"{settings.ARTIFACT_DIR.rstrip('/')}/v{version.pk}.zip"
    storage = artifact_storage()
    if storage.exists(name):
        storage.delete(name)
    version.artifact_sha256 = hashlib.sha256(data).hexdigest()
    return storage.save(name, ContentFile(data))


def artifact_dir(version: ModelVersion) -> Path:
    """A local folder holding the version's unpacked artifact, verified against its recorded sha256.

    Unpacked once per machine into a private root; a folder is reused only when its ``.complete`` marker holds the
    recorded hash, else it is removed and unpacked again from bytes whose hash matches."""
    if not version.artifact:
        raise FileNotFoundError(f"Model version {version.pk} has no artifact.")
    root = _private_root()
    # the creation time makes the folder unique to this row: ids are reused when a database is recreated
    created = int(version.created_at.timestamp() * 1e6) if version.created_at else 0
    target = root / f"v{version.pk}-{Path(version.artifact).stem}-{created}"
    expected = version.artifact_sha256
    if expected and _marker(target) == expected:
        return target
    data = read_artifact(version)
    digest = hashlib.sha256(data).hexdigest()
    if not expected:
        if _ZIP_COMMENT in data[-len(_ZIP_COMMENT) - 64:]:
            raise ArtifactIntegrityError(
                f"Model version {version.pk} has no recorded artifact sha256 but its artifact was saved with one: "
                "refusing to load it (retrain the version)."
            )
        logger.warning("Model version %s has no recorded artifact sha256 (saved before the check): loading it "
                       "unverified; retrain it to get a verified artifact.", version.pk)
        expected = digest
    elif digest != expected:
        raise ArtifactIntegrityError(
            f"Artifact {version.artifact!r} of model version {version.pk} has sha256 {digest}, expected {expected}: "
            "the stored file was modified or replaced; refusing to load it."
        )
    if _marker(target) == expected:
        return target
    _unpack(version, data, expected, root, target)
    return target


def read_artifact(version: ModelVersion) -> bytes:
    """The stored bytes of the version's artifact (unverified). One saved before the private artifact storage
    existed, found only in the default storage, is moved into the private one first (leaving no public copy)."""
    storage = artifact_storage()
    name = version.artifact
    if not storage.exists(name) and storage is not default_storage and default_storage.exists(name):
        with default_storage.open(name, "rb") as fh:
            data = fh.read()
        saved = storage.save(name, ContentFile(data))
        if saved != name:  # the storage renamed it: keep the row pointing at the moved file
            ModelVersion.objects.filter(pk=version.pk).update(artifact=saved)
            version.artifact = saved
        default_storage.delete(name)
        logger.warning("Moved the artifact of model version %s from the default storage (%s) to the private artifact "
                       "storage: it was publicly reachable if the default storage is served.", version.pk, name)
        return data
    with storage.open(name, "rb") as fh:
        return fh.read()


def _unpack(version: ModelVersion, data: bytes, digest: str, root: Path, target: Path) -> None:
    """Unpack verified zip ``data`` into ``target`` (atomically, via a temp folder removed on any failure)."""
    tmp = Path(tempfile.mkdtemp(prefix="unpack-", dir=root))
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            for member in archive.namelist():
                if member.startswith("/") or ".." in Path(member).parts:
                    raise ArtifactIntegrityError(f"Unsafe path in artifact of version {version.pk}: {member!r}")
            archive.extractall(tmp)
        (tmp / ".complete").write_text(digest)
        if target.is_symlink() or target.is_file():
            target.unlink()
        elif target.exists():
            logger.warning("Unpacked folder %s does not match the artifact of version %s; unpacking it again",
                           target, version.pk)
            shutil.rmtree(target)
        try:
            tmp.rename(target)
        except OSError:  # another process unpacked it first
            if _marker(target) != digest:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _marker(folder: Path) -> str | None:
    """The sha256 in an unpacked folder's ``.complete`` marker (None when absent or not a real folder)."""
    marker = folder / ".complete"
    if folder.is_symlink() or not folder.is_dir() or marker.is_symlink():
        return None
    try:
        return marker.read_text().strip()
    except OSError:
        return None


def _private_root() -> Path:
    """The unpack root: created 0700; an existing one owned by another user or writable by group or others is not
    used (a per-user ``<root>-<uid>`` is used instead)."""
    uid = os.getuid() if hasattr(os, "getuid") else None
    for root in (_LOCAL, _LOCAL.with_name(f"{_LOCAL.name}-{uid}")):
        root.parent.mkdir(parents=True, exist_ok=True)
        try:
            root.mkdir(mode=0o700)
            root.chmod(0o700)  # mkdir's mode is masked by the umask
        except FileExistsError:
            pass
        info = root.lstat()
        if uid is None:
            return root
        if stat.S_ISDIR(info.st_mode) and info.st_uid == uid and not info.st_mode & 0o022:
            if info.st_mode & 0o077:
                root.chmod(0o700)  # ours, from before the root was private: close it
            return root
        logger.warning("Not unpacking artifacts into %s: it is not a folder owned by this user and writable only "
                       "by it", root)
    raise PermissionError(f"No private folder to unpack model artifacts into: {_LOCAL} and {root} are not "
                          "folders owned by this user and writable only by it; remove them.")


def load_system(version: ModelVersion) -> Any:
    """The trained RecommenderSystem of a version, marked with the subject-id scheme it was trained on
    (``subjects.FORMAT``, or "" for raw ids of a version trained before pseudonyms)."""
    from personalization.recommenders.system import RecommenderSystem

    system = RecommenderSystem.load(artifact_dir(version))
    system.subject_ids = (version.params or {}).get("subject_ids", "")
    return system


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
        paired = version.test_metrics.get("live_version") == current.pk
        if paired and version.test_metrics.get("live_paired") == "same configuration":
            # the live procedure on newer data: its paired score is the candidate's own, so it passes unless the
            # site asks every new version to win by a margin
            if settings.PROMOTION_MARGIN <= 0:
                return make_live(version, previous=current)
            raise PromotionRefused(
                f"Version {version.pk} is the live version {current.pk}'s configuration on newer data; "
                f"PROMOTION_MARGIN {settings.PROMOTION_MARGIN} asks for a win it cannot show. Use force to promote.")
        if theirs is not None and ours <= theirs + settings.PROMOTION_MARGIN:
            raise PromotionRefused(
                f"Version {version.pk} {metric}={ours:.4f} does not beat live version {current.pk} "
                f"({theirs:.4f}) by more than {settings.PROMOTION_MARGIN}. Use force to promote anyway."
            )
    return make_live(version, previous=current)


def comparable_live_score(candidate: ModelVersion, current: ModelVersion) -> float | None:
    """The live version's metric on the candidate's test window, paired at training time (see
    ``training._paired_live_score``); the live version's own score on its older window only when no paired score
    could be made (a live version whose artifact or configuration no longer loads)."""
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


# -- updates between retrains (personalization.updates) ---------------------------------------------------------
def save_update(version: ModelVersion, revision: int, data: bytes) -> str:
    """Store the cumulative update delta ``data`` (a ``Delta.to_bytes()``) of ``version``; returns its name."""
    name = f"{settings.ARTIFACT_DIR.rstrip('/')}/v{version.pk}-update-r{revision}.npz"
    storage = artifact_storage()
    if storage.exists(name):  # left by a run that lost the race to publish it
        storage.delete(name)
    return storage.save(name, ContentFile(data))


def delete_update(name: str) -> None:
    """Delete a superseded update delta (logged, never raised: a stray file costs only disk)."""
    if not name:
        return
    try:
        artifact_storage().delete(name)
    except Exception:  # noqa: BLE001
        logger.warning("Could not delete the superseded update delta %s", name, exc_info=True)


def read_update(version: ModelVersion) -> Any:
    """The version's cumulative update delta (``recommenders.updates.Delta``), or None when it has none.

    Deltas hold only numeric and string arrays and are read without pickles (``allow_pickle=False``)."""
    from personalization.recommenders.updates import Delta

    if not version.update_artifact:
        return None
    with artifact_storage().open(version.update_artifact, "rb") as fh:
        return Delta.from_bytes(fh.read())
