"""The package's shape stays: each layer imports only the layers below it, and no import cycle.

Parsed with ast (every import, also those inside functions), so a lazy import counts too.
Layers, lowest first (README "Architecture"):
    errors, transform          (transform is the deployed Lambda: standard library only)
    config, state
    aws
    lake
    provision
    data
    sandbox                    (the local endpoint: may use lake/transform, never used by the layers above but cli)
    cli
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src"
PKG = SRC / "s3tstream"

# area -> the areas it may import (besides itself)
ALLOWED: dict[str, set[str]] = {
    "errors": set(),
    "transform": set(),
    "config": {"errors", "transform"},
    "state": {"errors", "config"},
    "aws": {"errors", "config", "state"},
    "lake": {"errors", "transform", "config", "state", "aws"},
    "provision": {"errors", "transform", "config", "state", "aws", "lake"},
    "data": {"errors", "transform", "config", "state", "aws", "lake", "provision"},
    "sandbox": {"errors", "transform", "config", "lake"},
    "cli": {"errors", "transform", "config", "state", "aws", "lake", "provision", "data", "sandbox"},
    "__main__": {"cli"},
}
TOP = {"__init__"}

# Work in progress of the restructure (issue 12): each entry is removed when its module is split.
# Nothing may be added here.
PENDING_SPLIT: set[str] = set()
PENDING_CYCLES: list[list[str]] = []


def modules() -> dict[str, Path]:
    out = {}
    for p in PKG.rglob("*.py"):
        rel = p.relative_to(SRC).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = p
    return out


MODS = modules()


def imports_of(name: str, path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found: set[str] = set()
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and _is_type_checking(block.test)
                   for stmt in block.body for n in ast.walk(stmt)}
    for node in ast.walk(tree):
        if id(node) in typing_only:  # `if TYPE_CHECKING:` imports never run
            continue
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[: len(here) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            for a in node.names:
                sub = f"{mod}.{a.name}"
                found.add(sub if sub in MODS else mod)
    return {m for m in found if m == "s3tstream" or m.startswith("s3tstream.")}


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


GRAPH = {name: {m for m in imports_of(name, p) if m in MODS and m != name} for name, p in MODS.items()}


def area(mod: str) -> str:
    parts = mod.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_every_module_imports_only_layers_below_it() -> None:
    bad = []
    for mod, deps in GRAPH.items():
        a = area(mod)
        if a in TOP:
            continue
        for d in deps:
            b = area(d)
            if b == a or b in TOP:
                continue
            if b not in ALLOWED.get(a, set()):
                bad.append(f"{mod} imports {d} ({a} may import only {sorted(ALLOWED.get(a, set()))})")
    assert not bad, "\n".join(sorted(bad))


def test_no_import_cycle() -> None:
    # Tarjan's strongly connected components; any component of two or more modules is a cycle
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    cycles: list[list[str]] = []
    sys.setrecursionlimit(10000)

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in GRAPH[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                cycles.append(sorted(comp))

    for v in sorted(GRAPH):
        if v not in index:
            visit(v)
    cycles = [c for c in cycles if c not in PENDING_CYCLES]
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_transform_imports_only_the_standard_library() -> None:
    stdlib = set(sys.stdlib_module_names)
    for mod, p in MODS.items():
        if area(mod) != "transform":
            continue
        tree = ast.parse(p.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module] if isinstance(node, ast.ImportFrom) and not node.level and node.module else [])
            for n in names:
                top = n.split(".")[0]
                assert top in stdlib or n.startswith("s3tstream.transform") or n == "s3tstream", f"{mod} imports {n}"


def test_the_package_ships_no_test_harness() -> None:
    assert not (PKG / "testing").exists()
    assert not any(m.startswith("tests") for deps in GRAPH.values() for m in deps)


def test_no_product_module_is_over_700_lines() -> None:
    long = {m: n for m, p in MODS.items() if (n := len(p.read_text(encoding="utf-8").splitlines())) > 700
            and m not in PENDING_SPLIT}
    assert not long, long


def test_the_checker_sees_a_planted_upward_import_and_cycle() -> None:
    """The rules above can fail: an upward edge and a cycle planted in a copy of the graph are found."""
    g = {k: set(v) for k, v in GRAPH.items()}
    g["s3tstream.aws.client"].add("s3tstream.cli.app")
    assert "cli" not in ALLOWED[area("s3tstream.aws.client")]
    assert "s3tstream.aws.client" in _reachable(g, "s3tstream.cli.app")  # cli reaches aws, so now a cycle


def _reachable(g: dict[str, set[str]], start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        v = todo.pop()
        for w in g.get(v, ()):
            if w not in seen:
                seen.add(w)
                todo.append(w)
    return seen
