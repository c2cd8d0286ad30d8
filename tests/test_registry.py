"""The provider registry: entry points, unknown names, missing SDKs, third-party plugins."""

from __future__ import annotations

import sys
import textwrap
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path

import pytest

import nestcloud.provider as reg
from nestcloud.errors import MissingDependencyError, ProviderError, UnknownProviderError
from nestcloud.provider import GROUP, Provider

PLUGIN_SOURCE = '''
from nestcloud.provider import Capabilities

class {cls}:
    name = "{name}"
    capabilities = Capabilities()
    options = ()

    @classmethod
    def configured(cls, **options):
        return False

    def __init__(self, region=None, **options):
        self.region = region
        self.given = dict(options, region=region)

    def launch(self, request):
        raise NotImplementedError

    def list(self, name=None):
        return []

    def down(self, name):
        raise NotImplementedError

    def console(self, instance):
        return ""

    def verify_catalog(self, catalog, region):
        raise NotImplementedError
'''


def install_plugin(root: Path, monkeypatch: pytest.MonkeyPatch, *, dist: str, module: str,
                   name: str, body: str | None = None) -> None:
    """A real installed distribution in ``root``: dist-info with entry_points.txt + a module."""
    info = root / f"{dist}-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 1.0\n")
    (info / "entry_points.txt").write_text(f"[{GROUP}]\n{name} = {module}:Cloud\n")
    source = body if body is not None else PLUGIN_SOURCE.format(cls="Cloud", name=name)
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    monkeypatch.syspath_prepend(str(root))


def fake_entry_point(monkeypatch: pytest.MonkeyPatch, name: str, value: str) -> None:
    """Replace one registered entry point, leaving the others as installed."""
    real = reg._entry_points()
    real[name] = EntryPoint(name=name, value=value, group=GROUP)
    monkeypatch.setattr(reg, "_entry_points", lambda: dict(real))


# -- built-ins ---------------------------------------------------------------------------------


def test_builtins_are_registered_by_entry_point_like_a_plugin() -> None:
    eps = {ep.name: ep for ep in entry_points(group=GROUP)}
    assert eps["aws"].value == "providers.aws:AwsProvider [aws]"
    assert eps["azure"].value == "providers.azure:AzureProvider [azure]"
    # The pip extra is the entry point's: no table in the core names it.
    assert eps["aws"].extras == ["aws"] and eps["azure"].extras == ["azure"]
    assert eps["aws"].dist is not None and eps["aws"].dist.name == "nestcloud"
    assert {"aws", "azure"} <= set(reg.available())


def test_available_and_describe_import_no_provider_module() -> None:
    before = set(sys.modules)
    reg.available()
    reg.describe()
    new = set(sys.modules) - before
    assert not {m for m in new if m.split(".")[0] in ("providers", "boto3", "botocore", "azure")}


# -- unknown names -------------------------------------------------------------------------------


def test_unknown_name_lists_the_known_ones() -> None:
    with pytest.raises(UnknownProviderError) as info:
        reg.get_provider("oci")
    err = info.value
    assert err.message == "unknown provider 'oci' (known: aws, azure, gcp, local)"
    assert err.hint == "third-party providers register under the 'nestcloud.providers' " \
                       "entry-point group"
    assert err.exit_code == 2


# -- missing SDKs ------------------------------------------------------------------------------


def test_missing_boto3_names_the_aws_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    (tmp_path / "fake_aws_provider.py").write_text("import boto3\nclass Cloud: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "boto3", None)  # import boto3 -> ModuleNotFoundError
    fake_entry_point(monkeypatch, "aws", "fake_aws_provider:Cloud [aws]")
    with pytest.raises(MissingDependencyError) as info:
        reg.get_provider("aws")
    err = info.value
    assert err.message == "provider 'aws' needs the module 'boto3', which is not installed"
    assert err.hint == "pip install 'nestcloud[aws]'"
    assert err.provider == "aws"
    assert err.exit_code == 1
    assert str(err) == ("provider 'aws' needs the module 'boto3', which is not installed\n"
                        "  hint: pip install 'nestcloud[aws]'")


def test_missing_azure_sdk_names_the_azure_extra(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "fake_azure_provider.py").write_text(
        "from azure.mgmt.compute import ComputeManagementClient\nclass Cloud: ...\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setitem(sys.modules, "azure.mgmt.compute", None)
    fake_entry_point(monkeypatch, "azure", "fake_azure_provider:Cloud [azure]")
    with pytest.raises(MissingDependencyError) as info:
        reg.load_factory("azure")
    assert info.value.hint == "pip install 'nestcloud[azure]'"
    assert "'azure.mgmt.compute'" in info.value.message


def test_a_missing_provider_module_is_not_blamed_on_the_sdk(monkeypatch: pytest.MonkeyPatch
                                                            ) -> None:
    fake_entry_point(monkeypatch, "aws", "no_such_provider_module:Cloud")
    with pytest.raises(ProviderError) as info:
        reg.load_factory("aws")
    assert not isinstance(info.value, MissingDependencyError)
    assert info.value.message.startswith(
        "provider 'aws' is registered as 'no_such_provider_module:Cloud' but cannot be imported")
    assert info.value.hint == "reinstall the package that provides it"


def test_an_entry_point_naming_a_missing_object(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "half_provider.py").write_text("X = 1\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    fake_entry_point(monkeypatch, "aws", "half_provider:Cloud")
    with pytest.raises(ProviderError, match="registered as 'half_provider:Cloud', which does "
                                            "not exist"):
        reg.load_factory("aws")


def test_describe_reports_a_missing_sdk_without_importing(monkeypatch: pytest.MonkeyPatch
                                                          ) -> None:
    import importlib.metadata as md

    real = md.distribution

    def distribution(name: str) -> md.Distribution:
        if name == "boto3":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "distribution", distribution)
    rows = {r["name"]: r for r in reg.describe()}
    assert rows["aws"]["installed"] is False
    assert rows["aws"]["missing"] == ["boto3"]
    assert rows["aws"]["extra"] == "aws"
    assert rows["azure"]["installed"] is True


# -- third-party plugins ---------------------------------------------------------------------------


def test_a_third_party_plugin_is_found_through_its_entry_point(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, dist="nestcloud_mycloud", module="nestcloud_mycloud",
                   name="mycloud")
    assert "mycloud" in reg.available()
    provider = reg.get_provider("mycloud", region="x-1")
    assert type(provider).__module__ == "nestcloud_mycloud"
    assert provider.given == {"region": "x-1"}  # type: ignore[attr-defined]
    assert isinstance(provider, Provider)  # it satisfies the protocol
    row = next(r for r in reg.describe() if r["name"] == "mycloud")
    assert row == {"name": "mycloud", "origin": "nestcloud_mycloud:Cloud (nestcloud_mycloud)",
                   "installed": True, "missing": [], "extra": None}


def test_a_third_party_plugin_missing_its_dependency(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    install_plugin(tmp_path, monkeypatch, dist="nestcloud_other", module="nestcloud_other",
                   name="othercloud", body="import othercloud_sdk_not_installed\n")
    with pytest.raises(MissingDependencyError) as info:
        reg.get_provider("othercloud")
    assert info.value.message == ("provider 'othercloud' needs the module "
                                  "'othercloud_sdk_not_installed', which is not installed")
    assert info.value.hint == "install the package that provides the 'othercloud' provider"


def test_a_third_party_plugin_is_usable_from_the_cli(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from nestcloud.cli import app

    install_plugin(tmp_path, monkeypatch, dist="nestcloud_cli_cloud", module="nestcloud_cli_cloud",
                   name="clicloud")
    r = CliRunner().invoke(app, ["providers", "--json"])
    assert r.exit_code == 0
    assert "clicloud" in r.stdout
    # check accepts the name (the catalog has no such provider: a refusal, not bad input).
    r = CliRunner().invoke(app, ["check", "--provider", "clicloud", "--type", "x", "--json"])
    assert r.exit_code == 3
    assert '"rule": "unknown-provider"' in r.stdout


def test_in_process_registration(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(reg, "_extra", {})

    class Local:
        name = "local"

        def __init__(self, **options: object) -> None:
            self.options = options

    reg.register("local", Local)  # type: ignore[arg-type]
    assert "local" in reg.available()
    assert isinstance(reg.get_provider("local", a=1), Local)
    row = next(r for r in reg.describe() if r["name"] == "local")
    assert row["origin"] == "registered in-process"
