"""The Azure OS disk is never smaller than the image's own disk (issue 11).

Azure refuses a diskSizeGB below the image's OS disk ("The specified disk size 30 GB is smaller
than the size of the corresponding disk in the VM image: 32 GB", error OperationNotAllowed,
target osDisk.diskSizeGB). nestcloud reads the image first (VirtualMachineImages list for
``latest``, then get) and asks for max(--disk-gib, image size).
"""

from __future__ import annotations

from typing import Any

import pytest
from conftest import SSH_KEY
from fakes.arm_fake import ArmFake

from nestcloud.provider import LaunchRequest
from nestcloud.catalog import Catalog
from nestcloud.errors import InputError, QuotaError, UnsupportedError
from nestcloud.spec import LaunchSpec
from providers.azure import errors, plan


def spec(**kw: Any) -> LaunchSpec:
    base: dict[str, Any] = {"provider": "azure", "type": "Standard_D2s_v6", "region": "eastus",
                            "name": "demo", "key_name": SSH_KEY}
    base.update(kw)
    return LaunchSpec(**base)


def disk_gib(arm: ArmFake, vm: str = "demo-0") -> int:
    return int(arm.bodies("virtualMachines")[vm]["properties"]["storageProfile"]["osDisk"][
        "diskSizeGB"])


def image_reads(arm: ArmFake) -> list[str]:
    return [r.path.split("/publishers/", 1)[1] for r in arm.requests
            if r.method == "GET" and "/publishers/" in r.path.lower()]


def test_a_64_gib_image_gets_a_64_gib_disk(provider: Any, arm: ArmFake,
                                           catalog: Catalog) -> None:
    arm.add_image("RedHat:RHEL:9-lvm-gen2", {"9.4.2024081415": 64, "9.10.2026010100": 64,
                                              "9.5.2025010100": 32})
    res = provider.launch(LaunchRequest(spec(os="rhel-9"), catalog)).result
    assert disk_gib(arm) == 64
    # `latest` is the newest version by number (9.10 after 9.5), read after listing them.
    assert image_reads(arm) == [
        "RedHat/artifacttypes/vmimage/offers/RHEL/skus/9-lvm-gen2/versions",
        "RedHat/artifacttypes/vmimage/offers/RHEL/skus/9-lvm-gen2/versions/9.10.2026010100"]
    # The VM still asks for `latest`: the image is not pinned by this read.
    assert arm.bodies("virtualMachines")["demo-0"]["properties"]["storageProfile"][
        "imageReference"]["version"] == "latest"
    [note] = [n for n in res.notes if n.startswith("OS disk:")]
    assert note == ("OS disk: 64 GiB instead of the 30 GiB asked for: the image "
                    "RedHat:RHEL:9-lvm-gen2:9.10.2026010100 has a 64 GiB disk, and Azure "
                    "refuses a smaller one")


def test_a_bigger_request_than_the_image_is_kept(provider: Any, arm: ArmFake,
                                                 catalog: Catalog) -> None:
    arm.add_image("Canonical:ubuntu-24_04-lts:server", {"24.04.202601010": 30})
    res = provider.launch(LaunchRequest(spec(disk_gib=100), catalog)).result
    assert disk_gib(arm) == 100
    assert not [n for n in res.notes if n.startswith("OS disk:")]


def test_an_explicit_version_is_read_without_listing(provider: Any, arm: ArmFake,
                                                     catalog: Catalog) -> None:
    arm.add_image("Contoso:hv:l1", {"1.2.3": 48, "2.0.0": 200})
    provider.launch(LaunchRequest(spec(image="Contoso:hv:l1:1.2.3"), catalog)).result
    assert image_reads(arm) == ["Contoso/artifacttypes/vmimage/offers/hv/skus/l1/versions/1.2.3"]
    assert disk_gib(arm) == 48


def test_every_seat_gets_the_raised_size_and_the_image_is_read_once(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.add_image("RedHat:RHEL:9-lvm-gen2", {"9.4.1": 64})
    provider.launch(LaunchRequest(spec(os="rhel-9", count=3), catalog)).result
    assert [disk_gib(arm, f"demo-{s}") for s in range(3)] == [64, 64, 64]
    assert len(image_reads(arm)) == 2  # one list, one get


def test_dry_run_shows_the_raised_size(provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.add_image("RedHat:RHEL:9-lvm-gen2", {"9.4.1": 64})
    res = provider.launch(LaunchRequest(spec(os="rhel-9"), catalog, dry_run=True)).result
    vm = next(r for r in res.requests if r.operation == "virtual_machines.begin_create_or_update")
    assert vm.params["body"]["properties"]["storageProfile"]["osDisk"]["diskSizeGB"] == 64
    assert arm.writes() == []


def test_an_image_that_reports_no_size_keeps_the_request_and_says_so(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.add_image("Canonical:ubuntu-24_04-lts:server", {"24.04.1": None})
    res = provider.launch(LaunchRequest(spec(), catalog)).result
    assert disk_gib(arm) == 30
    [note] = [n for n in res.notes if n.startswith("OS disk:")]
    assert "does not report its disk size" in note and "--disk-gib" in note


def test_windows_keeps_its_127_gib_floor_when_the_image_says_nothing(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.add_image("MicrosoftWindowsServer:WindowsServer:2022-datacenter-g2", {"1.0": None},
                  os_type="Windows")
    provider.launch(LaunchRequest(spec(os="windows-2022", hypervisor="hyperv"), catalog)).result
    assert disk_gib(arm) == 127


def test_an_image_that_does_not_exist_is_refused_before_any_write(
        provider: Any, arm: ArmFake, catalog: Catalog) -> None:
    arm.strict_images = True
    with pytest.raises(InputError) as err:
        provider.launch(LaunchRequest(spec(image="Nobody:nothing:here:latest"), catalog)).result
    assert str(err.value).startswith("image Nobody:nothing:here:latest: not found in eastus")
    assert err.value.exit_code == 2
    assert arm.writes() == []


def test_a_failed_image_read_costs_only_the_check(provider: Any, arm: ArmFake,
                                                  catalog: Catalog) -> None:
    # E.g. a custom role made before nestcloud read images: the launch goes on, and says so.
    arm.fault("GET", r"/artifacttypes/vmimage/", 403, "AuthorizationFailed", times=None)
    res = provider.launch(LaunchRequest(spec(), catalog)).result
    assert disk_gib(arm) == 30
    [note] = [n for n in res.notes if n.startswith("OS disk:")]
    assert note.startswith("OS disk: could not read the image Canonical:ubuntu-24_04-lts:server")
    assert "asking for 30 GiB" in note


@pytest.mark.parametrize(("disk", "want"), [
    ({"operatingSystem": "Linux", "sizeInGb": 64}, 64),
    ({"operatingSystem": "Linux", "sizeInBytes": 30 * 2**30}, 30),
    ({"operatingSystem": "Linux", "sizeInBytes": 30 * 2**30 + 1}, 31),
    ({"operatingSystem": "Linux"}, None),
    ({"operatingSystem": "Linux", "sizeInGb": None}, None),
    ({"operatingSystem": "Linux", "sizeInGb": "64"}, None),
    ({"operatingSystem": "Linux", "sizeInGb": True}, None),
    ({"operatingSystem": "Linux", "sizeInGb": -1}, None),
])
def test_image_disk_size_from_the_image_json(disk: dict[str, Any], want: int | None) -> None:
    assert plan.image_os_disk_gib({"properties": {"osDiskImage": disk}}) == want


@pytest.mark.parametrize(("versions", "newest"), [
    (["9.5.2025010100", "9.10.2026010100", "9.4.2024081415"], "9.10.2026010100"),
    (["24.04.202601010", "24.04.202512120"], "24.04.202601010"),
    (["1.0.0", "1.0.0-beta", "0.9"], "1.0.0"),
])
def test_newest_image_version(versions: list[str], newest: str) -> None:
    assert plan.newest_version(versions) == newest


def test_disk_too_small_is_not_reported_as_a_quota_problem() -> None:
    # What Azure answers when diskSizeGB is below the image's (OperationNotAllowed is also a
    # quota code, so the target decides).
    err = errors.translate_code("OperationNotAllowed", "The specified disk size 30 GB is "
                                "smaller than the size of the corresponding disk in the VM "
                                "image: 64 GB.", 409, "seat 0: creating demo-0",
                                target="osDisk.diskSizeGB")
    assert isinstance(err, UnsupportedError) and not isinstance(err, QuotaError)
    assert "--disk-gib" in (err.hint or "")
    quota = errors.translate_code("OperationNotAllowed", "cores quota", 409, "creating")
    assert isinstance(quota, QuotaError)
