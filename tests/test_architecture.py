"""Dependency direction: cli -> flows -> {pipeline, stores}; pipeline and stores are leaves."""

from __future__ import annotations

import ast
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("cli", "flows", "pipeline", "stores")
ALLOWED = {
    "cli": {"cli", "flows", "pipeline", "stores"},  # cli may name error types of the leaves
    "flows": {"flows", "pipeline", "stores"},
    "pipeline": {"pipeline"},
    "stores": {"stores"},
}


def _project_imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        else:
            continue
        found.update(n.split(".")[0] for n in names if n.split(".")[0] in PACKAGES)
    return found


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_follow_dependency_direction(package: str) -> None:
    bad = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for target in _project_imports(path) - ALLOWED[package]:
            bad.append(f"{path.relative_to(ROOT)} imports {target}")
    assert not bad, "wrong-direction imports:\n" + "\n".join(bad)


def _flow_edges() -> dict[str, set[str]]:
    """flows module -> the flows modules it imports (any import, lazy ones included)."""
    edges: dict[str, set[str]] = {}
    for path in sorted((ROOT / "flows").glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        targets: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            else:
                continue
            targets.update(n.split(".")[1] for n in names if n.startswith("flows.") and n.count(".") >= 1)
        edges[path.stem] = targets - {path.stem}
    return edges


def test_flow_modules_import_each_other_one_way() -> None:
    edges = _flow_edges()
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    cycles: list[str] = []

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(edges.get(node, ())):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join([*path[path.index(nxt) :], nxt]))
            elif nxt not in state:
                visit(nxt, [*path, nxt])
        state[node] = 2

    for module in sorted(edges):
        if module not in state:
            visit(module, [module])
    assert not cycles, "import circles between flows modules:\n" + "\n".join(cycles)


def test_cli_calls_flows_not_compute() -> None:
    """cli/ may catch the leaves' error classes but must run stages through flows/."""
    bad = []
    for path in sorted((ROOT / "cli").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                top = node.module.split(".")[0]
                if top in {"pipeline", "stores"} and not node.module.endswith(".errors"):
                    bad.append(f"{path.relative_to(ROOT)} imports {node.module}")
    assert not bad, "cli must go through flows:\n" + "\n".join(bad)


def test_help_does_not_import_heavy_libraries() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        "heavy = ('torch', 'zarr', 'prefect', 'decord', 'transformers', 'dask')\n"
        "print(','.join(m for m in heavy if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "", f"--help imported {out.stdout.strip()}"


def test_help_is_fast() -> None:
    exe = Path(sys.executable).with_name("aam-pipeline")
    start = time.perf_counter()
    subprocess.run([str(exe), "--help"], capture_output=True, check=True, cwd=ROOT)
    assert time.perf_counter() - start < 2.0
