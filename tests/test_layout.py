"""The package layout the import contracts (``make lint``) rely on, and what they cannot see."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PACKAGE = SRC / "tresen"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _sources() -> list[Path]:
    return sorted(p for p in PACKAGE.rglob("*.py") if "migrations" not in p.parts)


def test_every_source_folder_is_a_package() -> None:
    # A folder without __init__.py is a namespace package, which the import contracts skip:
    # an import from it that breaks a layer would go unnoticed.
    folders = {p.parent for p in _sources()}
    missing = sorted(str(f.relative_to(SRC)) for f in folders if not (f / "__init__.py").exists())
    assert missing == []


def test_no_module_imports_a_private_name_of_another_package() -> None:
    # A leading underscore means "this package's own"; a domain that needs another's helper
    # gets it moved down into a shared module instead.
    found: list[str] = []
    for path in _sources():
        importer = _module_name(path)
        importer_package = importer if path.name == "__init__.py" else importer.rpartition(".")[0]
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if not isinstance(node, ast.ImportFrom) or node.level or not node.module:
                continue
            if not node.module.startswith("tresen."):
                continue
            source_package = node.module.rpartition(".")[0]
            if source_package == importer_package or node.module == importer_package:
                continue
            for alias in node.names:
                if alias.name.startswith("_") and not alias.name.startswith("__"):
                    found.append(f"{importer}: {node.module}.{alias.name}")
    assert found == []


def test_every_table_of_a_schema_module_is_in_its_public_names() -> None:
    # A schema module's ``__all__`` is its table of contents: docs/privacy.md is checked
    # against it by readers, so a table missing from it is a table nobody accounted for.
    import sqlalchemy as sa

    import tresen.gateway.schema
    import tresen.relay.schema

    for module in (tresen.relay.schema, tresen.gateway.schema):
        tables = {name for name, value in vars(module).items() if isinstance(value, sa.Table)}
        assert tables - set(module.__all__) == set(), module.__name__
