"""The provider contract as the core uses it (issue 12): the core reads declared capabilities
and error scopes, never probes a provider object nor reads a cloud's error codes, and builds
every provider through one factory that knows only what the provider declares."""

from __future__ import annotations

import ast
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest

import nestcloud
import nestcloud.provider as reg
from nestcloud import failover
from nestcloud.errors import (CapacityError, CredentialsError, InputError, ProviderError,
                              QuotaError, ThrottledError, UnsupportedError)
from nestcloud.provider import Capabilities, ProviderOption, open_provider

CORE = Path(nestcloud.__file__).parent

# getattr/hasattr calls the core may make: (file, first argument) -- none on a provider, a
# provider class, a result or an exception. Anything new here needs a reason.
ALLOWED_PROBES = {
    ("cli/_inputs.py", "source"),          # click's ParameterSource (an enum member or None)
    ("cli/_app.py", "typer"),              # typer versions differ in their exception classes
    ("cli/_app.py", "sys.modules[typer.Exit.__module__]"),
    ("security.py", "importlib.import_module(f'detect_secrets.plugins.{module}')"),
    ("security.py", "k"),                  # a YAML node
    ("_catalog_dump.py", "m"),             # a dataclass instance, by its fields
    ("sandbox.py", "os"),
    ("_progress.py", "s"),                 # a stream
    ("bootstrap/__init__.py", "yaml"),
    ("bootstrap/l1check.py", "os"),
    ("localstate.py", "os"),
    ("_yamlio.py", "os"),
    ("_yamlio.py", "yaml"),
    ("_yamlio.py", "exc"),                 # an OSError or a YAML error (file reading only)
}


def _probes() -> set[tuple[str, str]]:
    found = set()
    for path in CORE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
                    and node.func.id in ("getattr", "hasattr") and node.args):
                found.add((path.relative_to(CORE).as_posix(), ast.unparse(node.args[0])))
    return found


def test_the_core_probes_no_provider_object() -> None:
    assert _probes() - ALLOWED_PROBES == set()


def _strings(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return {n.value for n in ast.walk(tree) if isinstance(n, ast.Constant)
            and isinstance(n.value, str)}


def test_failover_names_no_cloud_and_no_cloud_error_code() -> None:
    from providers.aws import errors as aws_errors
    from providers.azure import errors as azure_errors

    codes = (set(aws_errors.ZONE_CODES) | set(aws_errors.TYPE_CODES)
             | set(aws_errors.REGION_CODES) | azure_errors._CAPACITY | azure_errors._QUOTA)
    text = (CORE / "failover.py").read_text(encoding="utf-8")
    assert [c for c in codes if c in text] == []
    assert [c for c in codes if c.lower() in text.lower()] == []
    assert {"aws", "azure", "gcp"} & _strings(CORE / "failover.py") == set()
    # Nor does the lab, which drives failover.
    assert {"aws", "azure"} & _strings(CORE / "lab.py") == set()


@pytest.mark.parametrize(("error", "verdict"), [
    (CapacityError("x"), "zone"),
    (UnsupportedError("x"), "type"),
    (QuotaError("x"), "region"),
    (ThrottledError("x"), "region"),
    (CredentialsError("x"), "fatal"),
    (ProviderError("x", scope="zone"), "zone"),
    (ProviderError("x", scope="type"), "type"),
    (ProviderError("x", scope="region"), "region"),
    (ProviderError("x", scope="provider"), "provider"),
    (ProviderError("x", scope="account"), "fatal"),
    (ProviderError("x", scope="request"), "fatal"),
    # A code alone means nothing to the core: only the provider's scope does.
    (ProviderError("x", code="InsufficientInstanceCapacity"), "fatal"),
    (ProviderError("x", code="SkuNotAvailable"), "fatal"),
    (InputError("x"), "fatal"),
])
def test_classify_reads_the_scope_only(error: Exception, verdict: str) -> None:
    assert failover.classify(error) == verdict


def test_aws_translation_sets_the_scope_failover_reads() -> None:
    from botocore.exceptions import ClientError

    from providers.aws.errors import translate

    def err(code: str) -> Any:
        return translate(ClientError({"Error": {"Code": code, "Message": "m"}}, "RunInstances"),
                         action="launch", region="us-east-1")

    assert err("Unsupported").scope == "zone"
    assert err("InsufficientInstanceCapacity").scope == "zone"
    assert err("InvalidInstanceType").scope == "type"
    assert err("UnsupportedOperation").scope == "type"
    assert err("VcpuLimitExceeded").scope == "region"
    assert err("InvalidParameterValue").scope == "request"
    assert err("SomethingNew").scope is None


# -- the one factory -------------------------------------------------------------------------


class Recorder:
    name: ClassVar[str] = "rec"
    capabilities: ClassVar[Capabilities] = Capabilities()
    options: ClassVar[tuple[ProviderOption, ...]] = (
        ProviderOption("project", "--project", "The project.", envvar="REC_PROJECT"),
    )

    @classmethod
    def configured(cls, **options: Any) -> bool:
        return "project" in options

    def __init__(self, region: str | None = None, **options: Any) -> None:
        self.region = region
        self.given = options


@pytest.fixture
def rec(monkeypatch: pytest.MonkeyPatch) -> type[Recorder]:
    monkeypatch.setattr(reg, "_extra", {"rec": Recorder})
    monkeypatch.delenv("REC_PROJECT", raising=False)
    return Recorder


def test_open_provider_passes_declared_options(rec: type[Recorder]) -> None:
    p = open_provider("rec", "r-1", project="p1", other=None)
    assert isinstance(p, Recorder) and p.region == "r-1" and p.given == {"project": "p1"}


def test_open_provider_reads_the_declared_environment_variable(
        rec: type[Recorder], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("REC_PROJECT", "from-env")
    assert open_provider("rec").given == {"project": "from-env"}  # type: ignore[attr-defined]
    assert open_provider("rec", project="flag").given == {  # type: ignore[attr-defined]
        "project": "flag"}


def test_open_provider_refuses_an_undeclared_option(rec: type[Recorder]) -> None:
    with pytest.raises(InputError) as info:
        open_provider("rec", subscription_id="x")
    assert info.value.message == ("provider 'rec' takes no option 'subscription_id' (its "
                                  "options: project (--project))")
    assert info.value.exit_code == 2


def test_sandbox_on_a_provider_without_a_local_endpoint(rec: type[Recorder]) -> None:
    with pytest.raises(InputError) as info:
        open_provider("rec", sandbox=True)
    assert info.value.message == "--sandbox: provider 'rec' has no local endpoint"


def test_sandbox_asks_the_provider_for_its_local_endpoint(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    said: list[str] = []

    class Local(Recorder):
        capabilities: ClassVar[Capabilities] = Capabilities(local_endpoint=True)

        @classmethod
        def local_endpoint(cls, note: Any = None) -> dict[str, Any]:
            note("started")
            return {"region": "local-1", "project": "sandbox"}

    monkeypatch.setattr(reg, "_extra", {"local": Local})
    p = open_provider("local", sandbox=True, note=said.append)
    assert (p.region, p.given, said) == ("local-1", {"project": "sandbox"},  # type: ignore
                                         ["started"])


def test_configured_asks_each_provider_class(rec: type[Recorder],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "_entry_points", lambda: {})
    assert reg.configured() == []
    assert reg.configured(project="p") == ["rec"]


# -- the pip extra comes from the entry point ------------------------------------------------


def test_extra_and_its_distributions_come_from_the_plugin_metadata(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    info = tmp_path / "nestcloud_far-1.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(textwrap.dedent("""\
        Metadata-Version: 2.1
        Name: nestcloud_far
        Version: 1.0
        Provides-Extra: far
        Requires-Dist: farcloud-sdk-not-installed>=2; extra == "far"
        Requires-Dist: pyyaml; extra == "other"
        """))
    (info / "entry_points.txt").write_text(
        f"[{reg.GROUP}]\nfar = nestcloud_far:Cloud [far]\n")
    (tmp_path / "nestcloud_far.py").write_text("import farcloud_sdk\nclass Cloud: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    row = next(r for r in reg.describe() if r["name"] == "far")
    assert row == {"name": "far", "origin": "nestcloud_far:Cloud (nestcloud_far)",
                   "installed": False, "missing": ["farcloud-sdk-not-installed"],
                   "extra": "far"}
    with pytest.raises(reg.MissingDependencyError) as err:
        reg.load_factory("far")
    assert err.value.hint == "pip install 'nestcloud_far[far]'"
    assert "farcloud_sdk" not in sys.modules


def test_the_core_has_no_extra_tables() -> None:
    for name in ("EXTRAS", "SDK_DISTRIBUTIONS", "SDK_MODULES"):
        assert not hasattr(reg, name), name


# -- ls/down without --provider ask each provider class -------------------------------------


class Listing(Recorder):
    name: ClassVar[str] = "listing"

    def list(self, name: str | None = None) -> list[Any]:
        from nestcloud.models import Instance

        return [Instance(provider="listing", id="x-1", name=name or "grp", region="r-1",
                         type="t", state="running")]


def test_ls_without_provider_finds_a_configured_third_party_provider(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from typer.testing import CliRunner

    from nestcloud.cli import app

    monkeypatch.setattr(reg, "_entry_points", lambda: {})
    monkeypatch.setattr(reg, "_extra", {"listing": Listing})
    monkeypatch.delenv("REC_PROJECT", raising=False)
    none = CliRunner().invoke(app, ["ls", "--json"])
    assert none.exit_code == 2
    assert json.loads(none.stdout)["message"] == (
        "no provider is configured: none of the installed providers (listing) found "
        "credentials or settings")
    # Its declared environment variable configures it, as a flag would.
    monkeypatch.setenv("REC_PROJECT", "p1")
    res = CliRunner().invoke(app, ["ls", "--json"])
    assert res.exit_code == 0, res.output
    assert [i["id"] for i in json.loads(res.stdout)["instances"]] == ["x-1"]
    monkeypatch.delenv("REC_PROJECT")
    res = CliRunner().invoke(app, ["ls", "--json", "-o", "project=p2"])
    assert res.exit_code == 0, res.output
    assert [i["id"] for i in json.loads(res.stdout)["instances"]] == ["x-1"]


def test_the_cli_core_imports_no_sdk_to_find_configured_providers() -> None:
    for path in (CORE / "cli").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "boto3" not in text and "azure.identity" not in text, path.name


def test_local_owner_honours_nestcloud_owner(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESTCLOUD_OWNER", "alice")
    assert reg.local_owner() == "alice"
    monkeypatch.delenv("NESTCLOUD_OWNER")
    import getpass

    monkeypatch.setattr(getpass, "getuser", lambda: (_ for _ in ()).throw(KeyError("uid")))
    assert reg.local_owner() == "unknown"


@pytest.mark.parametrize(("url", "want"), [
    ("http://127.0.0.1:9", True), ("http://localhost/x", True), ("http://[::1]:80", True),
    ("http://127.8.9.1", True), ("https://127.0.0.1", False), ("http://10.0.0.1", False),
    ("http://localhost.evil.example", False), ("http://127.0.0.1.nip.io", False),
    ("", False), (None, False),
])
def test_loopback_http_is_plain_http_to_this_machine_only(url: str | None, want: bool) -> None:
    assert reg.is_loopback_http(url) is want


# How the core calls each optional class hook (nestcloud/checks.py, prices.py, cli/): every
# installed provider that declares the capability must accept exactly that call.
_HOOK_CALLS: dict[str, tuple[str, tuple[Any, ...], dict[str, Any]]] = {
    "rules": ("rules", ("spec", "catalog", None), {}),
    "egress": ("egress_cost", (None, 1), {}),
    "prices": ("fetch_prices", (["r"], "catalog"), {}),
    "access_policy": ("access_policy", (), {"instance_role": None, "l1": False}),
    "local_endpoint": ("endpoint_control", ("status", print), {}),
}


@pytest.mark.parametrize("name", reg.available())
def test_every_declared_class_hook_takes_the_cores_call(name: str) -> None:
    import inspect

    cls = reg.load_factory(name)
    caps = cls.capabilities
    for capability, (hook, args, kwargs) in _HOOK_CALLS.items():
        if not getattr(caps, capability):
            continue
        inspect.signature(getattr(cls, hook)).bind(*args, **kwargs)  # TypeError: mismatch
