"""The rooms of docs/architecture.md and what each may import, checked on the source itself.

- protocol/ is the wire format: pure, it imports nothing of the project.
- common/ is the floor both programs stand on: it imports neither program.
- segmenter/ and uploader/ never import each other.
- A pure core (every protocol module, and each module whose docstring says "Pure") does no I/O:
  it imports no module that reaches a socket, a file, a process, a thread or a codec library, and
  no module of its program that is not pure itself.
"""

from __future__ import annotations

import ast
import warnings
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("common", "protocol", "segmenter", "uploader")

# Modules through which code reaches the outside world.
IO_MODULES = frozenset({
    "asyncio", "av", "boto3", "botocore", "http", "os", "selectors", "shutil", "socket", "sqlite3",
    "subprocess", "tempfile", "threading", "typer", "urllib.request",
})

MAY_IMPORT = {
    "protocol": {"protocol"},
    "common": {"common", "protocol"},
    "segmenter": {"common", "protocol", "segmenter"},
    "uploader": {"common", "protocol", "uploader"},
}


def modules() -> dict[str, Path]:
    """'segmenter.cutter' -> its file, for every module of the product packages."""
    found = {}
    for package in PACKAGES:
        for path in sorted((REPO / package).glob("*.py")):
            name = package if path.stem == "__init__" else f"{package}.{path.stem}"
            found[name] = path
    return found


MODULES = modules()


def imports(name: str) -> set[str]:
    """Every module ``name`` imports, relative imports made absolute."""
    path = MODULES[name]
    package = name if path.stem == "__init__" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = f"{package}.{base}" if base else package
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in MODULES}
    return found - {"__future__"}


def is_pure(name: str) -> bool:
    docstring = ast.get_docstring(ast.parse(MODULES[name].read_text())) or ""
    return name.startswith("protocol") or "Pure" in docstring


@pytest.mark.parametrize("name", sorted(MODULES))
def test_each_room_imports_only_what_it_may(name: str) -> None:
    room = name.partition(".")[0]
    ours = {module.partition(".")[0] for module in imports(name)} & set(PACKAGES)
    assert ours <= MAY_IMPORT[room], f"{name} imports {sorted(ours - MAY_IMPORT[room])}"


@pytest.mark.parametrize("name", sorted(name for name in MODULES if is_pure(name)))
def test_pure_cores_do_no_io(name: str) -> None:
    imported = imports(name)
    io = {module for module in imported if module in IO_MODULES or module.partition(".")[0] in IO_MODULES}
    assert not io, f"{name} is a pure core but imports {sorted(io)}"
    impure = {module for module in imported if module in MODULES and not is_pure(module) and module != name}
    assert not impure, f"{name} is a pure core but imports {sorted(impure)}, which are not"


def test_the_pure_cores_are_the_ones_the_architecture_names() -> None:
    pure = {name for name in MODULES if is_pure(name) and not name.startswith("protocol")}
    assert pure == {
        "common.settings",
        "segmenter.audioframes", "segmenter.codecs", "segmenter.cutter", "segmenter.errors", "segmenter.ladder",
        "segmenter.psi",
        "segmenter.randomaccess",
        "segmenter.silence", "segmenter.tsfast",
        "uploader.alignment", "uploader.errors", "uploader.master", "uploader.mpegts", "uploader.playlist",
        "uploader.cost", "uploader.lease", "uploader.ownership", "uploader.resume", "uploader.retention", "uploader.status",
        "uploader.stream",
    }


@pytest.mark.parametrize("name", sorted(modules()))
def test_every_module_compiles_without_a_warning(name: str) -> None:
    # An invalid escape in a string (a JavaScript regular expression in the player page's
    # template once) is only a warning today and an error in a later Python.
    path = modules()[name]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        compile(path.read_text(encoding="utf-8"), str(path), "exec")
