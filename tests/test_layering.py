"""The house rules, checked on the source: imports run one way, no module imports itself back in a
circle, and no module grows too big to hold in the head.

Parts, from the top: cli -> api (api.py, the pytest-benchmark bridge bench*.py) -> scaleout ->
measurement -> suites -> kernels -> core; reporting reads result files and stands on core alone (the
cli and the api may use it). The package's face (parity/__init__.py, parity/specs.py, __main__) sits
above everything. Every import counts, those inside functions too.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "parity"
RANK = {"core": 1, "kernels": 2, "suites": 3, "measurement": 4, "scaleout": 5, "api": 6, "cli": 7, "face": 8}
MAX_LINES = 450  # the hard limit; aim at 400


def part(module: str) -> str:
    p = module.split(".")
    if len(p) == 1 or p[1] in ("specs", "__main__") or p[1:] == ["harness"]:
        return "face"
    if p[1] in ("kernels", "suites"):
        return p[1]
    if p[2] in ("core", "measurement", "reporting", "scaleout"):
        return p[2]
    if p[2] in ("api", "api_measure", "bench", "bench_cases"):
        return "api"
    if p[2] == "cli":
        return "cli"
    raise AssertionError(f"{module}: a module outside every part; give it one in tests/test_layering.py")


def allowed(importer: str, imported: str) -> bool:
    if importer == imported:
        return True
    if importer == "reporting":
        return imported == "core"
    if imported == "reporting":
        return importer in ("api", "cli", "face")
    return RANK[importer] > RANK[imported]


def modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        out[name.removesuffix(".__init__")] = path
    return out


def imports(name: str, path: Path, known: dict[str, Path]) -> list[tuple[str, int]]:
    """(module of parity it imports, line), for every import statement of the file."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([node.module] if node.module else []))
            subs = [f"{base}.{a.name}" for a in node.names if f"{base}.{a.name}" in known]
            targets = subs + ([base] if len(subs) < len(node.names) else [])
        else:
            continue
        for target in targets:
            if not target.startswith("parity"):
                continue
            while target not in known and "." in target:
                target = target.rpartition(".")[0]
            if target != name:
                found.append((target, node.lineno))
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, list[tuple[str, int]]]:
    known = modules()
    return {name: imports(name, path, known) for name, path in known.items()}


def test_every_import_runs_down_the_layers(graph):
    wrong = [f"{name}:{line} imports {target} ({part(name)} -> {part(target)})"
             for name, found in graph.items() for target, line in found if not allowed(part(name), part(target))]
    assert wrong == [], "\n".join(wrong)


def test_no_modules_import_each_other_in_a_circle(graph):
    # Tarjan's strongly connected components: any component of two or more modules is a circle.
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w, _ in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert circles == []


def test_the_walk_sees_a_wrong_import_and_a_circle(tmp_path):
    # The rule must be able to fail: reporting may not reach measurement, kernels may not reach suites.
    assert not allowed("reporting", "measurement") and not allowed("kernels", "suites")
    assert not allowed("core", "scaleout") and allowed("cli", "reporting") and not allowed("scaleout", "reporting")
    (tmp_path / "m.py").write_text("def f():\n    from parity.harness.measurement import timing\n")
    known = {"parity.harness.reporting.m": tmp_path / "m.py", "parity.harness.measurement.timing": Path("x")}
    assert imports("parity.harness.reporting.m", tmp_path / "m.py", known) == [("parity.harness.measurement.timing", 2)]


def test_every_module_is_small_enough_to_hold_in_the_head():
    big = {str(p.relative_to(ROOT)): n for p in PACKAGE.rglob("*.py") if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert big == {}, f"modules over {MAX_LINES} lines: {big}"
