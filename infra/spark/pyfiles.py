"""Build the ``--py-files`` zip for Spark executors: ``pyfiles.py OUT.zip``.

Executors need the Spark jobs and the few ``corpus2vec.model`` modules they import
(config, schemas, storage, contracts), never the trainer: the zip holds the import
closure of ``corpus2vec.jobs`` and nothing else, found by reading ``import``
statements (nothing is imported, so building it needs neither Spark nor torch).
Module files come from the installed package, so the zip matches what the driver runs.
"""

from __future__ import annotations

import ast
import importlib.util
import sys
import zipfile
from pathlib import Path

ROOT_PACKAGE = "corpus2vec"
ENTRY = "corpus2vec.jobs"


def locate(name: str) -> Path | None:
    """The source file of ``corpus2vec`` module or package ``name``, or None for a symbol.

    Only packages are looked up through the import system (their ``__init__`` files
    are docstrings); modules are found as files in their package's folder, so nothing
    heavy is imported.
    """
    package, _, leaf = name.rpartition(".")
    if not package:
        spec = importlib.util.find_spec(name)
        if spec is None or spec.origin is None:
            raise SystemExit(f"pyfiles: cannot find {name}; install corpus2vec first (README: Set up)")
        return Path(spec.origin)
    parent = locate(package)
    if parent is None or parent.name != "__init__.py":
        return None
    for candidate in (parent.parent / leaf / "__init__.py", parent.parent / f"{leaf}.py"):
        if candidate.is_file():
            return candidate
    spec = importlib.util.find_spec(name)  # a package mapped elsewhere (setuptools package-dir)
    return Path(spec.origin) if spec is not None and spec.origin is not None else None


def _imports(path: Path, package: str) -> set[str]:
    """``corpus2vec.*`` modules named by the imports in ``path`` (absolute and relative)."""
    found: set[str] = set()
    for node in _runtime_nodes(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parent = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{parent}.{base}" if base else parent
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return {n for n in found if n == ROOT_PACKAGE or n.startswith(ROOT_PACKAGE + ".")}


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (annotations, never run)."""
    nodes, todo = [], [tree]
    while todo:
        node = todo.pop()
        if isinstance(node, ast.If) and isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            todo.extend(node.orelse)
            continue
        nodes.append(node)
        todo.extend(ast.iter_child_nodes(node))
    return nodes


def executor_modules() -> dict[str, Path]:
    """Module name -> source file for everything the jobs import, their packages included."""
    entry = locate(ENTRY)
    assert entry is not None
    jobs_dir = entry.parent
    todo = [ENTRY] + [f"{ENTRY}.{p.stem}" for p in sorted(jobs_dir.glob("*.py")) if p.stem != "__init__"]
    closure: dict[str, Path] = {}
    while todo:
        name = todo.pop()
        if name in closure or (path := locate(name)) is None:
            continue  # `from module import function` names a symbol, not a module
        closure[name] = path
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        todo.extend(_imports(path, package))
        parts = name.split(".")
        todo.extend(".".join(parts[:i]) for i in range(1, len(parts)))  # parent packages
    return closure


def build(out: str) -> list[str]:
    """Write the zip (entries sorted, so the same code gives the same bytes); returns its entries."""
    entries = []
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for name, path in sorted(executor_modules().items()):
            arcname = name.replace(".", "/") + ("/__init__.py" if path.name == "__init__.py" else ".py")
            info = zipfile.ZipInfo(arcname, date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            zf.writestr(info, path.read_bytes())
            entries.append(arcname)
    return entries


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit("usage: pyfiles.py OUT.zip")
    for entry in build(sys.argv[1]):
        print(entry)
