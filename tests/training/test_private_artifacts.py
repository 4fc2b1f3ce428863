"""Model artifacts are private: stored where no URL serves them, refused by a system check when they could be
served, and holding keyed pseudonyms instead of subject ids (issue #12)."""

from __future__ import annotations

import io
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from django.core.checks import run_checks
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage

from personalization import registry
from personalization.artifact_storage import artifact_storage
from personalization.models import Event, ModelVersion
from personalization.subjects import subject_key
from personalization.testutils import override_personalization
from personalization.training import train


@pytest.fixture(autouse=True)
def unpack_root(tmp_path, monkeypatch):
    monkeypatch.setattr("personalization.registry._LOCAL", tmp_path / "unpacked")


def _members(version: ModelVersion) -> dict[str, bytes]:
    with artifact_storage().open(version.artifact, "rb") as fh, zipfile.ZipFile(io.BytesIO(fh.read())) as archive:
        return {name: archive.read(name) for name in archive.namelist()}


def test_artifacts_are_stored_outside_media_root_and_no_url_serves_them(trained, client, settings):
    path = Path(artifact_storage().path(trained.artifact))
    media = Path(settings.MEDIA_ROOT).resolve()
    assert path.is_file() and not path.resolve().is_relative_to(media)
    assert not default_storage.exists(trained.artifact)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    settings.DEBUG = True  # the demo's default: MEDIA_URL is served
    assert client.get(f"/{settings.MEDIA_URL.strip('/')}/{trained.artifact}").status_code == 404


def test_artifacts_hold_keyed_pseudonyms_not_subject_ids(trained, django_user_model):
    user_id = Event.objects.filter(user__isnull=False).values_list("user_id", flat=True).first()
    visitor = Event.objects.filter(user__isnull=True).exclude(item_key="").values_list("visitor_id", flat=True).first()
    blob = b"".join(_members(trained).values())
    for subject in (f"u:{user_id}", f"v:{visitor}"):
        assert subject.encode() not in blob
    assert visitor.encode() not in blob
    system = registry.load_system(trained)
    users = [str(u) for u in system.matrix_.user_ids]
    assert subject_key(f"u:{user_id}") in users and subject_key(f"v:{visitor}") in users
    assert not any(u.startswith(("u:", "v:")) for u in users)
    assert trained.params["subject_ids"] == "hmac-sha256-128"


def test_serving_finds_a_known_user_under_the_pseudonym(trained, django_user_model):
    import personalization

    user = django_user_model.objects.get(pk=Event.objects.filter(user__isnull=False).values_list(
        "user_id", flat=True).first())
    system = registry.load_system(trained)
    row = system.matrix_.user_index[subject_key(f"u:{user.pk}")]
    seen = set(np.asarray(system.matrix_.item_ids)[system.matrix_.csr[row].indices])
    with override_personalization(SLOTS={"default": {"exclude_viewed": True}}):  # the whole row filtered when found
        result = personalization.recommend(user, n=5)
    assert result.fallback == "" and result.keys() and not set(result.keys()) & seen


def test_a_version_trained_before_pseudonyms_is_still_served_by_raw_ids(trained, django_user_model):
    """Old versions stay loadable: without params["subject_ids"], serving looks subjects up unhashed."""
    ModelVersion.objects.filter(pk=trained.pk).update(params={**trained.params, "subject_ids": ""})
    trained.refresh_from_db()
    system = registry.load_system(trained)
    from personalization.subjects import model_subject

    assert model_subject(system, "u:1") == "u:1"


def test_an_artifact_left_in_the_default_storage_is_moved_to_the_private_one(trained, settings):
    data = artifact_storage().open(trained.artifact, "rb").read()
    artifact_storage().delete(trained.artifact)
    default_storage.save(trained.artifact, ContentFile(data))  # where versions of before the private storage are
    copy = ModelVersion.objects.create(status=ModelVersion.Status.READY, artifact=trained.artifact,
                                       artifact_sha256=trained.artifact_sha256, params=trained.params)
    assert registry.load_system(copy) is not None
    assert artifact_storage().exists(trained.artifact) and not default_storage.exists(trained.artifact)


@pytest.mark.parametrize("storage", [
    lambda s: {"BACKEND": "django.core.files.storage.FileSystemStorage",
               "OPTIONS": {"location": str(Path(s.MEDIA_ROOT) / "models")}},
    lambda s: {"BACKEND": "django.core.files.storage.FileSystemStorage",
               "OPTIONS": {"location": str(Path(s.STATIC_ROOT) / "m")}},
    lambda s: {"BACKEND": "django.core.files.storage.FileSystemStorage",
               "OPTIONS": {"location": "/srv/private-models", "base_url": "/models/"}},
    lambda s: "default",  # the default storage serves MEDIA_ROOT
])
def test_a_storage_that_could_be_served_publicly_is_a_system_check_error(settings, tmp_path, storage):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "ARTIFACT_STORAGE": storage(settings)}
    errors = [m for m in run_checks() if m.id == "personalization.E031"]
    assert errors and "could be served publicly" in errors[0].msg


def test_the_default_artifact_storage_passes_the_check(settings, tmp_path):
    settings.MEDIA_ROOT = str(tmp_path / "media")
    assert not [m for m in run_checks() if m.id == "personalization.E031"]
    location = Path(artifact_storage().location)
    assert location == (tmp_path / "personalization-artifacts").resolve()


def test_a_new_training_run_writes_to_the_configured_storage(shop_history, settings, tmp_path):
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "ARTIFACT_STORAGE": {
        "BACKEND": "django.core.files.storage.FileSystemStorage", "OPTIONS": {"location": str(tmp_path / "vault")}}}
    version = train(ModelVersion.objects.create())
    assert (tmp_path / "vault" / version.artifact).is_file()
