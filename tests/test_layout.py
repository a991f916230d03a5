"""The package layout: every public name imports, the import contract in pyproject.toml holds
(layers, no cycles between siblings, private modules stay private), and it catches a violation."""

from __future__ import annotations

import ast
import pathlib
import shutil
import subprocess
import sys

import pytest

import treeslim
import treeslim.nn

PACKAGE = pathlib.Path(treeslim.__file__).parent
PYPROJECT = pathlib.Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.mark.parametrize("module", [treeslim, treeslim.nn], ids=["treeslim", "treeslim.nn"])
def test_every_public_name_imports(module):
    assert len(module.__all__) == len(set(module.__all__))
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    namespace: dict[str, object] = {}
    exec(f"from {module.__name__} import *", namespace)
    assert set(module.__all__) <= set(namespace)


def test_public_functions_are_not_shadowed_by_modules():
    # treeslim.compress / distill / report / nn.compress are the functions, and their
    # implementation modules are private, so nothing hides behind those names
    for name in ("compress", "distill", "report", "compile", "load", "save"):
        assert callable(getattr(treeslim, name)), name
    assert callable(treeslim.nn.compress)
    assert not (PACKAGE / "compress.py").exists() and not (PACKAGE / "report.py").exists()


def _function_level_imports(path: pathlib.Path) -> list[int]:
    """Lines of imports of treeslim's own modules inside functions without a comment above."""
    src = path.read_text()
    lines = src.splitlines()
    tree = ast.parse(src)
    typing_only = {
        id(n)
        for block in ast.walk(tree)
        if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
        for n in ast.walk(block)
    }
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.col_offset > 0 and id(node) not in typing_only:
            own = (node.module or "").startswith("treeslim") or node.level > 0
            if own and not lines[node.lineno - 2].strip().startswith("#"):
                out.append(node.lineno)
    return out


def test_own_imports_are_at_module_level():
    found = {
        str(p.relative_to(PACKAGE)): lines
        for p in sorted(PACKAGE.rglob("*.py"))
        if (lines := _function_level_imports(p))
    }
    assert found == {}, f"imports of treeslim inside functions need a comment saying why: {found}"


def test_modules_stay_small():
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines())
             for p in PACKAGE.rglob("*.py")}  # fmt: skip
    assert max(sizes.values()) <= 430, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]


def _lint_imports(root: pathlib.Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("lint-imports") or str(
        pathlib.Path(sys.executable).with_name("lint-imports")
    )
    if not pathlib.Path(exe).exists():
        pytest.skip("import-linter is not installed (pip install '.[dev]')")
    return subprocess.run(
        [exe, "--config", str(PYPROJECT), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def package_copy(tmp_path_factory):
    root = tmp_path_factory.mktemp("layout")
    shutil.copytree(PACKAGE, root / "treeslim", ignore=shutil.ignore_patterns("__pycache__"))
    return root


def test_import_contract_holds(package_copy):
    run = _lint_imports(package_copy)
    assert run.returncode == 0, run.stdout[-3000:]
    assert "3 kept, 0 broken" in run.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("nn/_estimators.py", "from treeslim.estimators import SlimClassifier", "Layers"),
        ("passes/_exact.py", "from treeslim.passes._nodes import prune_nodes", "cycles"),
        ("backends/_xgboost.py", "from treeslim.frontends._xgboost import OBJECTIVES", "Layers"),
    ],
)
def test_import_contract_catches_a_violation(package_copy, module, line, broken):
    target = package_copy / "treeslim" / module
    original = target.read_text()
    head, sep, rest = original.partition("\nfrom treeslim")
    target.write_text(head + "\n" + line + sep + rest)
    try:
        run = _lint_imports(package_copy)
    finally:
        target.write_text(original)
    assert run.returncode != 0
    assert "BROKEN" in run.stdout and broken in run.stdout.split("Broken contracts")[-1]
