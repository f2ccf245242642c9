"""Layout ratchets (issue #17): no new function over 80 lines, no new import circle in src/mixnu.

Both lists below hold what still exists today and must equal what is found: a new long function or
circle fails, and so does fixing one without deleting its entry (the lists only shrink; they end
empty). The layer order itself is checked by `lint-imports` in `make lint` (pyproject.toml).
Pure `ast`, no imports of the package: well under a second.
"""

from __future__ import annotations

import ast
import re
import tomllib
from collections import defaultdict
from functools import cache
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "mixnu"
MAX_LINES = 80

# "path under src:qualified name" of every function longer than MAX_LINES (def line to last line,
# decorators excluded, docstring included).
KNOWN_LONG: set[str] = set()

# Strongly connected components of the import graph (imports inside functions and under
# `if TYPE_CHECKING:` count: that is where circles hide).
KNOWN_CYCLES: set[frozenset[str]] = set()


@cache
def _parse(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"))


def _modules(root: Path) -> dict[str, Path]:
    mods = {}
    for p in sorted(root.rglob("*.py")):
        parts = list(p.relative_to(root.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods[".".join(parts)] = p
    return mods


def long_functions(root: Path = SRC) -> dict[str, int]:
    """{"mixnu/x.py:Class.func": lines} for every function over MAX_LINES."""
    found = {}
    for p in sorted(root.rglob("*.py")):
        rel = p.relative_to(root.parent).as_posix()

        def visit(node: ast.AST, prefix: str, rel: str = rel) -> None:
            for ch in ast.iter_child_nodes(node):
                if isinstance(ch, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
                    name = prefix + ch.name
                    if not isinstance(ch, ast.ClassDef) and ch.end_lineno - ch.lineno + 1 > MAX_LINES:
                        found[f"{rel}:{name}"] = ch.end_lineno - ch.lineno + 1
                    visit(ch, name + ".", rel)
                else:
                    visit(ch, prefix, rel)

        visit(_parse(p), "")
    return found


def _target(mods: dict[str, Path], name: str) -> str | None:
    while name not in mods and "." in name:
        name = name.rsplit(".", 1)[0]
    return name if name in mods else None


def import_graph(root: Path = SRC) -> dict[str, set[str]]:
    """module -> modules of the package it imports (module level, in functions, under TYPE_CHECKING)."""
    mods = _modules(root)
    graph: dict[str, set[str]] = defaultdict(set)
    for mod, path in mods.items():
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(_parse(path)):
            if isinstance(node, ast.Import):
                targets = [_target(mods, a.name) for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[: len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [_target(mods, f"{base}.{a.name}") for a in node.names]
            else:
                continue
            graph[mod] |= {t for t in targets if t and t != mod}
    return graph


def cycles(graph: dict[str, set[str]]) -> set[frozenset[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: set[frozenset[str]] = set()

    def strong(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph.get(v, ()):
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = set()
            while True:
                w = stack.pop()
                comp.add(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.add(frozenset(comp))

    for v in sorted(graph):
        if v not in index:
            strong(v)
    return out


def test_no_new_long_functions():
    found = long_functions()
    new = {k: v for k, v in found.items() if k not in KNOWN_LONG}
    assert not new, f"functions over {MAX_LINES} lines (split them; STYLE.md): {new}"
    fixed = KNOWN_LONG - set(found)
    assert not fixed, f"no longer over {MAX_LINES} lines: delete from KNOWN_LONG: {sorted(fixed)}"


def test_no_new_import_cycles():
    found = cycles(import_graph())
    new = found - KNOWN_CYCLES
    assert not new, f"new import circles: {[sorted(c) for c in new]}"
    gone = KNOWN_CYCLES - found
    assert not gone, f"circles gone: delete from KNOWN_CYCLES: {[sorted(c) for c in gone]}"


def test_every_module_has_a_layer():
    """A new first-level module or package must be placed in pyproject's layers contract, or
    `lint-imports` would never check it."""
    pyproject = tomllib.loads((SRC.parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = pyproject["tool"]["importlinter"]["contracts"]
    layers = next(c for c in contracts if c["type"] == "layers")["layers"]
    placed = {name for layer in layers for name in re.split(r"[|:]", layer) if name.strip()}
    placed = {name.strip() for name in placed}
    top = {p.stem for p in SRC.glob("*.py")} | {p.parent.name for p in SRC.glob("*/__init__.py")}
    assert top - {"__init__", "__main__"} - placed == set()


def test_the_checks_can_fail(tmp_path):
    """On a made-up package: in-function, TYPE_CHECKING and relative imports close a circle; a long
    method is found by its qualified name."""
    pkg = tmp_path / "pkg"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("")
    (pkg / "a.py").write_text("def f():\n    from pkg.sub import b\n")
    (pkg / "sub" / "b.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..c import x\n")
    (pkg / "c.py").write_text("import pkg.a\nclass K:\n    def m(self):\n" + "        pass\n" * MAX_LINES)
    (pkg / "d.py").write_text("from pkg import a\n")
    assert cycles(import_graph(pkg)) == {frozenset({"pkg.a", "pkg.sub.b", "pkg.c"})}
    assert long_functions(pkg) == {"pkg/c.py:K.m": MAX_LINES + 1}
