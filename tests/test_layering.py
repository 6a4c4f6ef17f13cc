"""The layering of DESIGN §2: plans/ imports nothing from orchestrator/, and no domain module imports the HTTP layer."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def imported_modules(path: Path) -> set[str]:
    """Every module a file imports, at any depth (function-level and TYPE_CHECKING imports included)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def offending_imports(package: str, forbidden: tuple[str, ...]) -> list[str]:
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        for name in imported_modules(path):
            if any(name == prefix or name.startswith(f"{prefix}.") for prefix in forbidden):
                found.append(f"{path.relative_to(ROOT)} imports {name}")
    return found


def test_plans_imports_nothing_from_the_orchestrator_or_the_http_layer():
    assert offending_imports("plans", ("orchestrator", "revplan.api")) == []


def test_the_orchestrator_does_not_import_the_http_layer():
    assert offending_imports("orchestrator", ("revplan.api",)) == []


@pytest.mark.parametrize("package", ["plans", "orchestrator"])
def test_no_view_code_outside_the_http_layer(package):
    assert offending_imports(package, ("rest_framework", "drf_spectacular", "django_filters")) == []


def test_the_walk_sees_imports_inside_functions(tmp_path):
    # A check that cannot fail proves nothing: a late import in a function body is found too.
    module = tmp_path / "late.py"
    module.write_text("def f():\n    from orchestrator.execution.models import ActionIntent\n")
    assert "orchestrator.execution.models" in imported_modules(module)
