"""Model artifacts are verified by sha256 before they are unpacked and loaded (issue #12)."""

from __future__ import annotations

import hashlib
import io
import logging
import stat
import zipfile

import pytest
from django.core.files.base import ContentFile

import personalization
from personalization import registry
from personalization.artifact_storage import artifact_storage
from personalization.models import Event, ModelVersion
from personalization.serving import live
from personalization.training import train


@pytest.fixture(autouse=True)
def unpack_root(tmp_path, monkeypatch):
    root = tmp_path / "artifacts"
    monkeypatch.setattr("personalization.registry._LOCAL", root)
    return root


def _known_visitor() -> str:
    return Event.objects.exclude(item_key="").values_list("visitor_id", flat=True).first()


def _stored(version: ModelVersion) -> bytes:
    with artifact_storage().open(version.artifact, "rb") as fh:
        return fh.read()


def _replace(version: ModelVersion, data: bytes) -> None:
    artifact_storage().delete(version.artifact)
    assert artifact_storage().save(version.artifact, ContentFile(data)) == version.artifact


def _rezip(data: bytes, *, extra: dict[str, str] | None = None) -> bytes:
    """The same members (plus ``extra``), written again without the comment: a valid but different artifact."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(out, "w") as target:
        for name in source.namelist():
            target.writestr(name, source.read(name))
        for name, text in (extra or {}).items():
            target.writestr(name, text)
    return out.getvalue()


def test_training_records_the_sha256_of_the_stored_artifact(trained):
    trained.refresh_from_db()
    assert trained.artifact_sha256 == hashlib.sha256(_stored(trained)).hexdigest()


def test_a_replaced_artifact_is_refused_and_serving_keeps_the_previous_model(
    trained, settings, caplog, django_capture_on_commit_callbacks
):
    visitor = _known_visitor()
    assert personalization.recommend(visitor, n=3).model_version == trained.pk
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PROMOTION_MARGIN": 1.0}
    second = train(ModelVersion.objects.create())
    _replace(second, _rezip(_stored(second), extra={"payload.txt": "swapped in storage"}))
    with django_capture_on_commit_callbacks(execute=True):
        registry.promote(second, force=True)
    caplog.set_level(logging.ERROR, logger="personalization.serving")
    token = live._token_of(second)
    assert live.system_for(token)[0] == trained.pk
    assert personalization.recommend(visitor, n=3).model_version == trained.pk
    assert f"could not load model version {second.pk}" in caplog.text
    assert f"model version {second.pk} has sha256" in caplog.text


def test_a_tampered_artifact_raises_a_clear_error_and_leaves_no_folder(trained, unpack_root):
    trained.refresh_from_db()
    _replace(trained, _rezip(_stored(trained), extra={"payload.txt": "x"}))
    with pytest.raises(registry.ArtifactIntegrityError, match=f"model version {trained.pk}"):
        registry.artifact_dir(trained)
    assert list(unpack_root.iterdir()) == []


def test_a_version_saved_with_a_hash_but_stripped_of_it_is_refused(trained):
    trained.refresh_from_db()
    ModelVersion.objects.filter(pk=trained.pk).update(artifact_sha256="")
    trained.refresh_from_db()
    with pytest.raises(registry.ArtifactIntegrityError, match=f"Model version {trained.pk} has no recorded"):
        registry.artifact_dir(trained)


def test_a_version_saved_before_the_check_still_loads_with_a_warning(trained, caplog):
    trained.refresh_from_db()
    _replace(trained, _rezip(_stored(trained)))  # as the old code wrote it: no comment, no recorded hash
    ModelVersion.objects.filter(pk=trained.pk).update(artifact_sha256="")
    trained.refresh_from_db()
    caplog.set_level(logging.WARNING, logger="personalization.registry")
    system = registry.load_system(trained)
    assert system.recommend([_known_visitor()], n=3)[0]
    assert f"Model version {trained.pk} has no recorded artifact sha256" in caplog.text


def test_an_unpacked_folder_with_a_wrong_marker_is_unpacked_again(trained):
    trained.refresh_from_db()
    folder = registry.artifact_dir(trained)
    assert (folder / ".complete").read_text() == trained.artifact_sha256
    original = (folder / "system.json").read_text()
    # planted or modified: a changed file behind a marker that does not hold the recorded hash
    (folder / "system.json").write_text("{}")
    (folder / "ranker.joblib").write_bytes(b"not the trained ranker")
    (folder / ".complete").write_text("")
    assert registry.artifact_dir(trained) == folder
    assert (folder / "system.json").read_text() == original
    assert (folder / ".complete").read_text() == trained.artifact_sha256
    assert registry.load_system(trained).recommend([_known_visitor()], n=3)[0]


def test_the_unpack_root_is_private(trained, unpack_root):
    registry.artifact_dir(trained)
    assert stat.S_IMODE(unpack_root.stat().st_mode) == 0o700


def test_a_root_writable_by_others_is_not_used(trained, unpack_root, tmp_path):
    unpack_root.mkdir()
    unpack_root.chmod(0o777)
    folder = registry.artifact_dir(trained)
    assert list(unpack_root.iterdir()) == []
    own = folder.parent
    assert own != unpack_root and own.name.startswith("artifacts-")
    assert stat.S_IMODE(own.stat().st_mode) == 0o700


def test_a_corrupt_artifact_leaves_no_folder_behind(trained, unpack_root):
    trained.refresh_from_db()
    data = b"not a zip file at all"
    _replace(trained, data)
    ModelVersion.objects.filter(pk=trained.pk).update(artifact_sha256=hashlib.sha256(data).hexdigest())
    trained.refresh_from_db()
    with pytest.raises(zipfile.BadZipFile):
        registry.artifact_dir(trained)
    assert list(unpack_root.iterdir()) == []


# --- a live version that cannot load says so: admin and bundle/ (issue #12) --------------------------------------

BUNDLE = "/api/personalization/bundle/?segment=all"


def _truncate(version: ModelVersion) -> None:
    data = _stored(version)[: len(_stored(version)) // 2]
    _replace(version, data)
    ModelVersion.objects.filter(pk=version.pk).update(artifact_sha256=hashlib.sha256(data).hexdigest())


def test_a_live_version_that_cannot_load_shows_as_not_loadable(trained, admin_client, browser, monkeypatch):
    monkeypatch.setattr(live, "_loaded", live._Loaded())  # a new process: nothing loaded before
    _truncate(trained)
    response = browser.get(BUNDLE)
    assert response.status_code == 404
    message = response.json()["message"]
    assert f"Model version {trained.pk} is live, not loadable: BadZipFile" in message, message
    assert "No live model yet" not in message
    trained.refresh_from_db()
    assert trained.load_error.startswith("BadZipFile") and trained.load_failed_at is not None
    assert browser.get("/api/personalization/recommendations/", data={"n": 3}).status_code == 200  # popular items
    changelist = admin_client.get("/admin/personalization/modelversion/").content.decode()
    assert "live, not loadable" in changelist
    page = admin_client.get(f"/admin/personalization/modelversion/{trained.pk}/change/").content.decode()
    assert "Not loadable" in page and "BadZipFile" in page


def test_the_bundle_of_the_previous_model_names_the_live_one_that_cannot_load(
        trained, settings, browser, django_capture_on_commit_callbacks):
    assert browser.get(BUNDLE).json()["message"] == ""  # the first version, loaded
    settings.PERSONALIZATION = {**settings.PERSONALIZATION, "PROMOTION_MARGIN": 1.0}
    second = train(ModelVersion.objects.create())
    _truncate(second)
    with django_capture_on_commit_callbacks(execute=True):
        registry.promote(second, force=True)
    body = browser.get(BUNDLE).json()
    assert body["model_version"] == trained.pk  # serving kept the previous model
    assert f"Model version {second.pk} is live, not loadable" in body["message"]
    assert "previous model" in body["message"]


def test_a_good_load_clears_the_recorded_error(trained, monkeypatch):
    ModelVersion.objects.filter(pk=trained.pk).update(load_error="OSError: disk gone")
    monkeypatch.setattr(live, "_loaded", live._Loaded())
    trained.refresh_from_db()
    assert live.system_for(live._token_of(trained))[0] == trained.pk
    trained.refresh_from_db()
    assert trained.load_error == "" and trained.load_failed_at is None
