"""The layout is the architecture: rooms by layer, imports pointing down only, small modules, tests that
mirror the package. README "Architecture" describes the same rule; this file keeps it true."""
from __future__ import annotations

import ast
from pathlib import Path

from project_paths import ROOT

PACKAGE = ROOT / "vscolormnet"
# A room may import only from rooms of a lower rank (and from itself).
RANK = {"util": 0, "model": 1, "weights": 2, "media": 2, "backends": 3, "runtime": 4, "vs": 5,
        "refs": 6, "metrics": 6, "film": 6, "commands": 7}
MAX_MODULE_LINES, MAX_TEST_LINES = 400, 500
TEST_HELPERS = ("project_paths", "graph_fixtures", "synthetic_backend", "conftest", "test_")


def modules() -> dict[str, Path]:
    out = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(ROOT).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return out


def imports(path: Path, module: str, top_level_only: bool = False) -> set[str]:
    """Package modules ``path`` imports (``from a import b`` counts ``a.b`` when that is a module)."""
    tree = ast.parse(path.read_text())
    package = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
    nodes = tree.body if top_level_only else ast.walk(tree)
    known = modules()
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom):
            base = ".".join(package[:len(package) - node.level + 1] + ([node.module] if node.module else [])) \
                if node.level else (node.module or "")
            subs = {f"{base}.{a.name}" for a in node.names} & set(known)
            found.update(subs if len(subs) == len(node.names) else subs | {base})
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return {m for m in found if m in known and m != module}


def room(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and (PACKAGE / parts[1]).is_dir()) else None


def test_the_package_root_holds_rooms_only():
    entries = sorted(p.name for p in PACKAGE.iterdir() if p.name not in ("__init__.py", "__main__.py", "__pycache__"))
    assert len(entries) <= 12, entries
    assert all((PACKAGE / e).is_dir() for e in entries), f"loose modules at the root: {entries}"
    assert set(entries) == set(RANK), "every room has a layer (RANK) and every layer a room"


def test_imports_point_down_only():
    wrong = []
    for module, path in modules().items():
        src = room(module)
        for target in imports(path, module):
            dst = room(target)
            if src and dst and dst != src and RANK[dst] >= RANK[src]:
                wrong.append(f"{module} -> {target}")
    assert not wrong, "imports against the layers:\n" + "\n".join(sorted(wrong))


def test_no_import_cycle_at_module_level():
    graph = {m: imports(p, m, top_level_only=True) for m, p in modules().items()}
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for n in graph.get(m, ()):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n, stack + [n])
        state[m] = 2
    for m in graph:
        if m not in state:
            visit(m, [m])


def test_modules_stay_small():
    big = [f"{p.relative_to(ROOT)}: {n}" for p in [*PACKAGE.rglob("*.py"), *(ROOT / "scripts").glob("*.py"),
                                                   *(ROOT / "export").glob("*.py")]
           if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES]
    assert not big, big


def test_tests_mirror_the_package_and_stay_small():
    missing = [r for r in RANK if not list((ROOT / "tests" / r).glob("test_*.py"))]
    assert not missing, f"rooms without tests/<room>/: {missing}"
    big = [f"{p.relative_to(ROOT)}: {n}" for p in (ROOT / "tests").rglob("*.py")
           if (n := len(p.read_text().splitlines())) > MAX_TEST_LINES]
    assert not big, big


def test_scripts_and_commands_are_leaves():
    """scripts/ and export/ import nothing from tests/; nothing in the package imports from commands/."""
    for p in [*(ROOT / "scripts").glob("*.py"), *(ROOT / "export").glob("*.py")]:
        tree = ast.parse(p.read_text())
        names = {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        names |= {n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
        assert not [n for n in names if n.startswith(TEST_HELPERS)], f"{p.name} imports from tests/: {names}"
        assert '"tests"' not in p.read_text().replace('"tests" / "data"', ""), f"{p.name} puts tests/ on sys.path"
    users = [m for m, p in modules().items() if room(m) != "commands" and m != "vscolormnet.__main__"
             and any(room(t) == "commands" for t in imports(p, m))]
    assert not users, f"import from commands/: {users}"
