"""Azure launch through the real SDK against the local ARM fake: what we send, and cleanup."""

from __future__ import annotations

import base64
import datetime as dt
import json
from collections.abc import Callable
from typing import Any

import pytest
from conftest import SSH_KEY
from fakes.arm_fake import ArmFake

from nestcloud.provider import LaunchRequest
from nestcloud.catalog import Catalog
from nestcloud.errors import InputError
from nestcloud.spec import LaunchSpec

NC_TAGS = {"nestcloud:name", "nestcloud:owner"}


def spec(**kw: Any) -> LaunchSpec:
    base: dict[str, Any] = {"provider": "azure", "type": "Standard_D2s_v5", "region": "eastus",
                            "name": "demo", "key_name": SSH_KEY}
    base.update(kw)
    return LaunchSpec(**base)


def test_launch_sends_what_nesting_needs(provider: Any, arm: ArmFake, catalog: Catalog,
                                         rendered: list[tuple[str, str, str]]) -> None:
    res = provider.launch(LaunchRequest(spec(tags={"team": "infra"}), catalog)).result

    assert rendered == [("azure", "ubuntu-24.04", "kvm")]
    vm = arm.bodies("virtualMachines")["demo-0"]
    props = vm["properties"]
    assert props["securityProfile"] == {"securityType": "Standard"}
    assert props["hardwareProfile"] == {"vmSize": "Standard_D2s_v5"}
    # D2s_v5 takes Gen1 and Gen2: the Gen2 image of the alias (FACTS.md).
    assert props["storageProfile"]["imageReference"] == {
        "publisher": "Canonical", "offer": "ubuntu-24_04-lts", "sku": "server",
        "version": "latest"}
    os_disk = props["storageProfile"]["osDisk"]
    assert os_disk["deleteOption"] == "Delete" and os_disk["createOption"] == "FromImage"
    assert os_disk["diskSizeGB"] == 30
    assert props["networkProfile"]["networkInterfaces"][0]["properties"] == {
        "primary": True, "deleteOption": "Delete"}
    assert props["diagnosticsProfile"] == {"bootDiagnostics": {"enabled": True}}
    assert base64.b64decode(props["osProfile"]["customData"]) == \
        b"#cloud-config\nruncmd: [echo nc-ready]\n"
    linux = props["osProfile"]["linuxConfiguration"]
    assert linux["disablePasswordAuthentication"] is True
    assert linux["ssh"]["publicKeys"][0]["keyData"] == SSH_KEY
    assert "priority" not in props and "billingProfile" not in props

    # Everything written carries our tags plus the user's; seats carry their seat number.
    for req in arm.writes("PUT"):
        tags = req.body["tags"]
        assert NC_TAGS <= set(tags), req.path
        assert tags["team"] == "infra"
        assert tags["nestcloud:name"] == "demo"
    assert vm["tags"]["nestcloud:seat"] == "0"
    assert "nestcloud:expires" not in vm["tags"]

    # No inbound rule by default, no public IP on a VM unless asked (the one public IP is the
    # NAT gateway's, the hosts' way out), no extension or schedule.
    nsg = arm.bodies("networkSecurityGroups")["nestcloud-demo-nsg"]
    assert nsg["properties"]["securityRules"] == []
    assert list(arm.bodies("publicIPAddresses")) == ["nestcloud-demo-natgw-ip"]
    assert arm.writes("PUT", "extensions") == []
    assert arm.writes("PUT", "schedules") == []
    nic = arm.bodies("networkInterfaces")["demo-0-nic"]
    assert "publicIPAddress" not in nic["properties"]["ipConfigurations"][0]["properties"]
    vnet = arm.bodies("virtualNetworks")["nestcloud-demo-vnet"]
    assert vnet["properties"]["subnets"][0]["properties"]["networkSecurityGroup"]["id"]\
        .endswith("/networkSecurityGroups/nestcloud-demo-nsg")

    # One group per name and region, tagged.
    group = arm.groups["nestcloud-demo-eastus"]
    assert group["tags"]["nestcloud:name"] == "demo" and group["location"] == "eastus"
    assert [i.name for i in res.instances] == ["demo"]
    assert res.instances[0].state == "running" and res.instances[0].private_ip
    assert res.instances[0].public_ip is None


@pytest.mark.parametrize(("size", "os_alias", "sku"), [
    ("Standard_D2_v3", "ubuntu-24.04", "server-gen1"),      # Dv3: Gen1 only
    ("Standard_D2s_v6", "ubuntu-24.04", "server"),          # v6: Gen2 only
    ("Standard_D2_v3", "debian-12", "12"),
    ("Standard_D2s_v6", "debian-12", "12-gen2"),
    ("Standard_D2s_v6", "rhel-9", "9-lvm-gen2"),
    ("Standard_D2_v3", "rhel-9", "9-lvm"),
])
def test_image_generation_follows_the_size(provider: Any, arm: ArmFake, catalog: Catalog,
                                           size: str, os_alias: str, sku: str) -> None:
    provider.launch(LaunchRequest(spec(type=size, os=os_alias), catalog)).result
    image = arm.bodies("virtualMachines")["demo-0"]["properties"]["storageProfile"][
        "imageReference"]
    assert image["sku"] == sku


def test_forced_generation_the_size_cannot_boot_is_refused(provider: Any, arm: ArmFake,
                                                           catalog: Catalog) -> None:
    with pytest.raises(InputError) as err:
        provider.launch(LaunchRequest(spec(type="Standard_D2_v3", image_generation="V2"), catalog)).result
    assert str(err.value).startswith(
        "--image-generation V2: Standard_D2_v3 boots V1 images only")
    assert arm.writes() == []


def test_explicit_image_urn_and_bad_urn(provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    provider.launch(LaunchRequest(spec(image="Contoso:hv:l1:1.2.3"), catalog)).result
    image = arm.bodies("virtualMachines")["demo-0"]["properties"]["storageProfile"][
        "imageReference"]
    assert image == {"publisher": "Contoso", "offer": "hv", "sku": "l1", "version": "1.2.3"}
    with pytest.raises(InputError, match=r"--image 'ubuntu': expected publisher:offer:sku"):
        provider.launch(LaunchRequest(spec(name="other", image="ubuntu"), catalog)).result


def test_ssh_only_from_the_given_cidr_and_public_ip_on_request(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    res = provider.launch(LaunchRequest(spec(ssh_cidr="203.0.113.7/32", public_ip=True), catalog)).result
    rules = arm.bodies("networkSecurityGroups")["nestcloud-demo-nsg"]["properties"][
        "securityRules"]
    assert rules == [{"name": "nestcloud-ssh", "properties": {
        "priority": 1000, "direction": "Inbound", "access": "Allow", "protocol": "Tcp",
        "sourceAddressPrefix": "203.0.113.7/32", "sourcePortRange": "*",
        "destinationAddressPrefix": "*", "destinationPortRange": "22"}}]
    pip = arm.bodies("publicIPAddresses")["demo-0-pip"]
    assert pip["sku"] == {"name": "Standard"}
    nic = arm.bodies("networkInterfaces")["demo-0-nic"]
    ref = nic["properties"]["ipConfigurations"][0]["properties"]["publicIPAddress"]
    assert ref["id"].endswith("/publicIPAddresses/demo-0-pip")
    assert ref["properties"] == {"deleteOption": "Delete"}
    assert res.instances[0].public_ip and res.instances[0].public_ip.startswith("20.")


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0"])
def test_world_ssh_is_refused_before_any_request(provider: Any, arm: ArmFake, catalog: Catalog,
                                                 cidr: str) -> None:
    with pytest.raises(InputError) as err:
        provider.launch(LaunchRequest(spec(ssh_cidr=cidr), catalog))
    # The launcher's rule and message (nestcloud.launcher.check_ssh_cidr), as for AWS.
    assert str(err.value) == (
        f"--ssh-cidr {cidr!r} opens SSH to the whole internet\n  hint: use your own address "
        "(e.g. 203.0.113.7/32), or add --allow-world-ssh if you really mean it")
    assert err.value.exit_code == 2
    assert arm.requests == []


@pytest.mark.parametrize("cidr", ["*", "Internet"])
def test_nsg_service_tags_are_not_ssh_networks(cidr: str) -> None:
    from nestcloud.errors import SpecError

    with pytest.raises(SpecError, match=r"^ssh_cidr: not an IPv4 or IPv6 network"):
        spec(ssh_cidr=cidr)


def test_world_ssh_when_explicitly_allowed(provider: Any, arm: ArmFake, catalog: Catalog
                                          ) -> None:
    provider.launch(LaunchRequest(spec(ssh_cidr="0.0.0.0/0", allow_world_ssh=True), catalog)).result
    rule = arm.bodies("networkSecurityGroups")["nestcloud-demo-nsg"]["properties"][
        "securityRules"][0]
    assert rule["properties"]["sourceAddressPrefix"] == "*"


def test_bad_cidr_names_the_flag(provider: Any, catalog: Catalog) -> None:
    with pytest.raises(InputError, match=r"^ssh_cidr: not an IPv4 or IPv6 network"):
        spec(ssh_cidr="10.0.0.300/8")  # the schema refuses it first
    bad = spec().model_copy(update={"ssh_cidr": "10.0.0.300/8"})  # copies are not validated
    with pytest.raises(InputError, match=r"^--ssh-cidr '10.0.0.300/8': not an IPv4 or IPv6 "):
        provider.launch(LaunchRequest(bad, catalog))


def test_spot_fields(provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    provider.launch(LaunchRequest(spec(spot=True), catalog)).result
    props = arm.bodies("virtualMachines")["demo-0"]["properties"]
    assert props["priority"] == "Spot"
    assert props["evictionPolicy"] == "Delete"
    assert props["billingProfile"] == {"maxPrice": -1}


def test_ttl_sets_expiry_tag_and_auto_shutdown_schedule(provider: Any, arm: ArmFake,
                                                        catalog: Catalog) -> None:
    before = dt.datetime.now(dt.timezone.utc).replace(microsecond=0)
    res = provider.launch(LaunchRequest(spec(ttl_seconds=4 * 3600), catalog)).result
    vm = arm.bodies("virtualMachines")["demo-0"]
    expires = dt.datetime.strptime(vm["tags"]["nestcloud:expires"], "%Y-%m-%dT%H:%M:%SZ")\
        .replace(tzinfo=dt.timezone.utc)
    assert dt.timedelta(hours=4) <= expires - before <= dt.timedelta(hours=4, seconds=5)
    assert arm.groups["nestcloud-demo-eastus"]["tags"]["nestcloud:expires"] == \
        vm["tags"]["nestcloud:expires"]
    [put] = arm.writes("PUT", "schedules")
    assert put.path.endswith("/providers/Microsoft.DevTestLab/schedules/shutdown-computevm-demo-0")
    assert put.query["api-version"] == "2018-09-15"
    props = put.body["properties"]
    assert props["taskType"] == "ComputeVmShutdownTask"
    assert props["status"] == "Enabled"
    assert props["timeZoneId"] == "UTC"
    assert props["dailyRecurrence"] == {"time": expires.strftime("%H%M")}
    assert props["targetResourceId"] == res.instances[0].id
    assert res.instances[0].expires == vm["tags"]["nestcloud:expires"]


def test_windows_bootstrap_runs_through_custom_script_extension(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    res = provider.launch(LaunchRequest(spec(os="windows-2022", hypervisor="hyperv"), catalog)).result
    props = arm.bodies("virtualMachines")["demo-0"]["properties"]
    assert props["storageProfile"]["imageReference"]["sku"] == "2022-datacenter-g2"
    assert props["storageProfile"]["osDisk"]["diskSizeGB"] == 127
    osp = props["osProfile"]
    assert base64.b64decode(osp["customData"]) == b"Install-WindowsFeature Hyper-V # nc"
    assert "linuxConfiguration" not in osp
    assert len(osp["adminPassword"]) >= 12
    assert osp["computerName"] == "demo-0"
    ext = arm.bodies("extensions")["nestcloud-bootstrap"]["properties"]
    assert ext["publisher"] == "Microsoft.Compute"
    assert ext["type"] == "CustomScriptExtension"
    assert ext["typeHandlerVersion"] == "1.10"
    assert "CustomData.bin" in ext["protectedSettings"]["commandToExecute"]
    assert any("CustomScriptExtension" in n for n in res.notes)


def test_windows_names_fit_fifteen_characters(provider: Any, arm: ArmFake, catalog: Catalog
                                              ) -> None:
    provider.launch(LaunchRequest(spec(name="a-rather-long-lab-name", os="windows-2025", hypervisor="hyperv",
                         count=2), catalog)).result
    names = sorted(b["properties"]["osProfile"]["computerName"]
                   for b in arm.bodies("virtualMachines").values())
    assert names == ["a-rather-long-0", "a-rather-long-1"]
    assert all(len(n) <= 15 for n in names)
    image = arm.bodies("virtualMachines")["a-rather-long-lab-name-0"]["properties"][
        "storageProfile"]["imageReference"]
    assert image["sku"] == "2025-datacenter-g2"


def test_dry_run_sends_no_write_and_hides_the_password(provider: Any, arm: ArmFake,
                                                       catalog: Catalog) -> None:
    res = provider.launch(LaunchRequest(spec(os="windows-2022", hypervisor="hyperv", count=2,
                               public_ip=True, ttl_seconds=3600), catalog, dry_run=True)).result
    assert arm.writes() == []
    # Reads only: Resource SKUs, does the group exist, vCPU usage against quota, the image's
    # versions (`latest`) and the newest one's OS disk size.
    assert [(r.method, r.path.rsplit("/", 1)[-1]) for r in arm.requests] == [
        ("GET", "skus"), ("HEAD", "nestcloud-demo-eastus"), ("GET", "usages"),
        ("GET", "versions"), ("GET", "1.0.0")]
    ops = [r.operation for r in res.requests]
    # --public-ip gives every VM its way out: no NAT gateway.
    assert ops == ["resource_groups.create_or_update",
                   "network_security_groups.begin_create_or_update",
                   "virtual_networks.begin_create_or_update"] + [
        "public_ip_addresses.begin_create_or_update",
        "network_interfaces.begin_create_or_update",
        "virtual_machines.begin_create_or_update",
        "virtual_machine_extensions.begin_create_or_update",
        "resources.begin_create_or_update_by_id"] * 2
    vm = res.requests[5].params
    assert vm["id"].endswith("/virtualMachines/demo-0")
    assert vm["body"]["properties"]["osProfile"]["adminPassword"] == \
        "<generated at launch, never shown>"
    assert vm["body"]["properties"]["securityProfile"] == {"securityType": "Standard"}
    json.dumps(res.to_dict())  # the CLI prints it as JSON


def test_relaunch_converges_and_grows(provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    first = provider.launch(LaunchRequest(spec(count=2), catalog)).result
    n_writes = len(arm.writes())
    again = provider.launch(LaunchRequest(spec(count=2), catalog)).result
    assert len(arm.writes()) == n_writes  # nothing re-sent
    assert again.created == [] and sorted(again.reused) == sorted(first.created)
    grown = provider.launch(LaunchRequest(spec(count=3), catalog)).result
    new = arm.writes()[n_writes:]
    assert [r.path.rsplit("/", 1)[-1] for r in new] == ["demo-2-nic", "demo-2"]
    assert [i.rsplit("/", 1)[-1] for i in grown.created] == ["demo-2"]


def test_seats_are_created_concurrently(make_provider: Callable[..., Any], arm: ArmFake,
                                        catalog: Catalog, rendered: Any) -> None:
    arm.polls = 3
    res = make_provider(max_workers=4).launch(LaunchRequest(spec(count=4), catalog)).result
    assert len(res.created) == 4
    # Shared network first (one operation at a time), then seats overlap, never above 4.
    assert 2 <= arm.max_in_flight <= 4


def test_one_worker_creates_seats_one_by_one(make_provider: Callable[..., Any], arm: ArmFake,
                                             catalog: Catalog, rendered: Any) -> None:
    arm.polls = 2
    make_provider(max_workers=1).launch(LaunchRequest(spec(count=3), catalog)).result
    assert arm.max_in_flight == 1


def test_user_data_too_big_for_custom_data(make_provider: Callable[..., Any], arm: ArmFake,
                                           catalog: Catalog, monkeypatch: pytest.MonkeyPatch
                                           ) -> None:
    from nestcloud.bootstrap import RenderedUserData

    monkeypatch.setattr("nestcloud.bootstrap.render_user_data",
                        lambda *a, **k: RenderedUserData("cloud-config", b"x" * 70000, False))
    with pytest.raises(InputError, match="user data is 70000 bytes: Azure custom data takes "
                                         "at most 65535 bytes"):
        make_provider().launch(LaunchRequest(spec(), catalog)).result
    assert arm.writes() == []


def test_without_bootstrap_renderer_only_user_data_goes(make_provider: Callable[..., Any],
                                                        arm: ArmFake, catalog: Catalog,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    def missing(*a: Any, **k: Any) -> Any:
        raise NotImplementedError

    monkeypatch.setattr("nestcloud.bootstrap.render_user_data", missing)
    res = make_provider().launch(LaunchRequest(spec(user_data="#cloud-config\n{}\n"), catalog)).result
    props = arm.bodies("virtualMachines")["demo-0"]["properties"]
    assert base64.b64decode(props["osProfile"]["customData"]) == b"#cloud-config\n{}\n"
    assert any("bootstrap rendering is not available" in n for n in res.notes)
