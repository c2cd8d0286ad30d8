"""The public Python API: its surface, a light import, and each verb."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest

import nestcloud
from nestcloud.provider import UserDataEnvelope
from nestcloud.bootstrap import RenderedUserData
from nestcloud.errors import InputError
from tests.planner.conftest import CATALOG_YAML


def test_public_surface_is_pinned() -> None:
    assert nestcloud.__all__ == [
        "BudgetError", "InputError", "Lab", "NestcloudError", "ProviderError",
        "ReadinessTimeout", "RefusedError", "__version__", "check", "launch", "load_catalog",
        "plan",
    ]
    for name in nestcloud.__all__:
        assert getattr(nestcloud, name) is not None
    assert set(nestcloud.__all__) <= set(dir(nestcloud))


def test_import_is_light() -> None:
    code = ("import sys, nestcloud; "
            "heavy = [m for m in ('pydantic', 'yaml', 'boto3', 'botocore', 'azure', 'typer', "
            "'rich', 'nestcloud.lab', 'nestcloud.catalog') if m in sys.modules]; print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_launch_stays_the_function_after_the_launcher_loads() -> None:
    import nestcloud.launcher  # noqa: F401  (the core launch path has its own module name)

    assert callable(nestcloud.launch) and nestcloud.launch.__module__ == "nestcloud"


def test_plan_and_check_return_models(tmp_path: Any) -> None:
    from nestcloud.catalog import parse_catalog

    cat = parse_catalog(CATALOG_YAML)
    res = nestcloud.plan(4, 16, providers=["aws"], seats=2, hours=3, catalog=cat)
    assert res.best is not None and res.best.type == "m8i.xlarge"
    d = res.to_dict()
    assert d["options"][0]["total_usd"] == 1.5 and d["options"][0]["price_date"] == "2025-06-01"
    assert "<td>m8i.xlarge</td>" in res._repr_html_()
    chk = nestcloud.check("aws", "c7g.xlarge", region="us-east-1", catalog=cat)
    assert not chk.ok and chk.findings[0].rule == "arm64"
    assert chk.to_dict()["findings"][0]["severity"] == "error"
    assert "refused" in chk._repr_html_()
    with pytest.raises(InputError, match="give vcpus and memory_gib per seat"):
        nestcloud.plan(4)
    with pytest.raises(InputError, match=r"^hypervisor: Input should be"):
        nestcloud.check("aws", "c8i.large", hypervisor="vmware", catalog=cat)


def test_lab_python_constructor_cost(tmp_path: Any) -> None:
    from nestcloud.catalog import parse_catalog

    lab = nestcloud.Lab("virt", 4, vcpus=4, memory_gib=8, ttl="90m", budget=1,
                        catalog=parse_catalog(CATALOG_YAML))
    c = lab.cost()
    # Azure's D4s_v5 is cheaper per VM, but not with its NAT gateway (~$0.05/h) added.
    assert (c.option.provider, c.option.type, c.option.region) == ("aws", "c8i.xlarge",
                                                                   "us-east-1")
    assert c.total_usd == pytest.approx(0.20 * 4 * 1.5)
    assert c.within_budget is False and c.budget == 1
    assert c.to_dict()["price_date"] == "2025-06-01"
    assert "<td>virt</td>" in c._repr_html_()


def test_launch_through_the_api(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import uuid

    from providers.aws import AwsProvider

    def render(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
               provider_name: str = "", extra: str | None = None,
               l2_smoke: bool = False) -> RenderedUserData:
        return RenderedUserData(kind="cloud-config", body=b"#cloud-config\n", gzipped=False)

    monkeypatch.setattr("nestcloud.bootstrap.render_user_data", render)
    opened: list[tuple[str, str | None, bool]] = []

    def open_provider(provider: str, region: str | None, *, sandbox: bool = False,
                      **options: Any) -> Any:
        assert options == {}
        opened.append((provider, region, sandbox))
        p = AwsProvider(region=region, endpoint_url=moto_endpoint)
        p.sleep = lambda s: None
        return p

    monkeypatch.setattr("nestcloud.provider.open_provider", open_provider)  # the one factory
    name = "api" + uuid.uuid4().hex[:8]
    res = nestcloud.launch("aws", "c8i.large", region="us-east-1", name=name, count=2,
                           os="al2023", hypervisor="firecracker", ttl="30m", sandbox=True)
    assert opened == [("aws", "us-east-1", True)]
    assert len(res.instances) == 2
    assert all(i.expires and i.tags["nestcloud:name"] == name for i in res.instances)
    assert res.to_dict()["name"] == name
    assert "(sandbox)" in res._repr_html_()
    again = nestcloud.launch("aws", "c8i.large", region="us-east-1", name=name, count=2,
                             os="al2023", hypervisor="firecracker", ttl="30m", sandbox=True)
    assert sorted(again.reused) == sorted(i.id for i in res.instances)
    AwsProvider(region="us-east-1", endpoint_url=moto_endpoint).down(name)
    with pytest.raises(InputError, match=r"^ttl: not a duration: 'soon'"):
        nestcloud.launch("aws", "c8i.large", ttl="soon")
