"""Issue 12's acceptance, checked on the source: nothing under nestcloud/ imports from
providers/ or a cloud SDK, no quoted provider name appears in its code, and neither the core
nor the built-in providers have import cycles."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nestcloud

CORE = Path(nestcloud.__file__).parent
REPO = CORE.parent
# Provider names as code dispatches on them (a display name such as "Azure" in the doctor's
# platform detection is text, not a provider key), and the SDK packages providers bring.
PROVIDER_NAMES = {"aws", "azure", "gcp", "google", "local", "memory"}
SDK_PACKAGES = {"boto3", "botocore", "azure", "google", "moto", "pycdlib", "providers"}
SOURCES = sorted(p for p in CORE.rglob("*") if p.suffix in (".py", ".ps1", ".sh"))


def _imports(tree: ast.AST) -> list[str]:
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            out.append(node.module)
    return out


def test_the_core_imports_no_provider_and_no_sdk() -> None:
    found = []
    for path in SOURCES:
        if path.suffix != ".py":
            continue
        for name in _imports(ast.parse(path.read_text(encoding="utf-8"))):
            if name.split(".")[0] in SDK_PACKAGES:
                found.append(f"{path.relative_to(CORE)}: {name}")
    assert found == []


def _quoted_names(path: Path) -> list[str]:
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".py":
        return [n.value for n in ast.walk(ast.parse(text)) if isinstance(n, ast.Constant)
                and isinstance(n.value, str) and n.value in PROVIDER_NAMES]
    return [m.group(1) for m in re.finditer(r"""['"]([A-Za-z]+)['"]""", text)
            if m.group(1) in PROVIDER_NAMES]


def test_the_core_quotes_no_provider_name() -> None:
    found = {str(p.relative_to(CORE)): _quoted_names(p) for p in SOURCES}
    assert {k: v for k, v in found.items() if v} == {}


def test_the_probe_sees_a_quoted_name(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text('if provider == "aws":\n    pass\n', encoding="utf-8")
    assert _quoted_names(bad) == ["aws"]
    ps1 = tmp_path / "bad.ps1"
    ps1.write_text("if ($NcCloud -eq 'azure') { }\n", encoding="utf-8")
    assert _quoted_names(ps1) == ["azure"]


def _module_name(path: Path) -> str:
    rel = path.relative_to(REPO).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    return [n for n in ast.walk(tree) if id(n) not in skip]


def _graph() -> dict[str, set[str]]:
    """Module -> the project modules it imports anywhere (a function's lazy import included:
    a cycle through one is still two modules that need each other), for nestcloud/ and
    providers/; imports under ``if TYPE_CHECKING:`` are annotations only and do not count."""
    files = [p for top in ("nestcloud", "providers") for p in (REPO / top).rglob("*.py")]
    names = {_module_name(p): p for p in files}
    graph: dict[str, set[str]] = {}
    for mod, path in names.items():
        tree = ast.parse(path.read_text(encoding="utf-8"))
        deps: set[str] = set()
        package = mod if path.name == "__init__.py" else mod.rpartition(".")[0]
        for node in _runtime_nodes(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    up = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(up + ([base] if base else []))
                # `from pkg import mod` needs the module; `from pkg import name` the package.
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in names else base
                           for a in node.names]
            for t in targets:
                # A module's import runs its packages' __init__ too; count the module itself.
                if t in names and t != mod:
                    deps.add(t)
        graph[mod] = deps
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> None:
        state[m] = 1
        stack.append(m)
        for d in sorted(graph.get(m, ())):
            if state.get(d) == 1:
                cycles.append(stack[stack.index(d):] + [d])
            elif d not in state:
                visit(d)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)
    # A package importing its own submodule to re-export it is not a cycle back into it.
    return [c for c in cycles
            if not all(b.startswith(a + ".") or a.startswith(b + ".") for a, b in zip(c, c[1:]))]


def test_no_import_cycles_in_the_core_or_the_providers() -> None:
    assert _cycles(_graph()) == []


def test_the_cycle_probe_sees_a_lazy_mutual_import(tmp_path: Path) -> None:
    graph = _graph()
    # As providers/aws.py and providers/_aws_fleet.py were: one imports the other at the top,
    # the other imports it back inside a function.
    graph["providers.aws.fleet"] = graph.get("providers.aws.fleet", set()) | {
        "providers.aws.provider"}
    graph["providers.aws.provider"] = graph["providers.aws.provider"] | {"providers.aws.fleet"}
    assert _cycles(graph) != []
