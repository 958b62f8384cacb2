"""The tree keeps the shape docs/architecture.md draws: drawn from the package's own imports, no circle, no module
over about 400 lines, and a command line that never imports TensorFlow or Keras."""

from __future__ import annotations

import ast
from pathlib import Path

import fashionzoo

PACKAGE = Path(fashionzoo.__file__).parent
LONGEST = 400
LONGER_ALLOWED = {"fashionzoo.data.loading": 440}
"""The official files' finding, download, verification and reading: cohesive, and allowed a little more."""


def _modules() -> dict[str, Path]:
    modules = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.with_suffix("").relative_to(PACKAGE.parent).parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imports(path: Path, modules: set[str] = frozenset()) -> set[str]:
    """Every module ``path`` imports, at any depth of its code (function-level imports count). ``from package import
    submodule`` imports the submodule, and the package's face only when it names something else too."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            submodules = {f"{node.module}.{alias.name}" for alias in node.names} & modules
            names |= submodules
            if len(submodules) < len(node.names):
                names.add(node.module)
    return names


def _arrows() -> dict[str, set[str]]:
    modules = _modules()
    return {name: (_imports(path, set(modules)) & set(modules)) - {name} for name, path in modules.items()}


def test_no_import_circle() -> None:
    arrows = _arrows()
    visiting: list[str] = []
    done: set[str] = set()

    def visit(name: str) -> None:
        assert name not in visiting, f"import circle: {' -> '.join(visiting[visiting.index(name) :] + [name])}"
        if name in done:
            return
        visiting.append(name)
        for target in sorted(arrows[name]):
            visit(target)
        visiting.pop()
        done.add(name)

    for name in sorted(_modules()):
        visit(name)


def test_no_module_over_about_400_lines() -> None:
    sizes = {name: len(path.read_text(encoding="utf-8").splitlines()) for name, path in _modules().items()}
    too_long = {name: n for name, n in sizes.items() if n > LONGER_ALLOWED.get(name, LONGEST)}
    assert not too_long, too_long


def test_the_command_line_never_imports_tensorflow_or_keras() -> None:
    for path in (PACKAGE / "cli").glob("*.py"):
        heavy = [name for name in _imports(path) if name.split(".")[0] in ("tensorflow", "keras", "tf2onnx")]
        assert not heavy, f"{path.name} imports {heavy}"


def test_every_wing_is_drawn_in_the_architecture_doc() -> None:
    doc = (PACKAGE.parents[1] / "docs" / "architecture.md").read_text(encoding="utf-8")
    modules = [name for name in _modules() if name.count(".") == 2 and not name.endswith("__main__")]
    missing = [name for name in modules if f"`{name.removeprefix('fashionzoo.').replace('.', '/')}.py`" not in doc]
    assert not [name for name in missing if not name.startswith("fashionzoo.cli.")], missing
