"""The Azure provider is a package split by layer: importable without the Azure SDK, no import
cycles, and what it declares (capabilities, class hooks) readable from the class alone."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nestcloud.provider import Capabilities, load_factory
from nestcloud.spec import LaunchOptions

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "providers" / "azure"

# Run in a fresh interpreter: this test process has imported the SDK already. Every class
# hook the core calls without making a provider runs too; none may need the SDK.
PROBE = """
import json, sys
import providers.azure
from nestcloud.provider import load_factory
from nestcloud.catalog import parse_catalog
from nestcloud.spec import LaunchSpec
cls = load_factory("azure")
caps = cls.capabilities
cls.egress_cost(None, 3)
cls.access_policy()
spec = LaunchSpec(provider="azure", type="Standard_D2s_v5", security_type="TrustedLaunch")
cls.rules(spec, parse_catalog("schema_version: 1\\nsources: {}\\ntypes: []\\n"), None)
EXTRA
print(json.dumps(sorted(m for m in sys.modules if m == "azure" or m.startswith("azure."))))
"""


def _sdk_modules(extra: str = "") -> list[str]:
    out = subprocess.run([sys.executable, "-c", PROBE.replace("EXTRA", extra)], cwd=ROOT,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    found: list[str] = json.loads(out.stdout.strip().splitlines()[-1])
    return found


def test_importing_the_provider_and_its_class_hooks_import_no_azure_sdk() -> None:
    assert _sdk_modules() == []


def test_the_probe_does_see_an_sdk_import() -> None:
    """The check above can fail: the module holding the SDK classes shows up in it."""
    assert "azure.core.exceptions" in _sdk_modules("import providers.azure._sdk")


def test_the_entry_point_still_names_the_package_export() -> None:
    from providers.azure import AzureProvider
    from providers.azure.provider import AzureProvider as Defined

    assert load_factory("azure") is AzureProvider is Defined
    assert AzureProvider.__module__ == "providers.azure.provider"


# -- no import cycles --------------------------------------------------------------------------


def _module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _runtime_imports(tree: ast.AST) -> list[ast.Import | ast.ImportFrom]:
    """Every import statement, at any depth, except those under ``if TYPE_CHECKING:``."""
    found: list[ast.Import | ast.ImportFrom] = []

    def walk(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                for other in child.orelse:
                    walk(other)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                found.append(child)
            walk(child)

    walk(tree)
    return found


def _import_graph() -> dict[str, set[str]]:
    files = [*PACKAGE.rglob("*.py"), *(ROOT / "nestcloud").rglob("*.py"),
             ROOT / "providers" / "__init__.py"]
    modules = {_module_name(f): f for f in files}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        is_pkg = path.name == "__init__.py"
        edges: set[str] = set()
        for node in _runtime_imports(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    anchor = name.split(".") if is_pkg else name.split(".")[:-1]
                    anchor = anchor[:len(anchor) - node.level + 1]
                    base = ".".join([*anchor, *([base] if base else [])])
                targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base
                           for a in node.names]
            edges.update(t for t in targets if t in modules and t != name)
        graph[name] = edges
    return graph


def _reaches(graph: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    stack: list[tuple[str, list[str]]] = [(n, [start, n]) for n in graph[start]]
    seen: set[str] = set()
    while stack:
        node, path = stack.pop()
        if node == goal:
            return path
        if node in seen:
            continue
        seen.add(node)
        stack.extend((n, [*path, n]) for n in graph.get(node, ()))
    return None


def test_no_module_of_the_package_is_imported_back_by_what_it_imports() -> None:
    graph = _import_graph()
    mine = sorted(m for m in graph if m.startswith("providers.azure"))
    assert {"providers.azure", "providers.azure.provider", "providers.azure.plan",
            "providers.azure.errors", "providers.azure.pricing", "providers.azure.iam",
            "providers.azure.rules", "providers.azure._sdk"} <= set(mine)
    cycles = {m: _reaches(graph, m, m) for m in mine}
    assert {m: c for m, c in cycles.items() if c} == {}


def test_the_cycle_finder_does_find_a_cycle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _reaches(graph, "a", "a") == ["a", "b", "c", "a"]
    assert _reaches(graph, "d", "d") is None


def test_the_core_imports_nothing_of_the_azure_package() -> None:
    graph = _import_graph()
    assert {m: sorted(e) for m, e in graph.items() if m.startswith("nestcloud")
            and any(t.startswith("providers") for t in e)} == {}


# -- what the class declares ---------------------------------------------------------------------


def test_capabilities_declare_the_class_hooks() -> None:
    caps: Capabilities = load_factory("azure").capabilities
    assert caps.egress == ("nat", "public-ip", "none")  # the NAT gateway is the default
    assert caps.rules is True and caps.access_policy is True
    assert caps.prices == ("Azure Retail Prices API: Consumption, Linux (Windows products "
                           "skipped); Spot meters as spot")


def test_launch_options_are_optional_fields_the_provider_reads() -> None:
    caps: Capabilities = load_factory("azure").capabilities
    assert caps.launch_options == frozenset({"security_type", "image_generation", "egress"})
    assert caps.launch_options <= set(LaunchOptions.model_fields)
    # Each one is read by the provider's code (not only declared).
    text = "\n".join(p.read_text(encoding="utf-8") for p in PACKAGE.glob("*.py"))
    for field in caps.launch_options:
        assert f"spec.{field}" in text, field
    # An AWS IAM setting it has no use for is not among them.
    assert "instance_profile" not in caps.launch_options


def test_windows_tag_script_is_the_files_set_tag_function() -> None:
    script = load_factory("azure").capabilities.user_data.windows_tag_script
    assert script == (PACKAGE / "files" / "set-tag.ps1").read_text(encoding="utf-8")
    assert script.lstrip().startswith("function Set-NcTag([string]$Value) {")
    assert script.rstrip().endswith("}")
    # The VM's own id from the instance metadata service, a managed-identity token for ARM,
    # then a Merge PATCH of the $NcTag tag on the VM.
    assert "http://169.254.169.254/metadata/instance?api-version=2021-02-01" in script
    assert "metadata/identity/oauth2/token" in script
    assert "operation = 'Merge'" in script and "$NcTag = $Value" in script
    assert "Microsoft.Resources/tags/default?api-version=2021-04-01" in script
    assert "-Method Patch" in script
    # Only Azure's branch: nothing of another cloud's metadata service.
    assert "$NcCloud" not in script and "latest/api/token" not in script
    assert script.count("{") == script.count("}")


@pytest.mark.parametrize("hook", ["rules", "egress_cost", "fetch_prices", "access_policy"])
def test_class_hooks_are_classmethods(hook: str) -> None:
    cls = load_factory("azure")
    assert isinstance(cls.__dict__[hook], classmethod)
