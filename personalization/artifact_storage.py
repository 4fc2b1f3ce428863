"""Where model artifacts are stored: a private storage (``ARTIFACT_STORAGE``) that no URL serves.

An artifact holds the interaction matrix of every visitor (under pseudonyms, see ``subjects.py``) and a pickled
ranker, so it must never be downloadable. The default is a ``FileSystemStorage`` in a folder beside ``MEDIA_ROOT``
(``<MEDIA_ROOT>/../personalization-artifacts``; ``<BASE_DIR>/personalization-artifacts`` without a MEDIA_ROOT),
created 0700 with 0600 files and no ``base_url``. ``ARTIFACT_STORAGE`` may name a ``STORAGES`` alias, a storage
class's dotted path, or ``{"BACKEND": dotted path, "OPTIONS": {...}}`` (e.g. a private S3 bucket). The system check
``personalization.E031`` (:func:`public_exposure`) refuses a storage whose files could be served publicly.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from django.conf import settings as django_settings
from django.core.exceptions import ImproperlyConfigured
from django.core.files.storage import FileSystemStorage, Storage, storages
from django.utils.module_loading import import_string

from personalization.conf import settings

DEFAULT_FOLDER = "personalization-artifacts"


def default_location() -> Path:
    """The default storage's folder: beside MEDIA_ROOT (never inside it), else under BASE_DIR or the cwd."""
    media = str(getattr(django_settings, "MEDIA_ROOT", "") or "")
    if media:
        return Path(media).resolve().parent / DEFAULT_FOLDER
    base = getattr(django_settings, "BASE_DIR", None)
    return Path(base or Path.cwd()).resolve() / DEFAULT_FOLDER


@lru_cache(maxsize=16)
def _private_filesystem(location: str) -> FileSystemStorage:
    return FileSystemStorage(location=location, base_url=None, file_permissions_mode=0o600,
                             directory_permissions_mode=0o700)


def artifact_storage() -> Storage:
    """The storage model artifacts are saved to and loaded from."""
    spec = settings.ARTIFACT_STORAGE
    if spec is None:
        return _private_filesystem(str(default_location()))
    if isinstance(spec, str) and spec in getattr(django_settings, "STORAGES", {}):
        return storages[spec]
    if isinstance(spec, str):
        spec = {"BACKEND": spec}
    if not isinstance(spec, dict) or not isinstance(spec.get("BACKEND"), str):
        raise ImproperlyConfigured(
            'PERSONALIZATION["ARTIFACT_STORAGE"] must be None, a STORAGES alias, a storage class\'s dotted path or '
            f'{{"BACKEND": dotted path, "OPTIONS": {{...}}}}; got {spec!r}.')
    backend, options = spec["BACKEND"], dict(spec.get("OPTIONS") or {})

    def build() -> Storage:
        try:
            cls = import_string(backend)
        except ImportError as exc:
            raise ImproperlyConfigured(f'PERSONALIZATION["ARTIFACT_STORAGE"] backend {backend!r} cannot be '
                                       f"imported: {exc}") from exc
        return cls(**options)

    return settings.derived("artifact_storage", build)


def public_exposure(storage: Storage) -> list[str]:
    """Why files of ``storage`` could be served publicly (empty when nothing says so)."""
    reasons = []
    if isinstance(storage, FileSystemStorage):
        location = Path(storage.location).resolve()
        served = {"MEDIA_ROOT": getattr(django_settings, "MEDIA_ROOT", ""),
                  "STATIC_ROOT": getattr(django_settings, "STATIC_ROOT", "")}
        for index, folder in enumerate(getattr(django_settings, "STATICFILES_DIRS", []) or []):
            served[f"STATICFILES_DIRS[{index}]"] = folder[1] if isinstance(folder, (tuple, list)) else folder
        for name, folder in served.items():
            if folder and location.is_relative_to(Path(folder).resolve()):
                reasons.append(f"its location {location} is inside {name} ({folder}), which the site serves")
        if storage._base_url is not None:  # the storage was given a URL to serve its files under
            reasons.append(f"it has a base_url ({storage._base_url!r}), so its files have public URLs")
    else:
        acl = getattr(storage, "default_acl", None)
        if isinstance(acl, str) and acl.startswith("public"):
            reasons.append(f"its default_acl is {acl!r}")
        if getattr(storage, "querystring_auth", True) is False:
            reasons.append("querystring_auth is off: its URLs are unsigned, i.e. public")
        base_url = getattr(storage, "base_url", None)
        if getattr(storage, "custom_domain", None) and base_url:
            reasons.append(f"it serves files from a custom domain ({base_url})")
    return reasons
