"""lib/ is a library: it never imports, runs or names a file of run/ (the command lines sit on top of it)."""
from __future__ import annotations

import ast

from tests.helpers import ROOT


def test_lib_never_imports_or_runs_run():
    offending = []
    for path in sorted((ROOT / "lib").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in ("run", "run/"):
                names = ["run"]  # a path built from the folder's name, e.g. parents[1] / "run"
            offending += [f"{path.relative_to(ROOT)}:{node.lineno} {n}" for n in names
                          if n == "run" or n.startswith("run.")]
    assert not offending, offending
