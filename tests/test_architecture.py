"""The house rules that import-linter cannot see (the layer contract itself runs in
``make test`` as ``lint-imports``, configured in pyproject.toml)."""

from __future__ import annotations

import ast
from pathlib import Path

import segformer_lab

PACKAGE = Path(segformer_lab.__file__).parent


def _function_imports(tree: ast.AST):
    """Import statements of the project inside a function body, at any depth."""
    for function in ast.walk(tree):
        if not isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(function):
            if isinstance(node, ast.ImportFrom) and (node.level > 0 or (node.module or "").startswith("segformer_lab")):
                yield node
            elif isinstance(node, ast.Import) and any(a.name.startswith("segformer_lab") for a in node.names):
                yield node


def test_no_project_import_inside_a_function():
    """An import inside a function is a dependency the reader cannot see (and the usual
    way to hide a cycle): the project's own modules are imported at the top."""
    found = [
        f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for node in _function_imports(ast.parse(path.read_text(encoding="utf-8")))
    ]
    assert not found, "project imports inside functions: " + ", ".join(found)
