"""The house's rules, read off the source: arrows point one way (no import cycle, imports inside functions
included), the ML core imports no Django, and services never import the faces that call them (DESIGN.md §3)."""

from __future__ import annotations

import ast
import functools
import graphlib
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "personalization"
PURE = ("personalization.pipeline", "personalization.recommenders", "personalization.evaluation")
#: Faces: they may call services; no service may import them (a service tells them about changes with signals).
FACE_GROUPS = {
    "api": ("personalization.api",),
    "tags": ("personalization.templatetags",),
    "admin": ("personalization.admin", "personalization.delivery.admin",
              "personalization.delivery.notifications_admin", "personalization.monitoring.audit_admin",
              "personalization.monitoring.admin", "personalization.monitoring.dashboard_admin"),
    "tasks": ("personalization.tasks",),
    "commands": ("personalization.management",),
    "wiring": ("personalization.apps", "personalization.middleware", "personalization.testutils"),
}
FACES = tuple(prefix for group in FACE_GROUPS.values() for prefix in group)


def _modules() -> dict[str, Path]:
    found = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        if "migrations" in parts:
            continue
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imported_names(module: str, path: Path) -> set[str]:
    """Every module name imported anywhere in the file (module level, functions, TYPE_CHECKING blocks)."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:  # `from package import module` imports the module; else the name's module
                names.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in MODULES else base)
    return names


def _own(name: str) -> str | None:
    """The package module a dotted name refers to (its longest known prefix), or None for outside modules."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


@functools.cache
def _graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for module, path in MODULES.items():
        targets = {_own(name) for name in _imported_names(module, path)}
        graph[module] = {t for t in targets if t and t != module and t != "personalization"}
    return graph


def test_the_package_has_no_import_cycle():
    graph = _graph()
    try:
        graphlib.TopologicalSorter(graph).prepare()
    except graphlib.CycleError as exc:
        pytest.fail("Import cycle (imports inside functions count): " + " -> ".join(exc.args[1]))


def test_the_graph_is_read_off_the_source():
    """Guards the test above: a known edge, one made inside a function, and a relative one are all seen."""
    graph = _graph()
    assert "personalization.conf" in graph["personalization.models"]
    assert "personalization.training" in graph["personalization.tasks"]  # imported inside the task functions
    assert "personalization.pipeline.columns" in graph["personalization.recommenders.system"]  # relative import


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(PURE)))
def test_the_ml_core_imports_no_django(module):
    django = sorted(n for n in _imported_names(module, MODULES[module]) if n.split(".")[0] == "django")
    assert not django, f"{module} imports {django}: the ML core must stay free of Django (DESIGN rule 1)"
    inward = sorted(t for t in _graph()[module] if not t.startswith(PURE))
    assert not inward, f"{module} imports {inward}: the ML core imports only the ML core"


@pytest.mark.parametrize("module", sorted(m for m in MODULES if not m.startswith(FACES)))
def test_services_do_not_import_faces(module):
    faces = sorted(t for t in _graph()[module] if t.startswith(FACES))
    assert not faces, f"{module} imports the face(s) {faces}; send a signal connected in AppConfig.ready() instead"


def _face_group(module: str) -> str | None:
    return next((group for group, prefixes in FACE_GROUPS.items()
                 if any(module == p or module.startswith(p + ".") for p in prefixes)), None)


@pytest.mark.parametrize("module", sorted(m for m in MODULES if m.startswith(FACES) and m != "personalization.apps"))
def test_faces_call_services_not_other_faces(module):
    """A tag calling the API (or a task calling an admin action) skips the service both should share."""
    own = _face_group(module)
    others = sorted(t for t in _graph()[module] if _face_group(t) not in (None, own))
    assert not others, f"{module} imports the face(s) {others}; move what they share into a service"


@pytest.mark.parametrize("module", sorted(MODULES))
def test_every_module_names_its_job(module):
    tree = ast.parse(MODULES[module].read_text())
    if not tree.body:  # an empty __init__.py of a package
        return
    doc = ast.get_docstring(tree)
    assert doc and len(doc.split()) >= 4, f"{module} has no docstring saying what its one job is"
