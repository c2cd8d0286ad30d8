"""Every Azure host gets an outbound path (issue 11): NAT gateway, public IP, or `none` (warned).

The ARM fake applies Azure's rule (FACTS.md, Azure, "Egress"): subnets of new VNets are private
with the network API version the SDK sends, so a VM reaches the internet only through a public
IP on its NIC or a NAT gateway on its subnet; without one its bootstrap fails and it never
prints a readiness marker. These tests assert what we sent and what the user sees.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from conftest import CATALOG_YAML, PRICED_CATALOG_YAML, SSH_KEY
from fakes.arm_fake import SUB, ArmFake

from nestcloud.provider import LaunchRequest
from nestcloud.bootstrap.l1check import MARKER
from nestcloud.catalog import Catalog
from nestcloud.errors import InputError
from nestcloud.spec import LaunchSpec

READY = f'cloud-init: boot\n{MARKER} {{"status": "ready", "checks": {{}}}}\n'
GROUP = f"/subscriptions/{SUB}/resourceGroups/nestcloud-demo-eastus"
NET = f"{GROUP}/providers/Microsoft.Network"


def spec(**kw: Any) -> LaunchSpec:
    base: dict[str, Any] = {"provider": "azure", "type": "Standard_D2s_v5", "region": "eastus",
                            "name": "demo", "key_name": SSH_KEY}
    base.update(kw)
    return LaunchSpec(**base)


def vm_names(arm: ArmFake) -> list[str]:
    return sorted(r["name"] for r in arm.resources.values()
                  if r["type"] == "Microsoft.Compute/virtualMachines")


def wait(provider: Any, instances: Any) -> Any:
    from nestcloud.bootstrap.wait import wait_for_ready

    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    return wait_for_ready(provider, instances, timeout_s=60, interval_s=10,
                          clock=lambda: now[0], sleep=sleep)


# -- the fake's rule itself --------------------------------------------------------------------


def test_the_fake_treats_a_new_subnet_as_private(provider: Any, arm: ArmFake,
                                                 catalog: Catalog) -> None:
    """The rule the other tests rest on: with the network API version the SDK sends, a VM
    with neither a public IP nor a NAT gateway has no way out, and its bootstrap fails."""
    provider.launch(LaunchRequest(spec(egress="none"), catalog)).result
    [vnet_put] = arm.writes("PUT", "virtualNetworks")
    assert vnet_put.query["api-version"] >= "2025-07-01"  # FACTS.md: private by default since
    assert arm.has_egress("demo-0") is False
    assert arm.boot_egress == {"demo-0": False}
    assert MARKER not in arm.blobs["demo-0.serialconsole.log"].decode()


# -- nat: the default ------------------------------------------------------------------------


def test_default_egress_is_one_nat_gateway_on_the_subnet(provider: Any, arm: ArmFake,
                                                         catalog: Catalog) -> None:
    arm.console_text = READY
    res = provider.launch(LaunchRequest(spec(count=3, tags={"team": "infra"}), catalog)).result

    # Every host we launched can reach the internet, and could when it booted.
    assert vm_names(arm) == ["demo-0", "demo-1", "demo-2"]
    assert all(arm.has_egress(v) for v in vm_names(arm))
    assert arm.boot_egress == {"demo-0": True, "demo-1": True, "demo-2": True}

    # One Standard public IP for the NAT gateway, one NAT gateway, attached to the subnet.
    pips = arm.bodies("publicIPAddresses")
    assert list(pips) == ["nestcloud-demo-natgw-ip"]
    assert pips["nestcloud-demo-natgw-ip"]["sku"] == {"name": "Standard"}
    assert pips["nestcloud-demo-natgw-ip"]["properties"] == {"publicIPAllocationMethod": "Static"}
    nat = arm.bodies("natGateways")["nestcloud-demo-natgw"]
    assert nat["sku"] == {"name": "Standard"}
    assert nat["location"] == "eastus"
    assert nat["properties"]["publicIpAddresses"] == [
        {"id": f"{NET}/publicIPAddresses/nestcloud-demo-natgw-ip"}]
    subnet = arm.bodies("virtualNetworks")["nestcloud-demo-vnet"]["properties"]["subnets"][0]
    assert subnet["properties"]["natGateway"] == {"id": f"{NET}/natGateways/nestcloud-demo-natgw"}
    # Private whatever the API version's default: the way out is the one we chose.
    assert subnet["properties"]["defaultOutboundAccess"] is False
    # The NAT gateway and its address come before the VNet that references them.
    order = [r.path.rsplit("/", 1)[-1] for r in arm.writes("PUT")]
    assert order.index("nestcloud-demo-natgw-ip") < order.index("nestcloud-demo-natgw") \
        < order.index("nestcloud-demo-vnet")
    # Tagged like everything else.
    for body in (nat, pips["nestcloud-demo-natgw-ip"]):
        assert body["tags"]["nestcloud:name"] == "demo" and body["tags"]["team"] == "infra"
    # No VM is given a public address of its own; inbound stays closed.
    for nic in arm.bodies("networkInterfaces").values():
        assert "publicIPAddress" not in nic["properties"]["ipConfigurations"][0]["properties"]
    assert all(i.public_ip is None for i in res.instances)
    # The user is told which way out the hosts have and what it costs.
    [note] = [n for n in res.notes if n.startswith("egress:")]
    assert "NAT gateway nestcloud-demo-natgw" in note
    assert "$0.045/h" in note and "$0.045 per GB" in note and "$0.005/h" in note
    assert "approximate" in note

    # And the fake's L1s, which could download their packages, report ready.
    report = wait(provider, res.instances)
    assert [i.status for i in report.instances] == ["ready"] * 3


def test_dry_run_shows_the_nat_gateway_requests(provider: Any, arm: ArmFake,
                                                catalog: Catalog) -> None:
    res = provider.launch(LaunchRequest(spec(count=2), catalog, dry_run=True)).result
    assert arm.writes() == []
    ops = [(r.operation, r.params["id"].rsplit("/", 1)[-1]) for r in res.requests]
    assert ops[:5] == [
        ("resource_groups.create_or_update", "nestcloud-demo-eastus"),
        ("network_security_groups.begin_create_or_update", "nestcloud-demo-nsg"),
        ("public_ip_addresses.begin_create_or_update", "nestcloud-demo-natgw-ip"),
        ("nat_gateways.begin_create_or_update", "nestcloud-demo-natgw"),
        ("virtual_networks.begin_create_or_update", "nestcloud-demo-vnet")]
    vnet = res.requests[4].params["body"]
    assert vnet["properties"]["subnets"][0]["properties"]["natGateway"]["id"].endswith(
        "/natGateways/nestcloud-demo-natgw")
    json.dumps(res.to_dict())


def test_down_removes_the_nat_gateway_and_its_address(provider: Any, arm: ArmFake,
                                                      catalog: Catalog) -> None:
    provider.launch(LaunchRequest(spec(count=2), catalog)).result
    assert any("/natgateways/" in i.lower() for i in arm.ids())
    res = provider.down("demo")
    assert res.deleted == [GROUP]
    assert arm.groups == {} and arm.resources == {}


def test_down_in_a_users_group_removes_nat_resources_in_dependency_order(
        make_provider: Callable[..., Any], arm: ArmFake, catalog: Catalog, rendered: Any
) -> None:
    # A group nestcloud does not own: resources go one by one, and the fake refuses to delete
    # a NAT gateway a subnet still uses, or a public IP a NAT gateway still uses.
    arm.groups["shared-rg"] = {"id": f"/subscriptions/{SUB}/resourceGroups/shared-rg",
                               "name": "shared-rg", "location": "eastus", "tags": {},
                               "properties": {"provisioningState": "Succeeded"}}
    prov = make_provider(resource_group="shared-rg")
    prov.launch(LaunchRequest(spec(count=2), catalog)).result
    assert any("/natgateways/" in i.lower() for i in arm.ids())
    res = prov.down("demo")
    assert arm.ids() == []
    deleted = [d.rsplit("/", 2)[-2].lower() for d in res.deleted]
    assert deleted.index("virtualnetworks") < deleted.index("natgateways") \
        < deleted.index("publicipaddresses")


def test_a_rerun_on_an_old_private_network_adds_the_nat_gateway(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    # A group made without an outbound path (as nestcloud did before): growing it must not
    # add more hosts that cannot reach the internet.
    provider.launch(LaunchRequest(spec(egress="none"), catalog)).result
    assert arm.has_egress("demo-0") is False
    before = len(arm.writes())
    res = provider.launch(LaunchRequest(spec(count=2), catalog)).result
    new = [r.path.rsplit("/", 1)[-1] for r in arm.writes()[before:]]
    assert new == ["nestcloud-demo-natgw-ip", "nestcloud-demo-natgw", "nestcloud-demo-vnet",
                   "demo-1-nic", "demo-1"]
    assert arm.boot_egress["demo-1"] is True
    assert arm.has_egress("demo-0") is True  # the subnet's NAT gateway serves it now too
    [note] = [n for n in res.notes if n.startswith("added NAT gateway")]
    assert "seat(s) 0 booted before it" in note and "had no outbound path" in note


def test_a_failed_rerun_keeps_the_network_it_fixed(provider: Any, arm: ArmFake,
                                                  catalog: Catalog) -> None:
    # The rollback removes the new seat, not the VNet that holds seat 0, nor the NAT gateway
    # that VNet now uses (deleting either would fail, or cut seat 0 off again).
    from nestcloud.errors import CapacityError

    provider.launch(LaunchRequest(spec(egress="none"), catalog)).result
    arm.fail_vm("demo-1", "AllocationFailed")
    with pytest.raises(CapacityError) as err:
        provider.launch(LaunchRequest(spec(count=2), catalog)).result
    assert "rolled back" in err.value.message
    names = sorted(i.rsplit("/", 1)[-1] for i in arm.ids())
    assert "demo-0" in names and "demo-1" not in names and "demo-1-nic" not in names
    assert {"nestcloud-demo-vnet", "nestcloud-demo-natgw", "nestcloud-demo-natgw-ip"} <= set(names)
    assert arm.has_egress("demo-0")


# -- public-ip ---------------------------------------------------------------------------------


def test_egress_public_ip_gives_each_vm_its_own_address_and_no_nat(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    res = provider.launch(LaunchRequest(spec(count=2, egress="public-ip"), catalog)).result
    assert all(arm.has_egress(v) for v in vm_names(arm))
    assert arm.writes("PUT", "natGateways") == []
    assert sorted(arm.bodies("publicIPAddresses")) == ["demo-0-pip", "demo-1-pip"]
    # An address, but no inbound rule: the NSG stays closed without --ssh-cidr.
    nsg = arm.bodies("networkSecurityGroups")["nestcloud-demo-nsg"]
    assert nsg["properties"]["securityRules"] == []
    subnet = arm.bodies("virtualNetworks")["nestcloud-demo-vnet"]["properties"]["subnets"][0]
    assert "natGateway" not in subnet["properties"]
    [note] = [n for n in res.notes if n.startswith("egress:")]
    assert "public IP" in note and "$0.005/h" in note


def test_public_ip_flag_alone_is_the_way_out(provider: Any, arm: ArmFake,
                                            catalog: Catalog) -> None:
    # --public-ip already gives every VM a path: a NAT gateway would only add cost.
    provider.launch(LaunchRequest(spec(public_ip=True), catalog)).result
    assert arm.has_egress("demo-0")
    assert arm.writes("PUT", "natGateways") == []


# -- none: allowed, warned, and really without a path -------------------------------------------


def test_egress_none_is_warned_and_the_host_has_no_way_out(provider: Any, arm: ArmFake,
                                                           catalog: Catalog) -> None:
    arm.console_text = READY  # what an L1 with internet would print; this one cannot
    res = provider.launch(LaunchRequest(spec(egress="none"), catalog)).result
    assert arm.writes("PUT", "natGateways") == [] and arm.writes("PUT", "publicIPAddresses") == []
    assert arm.has_egress("demo-0") is False
    [note] = [n for n in res.notes if n.startswith("egress:")]
    assert note.startswith("egress: none: the hosts have no route to the internet")
    assert "cannot install packages" in note
    report = wait(provider, res.instances)
    assert [i.status for i in report.instances] == ["timeout"]


def test_egress_none_with_public_ip_is_refused_before_any_request(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    with pytest.raises(InputError) as err:
        provider.launch(LaunchRequest(spec(egress="none", public_ip=True), catalog)).result
    assert str(err.value).startswith("--egress none with --public-ip:")
    assert err.value.exit_code == 2
    assert arm.requests == []


def test_bad_egress_value_is_a_spec_error() -> None:
    from nestcloud.errors import SpecError

    with pytest.raises(SpecError) as err:
        spec(egress="vpn")
    assert err.value.errors()[0]["loc"] == ("egress",)


# -- through the CLI, a lab file and the Python API ----------------------------------------------


LAUNCH = ("launch", "--provider", "azure", "--type", "Standard_D2s_v5", "--region", "eastus",
          "--name", "demo", "--key-name", SSH_KEY)


def test_cli_egress_flag_reaches_the_requests(cli: Any, arm: ArmFake) -> None:
    res = cli(*LAUNCH, "--egress", "public-ip", "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    ops = [r["operation"] for r in json.loads(res.stdout)["requests"]]
    assert "nat_gateways.begin_create_or_update" not in ops
    assert ops.count("public_ip_addresses.begin_create_or_update") == 1

    res = cli(*LAUNCH, "--dry-run", "--json")
    ops = [r["operation"] for r in json.loads(res.stdout)["requests"]]
    assert "nat_gateways.begin_create_or_update" in ops
    assert arm.writes() == []


def test_cli_egress_none_prints_the_warning(cli: Any, arm: ArmFake) -> None:
    res = cli(*LAUNCH, "--egress", "none")
    assert res.exit_code == 0, res.output
    assert "egress: none: the hosts have no route to the internet" in res.stderr


def test_cli_bad_egress_exit_2(cli: Any, arm: ArmFake) -> None:
    res = cli(*LAUNCH, "--egress", "vpn")
    assert res.exit_code == 2
    assert "egress" in res.stderr and "Traceback" not in res.output
    assert arm.requests == []


def test_cli_egress_with_aws_is_refused(cli: Any) -> None:
    res = cli("launch", "--provider", "aws", "--type", "c8i.large", "--region", "us-east-1",
              "--egress", "nat", "--dry-run")
    assert res.exit_code == 2
    assert res.stderr.startswith("error: --egress nat: provider 'aws' does not offer this "
                                 "setting")


def test_lab_file_egress_flows_into_the_launch(tmp_path: Path) -> None:
    from nestcloud.catalog import parse_catalog
    from nestcloud.lab import Lab

    path = tmp_path / "lab.yaml"
    path.write_text("name: egr\nseats: 2\nseat: {type: Standard_D2s_v5}\nttl: 1h\n"
                    "providers: [azure]\negress: public-ip\n", encoding="utf-8")
    lab = Lab.from_file(path, catalog=parse_catalog(PRICED_CATALOG_YAML))
    assert lab.spec.egress == "public-ip"
    option = lab.plan().require()
    assert option.egress == "public-ip"
    assert lab.launch_spec(option).egress == "public-ip"
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: egr\nseats: 2\nseat: {type: Standard_D2s_v5}\nttl: 1h\n"
                   "egress: vpn\n", encoding="utf-8")
    from nestcloud.errors import LabFileError

    with pytest.raises(LabFileError) as err:
        Lab.from_file(bad)
    assert "egress" in str(err.value)
    assert Lab("egr", 1, type="Standard_D2s_v5", egress="none").spec.egress == "none"


def test_python_api_takes_egress(arm: ArmFake, rendered: Any,
                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import nestcloud
    from nestcloud.catalog import parse_catalog

    monkeypatch.setenv("NESTCLOUD_AZURE_ARM_ENDPOINT", arm.url)
    monkeypatch.setenv("AZURE_SUBSCRIPTION_ID", SUB)
    rep = nestcloud.launch("azure", "Standard_D2s_v5", region="eastus", name="demo",
                           key_name=SSH_KEY, egress="public-ip", dry_run=True,
                           catalog=parse_catalog(CATALOG_YAML))
    ops = [r.operation for r in rep.requests]
    assert "nat_gateways.begin_create_or_update" not in ops
    assert "public_ip_addresses.begin_create_or_update" in ops
    with pytest.raises(InputError, match="egress"):
        nestcloud.launch("azure", "Standard_D2s_v5", region="eastus", egress="vpn",
                         dry_run=True, catalog=parse_catalog(CATALOG_YAML))
