"""providers/aws as a package: importable without its SDK, split by layer without import
cycles, and declaring the hooks the core calls instead of naming AWS."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

from nestcloud.spec import LaunchOptions
from providers.aws import AwsProvider

ROOT = Path(__file__).resolve().parents[2]
SDK = ("boto3", "botocore", "moto", "s3transfer")

# What reading the class and calling its pure hooks loads, in a fresh interpreter.
PROBE = """
import json, sys
import providers.aws
from providers.aws import AwsProvider
from providers.aws import errors, fleet, iam, lock, pricing, provider, requests, rules, sandbox
from nestcloud.catalog import load_catalog
from nestcloud.spec import LaunchSpec

caps, options = AwsProvider.capabilities, AwsProvider.options
assert caps.rules and caps.access_policy and caps.prices and caps.local_endpoint
cat = load_catalog()
spec = LaunchSpec(provider="aws", type="c8i.large", os="windows-2022", hypervisor="hyperv")
AwsProvider.rules(spec, cat, cat.get("aws", "c8i.large"))
AwsProvider.access_policy()
AwsProvider.access_policy(l1=True)
AwsProvider.access_policy("nc-l1")
json.dump(sorted(m for m in sys.modules if m.split(".")[0] in SDK), sys.stdout)
"""


def test_reading_the_class_and_its_pure_hooks_imports_no_sdk() -> None:
    code = f"SDK = {SDK!r}\n" + PROBE
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = list(rel.parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, known: set[str]) -> set[str]:
    """The known modules ``path`` imports at run time (function bodies included; not under
    ``if TYPE_CHECKING:``)."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            skip.update(id(n) for b in node.body for n in ast.walk(b))
    out: set[str] = set()
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        out.update(n for n in names if n in known)
    return out


def test_the_aws_modules_import_no_module_that_imports_them_back() -> None:
    files = [p for p in (ROOT / "providers").rglob("*.py")
             if "aws" in p.relative_to(ROOT / "providers").parts[0]]
    known = {_module(p): p for p in files}
    graph = {m: _imports(p, set(known)) - {m} for m, p in known.items()}
    # The package's __init__ re-exports the provider class: importing a submodule runs it,
    # so no submodule may import the package itself (``from providers.aws import X``).
    pkg = [m for m, deps in graph.items() if m != "providers.aws" and "providers.aws" in deps]
    assert pkg == []

    def reaches(start: str, goal: str, seen: set[str]) -> bool:
        for d in graph.get(start, ()):
            if d == goal or (d not in seen and (seen.add(d) or reaches(d, goal, seen))):
                return True
        return False

    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert cycles == []
    assert {"providers.aws.requests", "providers.aws.provider", "providers.aws.fleet",
            "providers.aws.lock", "providers.aws.errors", "providers.aws.pricing",
            "providers.aws.iam", "providers.aws.rules", "providers.aws.sandbox"} <= set(graph)


def test_the_request_layer_is_pure() -> None:
    # Request building does no I/O: no SDK, no sockets, no other layer of the provider.
    deps = _imports(ROOT / "providers/aws/requests.py",
                    {_module(p) for p in (ROOT / "providers").rglob("*.py")})
    assert deps == set()
    text = (ROOT / "providers/aws/requests.py").read_text(encoding="utf-8")
    assert not any(f"import {m}" in text for m in ("boto3", "botocore", "socket", "urllib"))


def test_the_readiness_tag_is_the_bootstrap_s() -> None:
    from nestcloud.bootstrap.profiles import TAG_L1
    from providers.aws.requests import TAG_L1 as ours

    assert ours == TAG_L1
    assert TAG_L1 in AwsProvider.capabilities.tags.added  # type: ignore[union-attr]


def test_the_windows_tag_script_tags_the_instance_through_imdsv2() -> None:
    envelope = AwsProvider.capabilities.user_data
    script = envelope.windows_tag_script
    assert (envelope.windows, envelope.windows_readiness) == ("user-data", "tag")
    assert script == (ROOT / "providers/aws/files/set-tag.ps1").read_text(encoding="utf-8")
    code = [line.strip() for line in script.splitlines()
            if line.strip() and not line.lstrip().startswith("#")]
    assert code[0] == "function Set-NcTag([string]$Value) {" and code[-1] == "}"
    # IMDSv2: a session token first, then the instance's own id and region with it.
    assert code[1].startswith("$tok = Invoke-RestMethod -Method Put -Uri "
                              "'http://169.254.169.254/latest/api/token'")
    assert "X-aws-ec2-metadata-token-ttl-seconds" in code[1]
    assert code[2] == "$h = @{'X-aws-ec2-metadata-token' = $tok}"
    assert "meta-data/instance-id" in code[3] and "meta-data/placement/region" in code[4]
    assert code[5] == ("New-EC2Tag -Region $region -Resource $id -Tag @{Key = $NcTag; "
                       "Value = $Value}")


def test_launch_options_are_optional_fields_ec2_requests_carry() -> None:
    declared = AwsProvider.capabilities.launch_options
    assert declared <= set(LaunchOptions.model_fields)
    assert "instance_profile" in declared
    # Azure's settings: EC2 has no field for them.
    assert not declared & {"security_type", "image_generation", "egress"}


def test_capabilities_declare_the_hooks_the_class_has() -> None:
    from nestcloud.provider import (AccessPolicyWriter, EndpointControl, PriceSource,
                                    ProviderRules)

    caps = AwsProvider.capabilities
    assert caps.rules and isinstance(AwsProvider, type)
    for flag, proto in ((caps.rules, ProviderRules), (caps.prices, PriceSource),
                        (caps.access_policy, AccessPolicyWriter),
                        (caps.local_endpoint, EndpointControl)):
        assert flag
        for name in proto.__dict__:
            if not name.startswith("_"):
                assert callable(getattr(AwsProvider, name)), name
    assert caps.prices == ("AWS Price List Query API (pricing GetProducts): on-demand, Linux, "
                           "shared tenancy, no pre-installed software")
