"""What the GCP provider sends to Compute Engine, and what the user sees, against the GCE fake."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
from collections.abc import Callable
from typing import Any

import pytest
from conftest import fake_leftovers, gcp_catalog
from fakes.gce_fake import GceFake, load_machine_types

from nestcloud.catalog import Catalog
from nestcloud.errors import InputError, ProviderError, QuotaError, RefusedError
from nestcloud.provider import LaunchRequest
from nestcloud.spec import TAG_EXPIRES, TAG_NAME, TAG_OWNER, TAG_SEAT, LaunchSpec

REGION = "us-central1"
NOW = dt.datetime(2030, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def zones_of(machine_type: str, region: str = REGION) -> list[str]:
    """Zones the price file (the fake's source) offers the type in: never typed in here."""
    return sorted(z for r in load_machine_types() if r.name == machine_type for z in r.zones
                  if z.rsplit("-", 1)[0] == region)


def spec(name: str = "lab", count: int = 1, **kw: Any) -> LaunchSpec:
    kw.setdefault("type", "n2-standard-4")
    return LaunchSpec(provider="gcp", region=REGION, name=name, count=count, **kw)


def writes(gce: GceFake) -> list[Any]:
    """Every request that would change something (operation waits are POSTs, not writes)."""
    return [r for r in gce.requests if r.method in ("POST", "DELETE", "PATCH", "PUT")
            and not r.route.endswith(".wait")]


@pytest.fixture
def launch(provider: Any, catalog: Catalog) -> Callable[..., Any]:
    provider.clock = lambda: NOW

    def run(s: LaunchSpec, **kw: Any) -> Any:
        return provider.launch(LaunchRequest(s, catalog, **kw))

    return run


# -- what a launch sends -----------------------------------------------------------------------


def test_every_seat_asks_for_nesting_carries_labels_ttl_and_stays_off_default(
        gce: GceFake, launch: Callable[..., Any]) -> None:
    out = launch(spec(count=2, ttl_seconds=7200, tags={"team": "infra"}))
    assert len(out.result.created) == 2
    [net] = [r.body for r in gce.calls("networks.insert")]
    assert net["name"] == "nestcloud" and net["autoCreateSubnetworks"] is False
    [sub] = [r.body for r in gce.calls("subnetworks.insert")]
    assert sub["network"] == "global/networks/nestcloud"
    assert gce.calls("firewalls.insert") == []  # no ingress rule without --ssh-cidr
    sent = gce.sent_instances()
    assert sorted(b["name"] for b in sent) == ["lab-0", "lab-1"]
    for b in sent:
        assert b["advancedMachineFeatures"] == {"enableNestedVirtualization": True}
        seat = b["name"].rsplit("-", 1)[1]
        assert b["labels"] == {"team": "infra", "nestcloud-name": "lab",
                               "nestcloud-owner": b["labels"]["nestcloud-owner"],
                               "nestcloud-expires": "20300102t050500z",
                               "nestcloud-seat": seat}
        assert b["labels"]["nestcloud-owner"]
        [nic] = b["networkInterfaces"]
        assert nic["network"] == "global/networks/nestcloud"
        assert nic["subnetwork"] == f"regions/{REGION}/subnetworks/nestcloud-{REGION}"
        assert "default" not in json.dumps(nic)
        # The default egress: an ephemeral external IP, and no rule lets anything in.
        assert nic["accessConfigs"] == [{"type": "ONE_TO_ONE_NAT", "name": "External NAT"}]
        assert b["scheduling"] == {"provisioningModel": "STANDARD",
                                   "terminationTime": "2030-01-02T05:05:00Z",
                                   "instanceTerminationAction": "DELETE"}
        [disk] = b["disks"]
        assert disk["boot"] is True and disk["autoDelete"] is True
        assert disk["initializeParams"]["diskType"].endswith("/diskTypes/pd-balanced")
        assert disk["initializeParams"]["sourceImage"] == \
            "projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64"
        meta = {i["key"]: i["value"] for i in b["metadata"]["items"]}
        assert meta["enable-guest-attributes"] == "TRUE"
        assert "startup-script" not in meta  # Ubuntu: cloud-init reads user-data
        assert "#cloud-config" in meta["user-data"]
        assert "minCpuPlatform" not in b
    # No request of any kind mentioned the default network.
    assert all("networks/default" not in json.dumps(r.body) for r in writes(gce))


def test_what_ls_shows_comes_back_from_the_labels(gce: GceFake, provider: Any,
                                                  launch: Callable[..., Any]) -> None:
    out = launch(spec(count=2, ttl_seconds=3600, tags={"team": "infra"}))
    listed = provider.list("lab")
    assert [i.id for i in listed] == out.result.created
    first = listed[0]
    zone = zones_of("n2-standard-4")[0]
    assert first.id == f"projects/{gce.project}/zones/{zone}/instances/lab-0"
    assert (first.name, first.seat, first.zone, first.region, first.type, first.state,
            first.nested) == ("lab", 0, zone, REGION, "n2-standard-4", "running", True)
    assert first.tags[TAG_NAME] == "lab" and first.tags[TAG_SEAT] == "0"
    assert first.tags["team"] == "infra" and first.tags[TAG_OWNER]
    assert first.tags[TAG_EXPIRES] == first.expires == "2030-01-02T04:05:00Z"
    raw = gce.instance("lab-0")
    assert first.private_ip == raw["networkInterfaces"][0]["networkIP"]
    assert first.public_ip == raw["networkInterfaces"][0]["accessConfigs"][0]["natIP"]


def test_ssh_cidr_is_one_rule_on_the_groups_network_tag(gce: GceFake,
                                                         launch: Callable[..., Any]) -> None:
    launch(spec(ssh_cidr="203.0.113.7/32"))
    [fw] = [r.body for r in gce.calls("firewalls.insert")]
    assert fw == {"name": "nestcloud-lab-ssh", "network": "global/networks/nestcloud",
                  "direction": "INGRESS", "priority": 1000, "sourceRanges": ["203.0.113.7/32"],
                  "targetTags": ["nestcloud-lab"],
                  "allowed": [{"IPProtocol": "tcp", "ports": ["22"]}],
                  "description": "nestcloud:name=lab: SSH from --ssh-cidr only"}
    [b] = gce.sent_instances()
    assert b["tags"] == {"items": ["nestcloud-lab"]}


@pytest.mark.parametrize("cidr", ["0.0.0.0/0", "::/0", "8.0.0.0/6"])
def test_world_open_ssh_is_refused_before_anything_is_sent(
        gce: GceFake, launch: Callable[..., Any], cidr: str) -> None:
    with pytest.raises(InputError, match="opens SSH to"):
        launch(spec(ssh_cidr=cidr))
    assert gce.requests == []


def test_spot_is_provisioning_model_spot_deleted_when_reclaimed(
        gce: GceFake, launch: Callable[..., Any]) -> None:
    launch(spec(spot=True))
    [b] = gce.sent_instances()
    assert b["scheduling"] == {"provisioningModel": "SPOT",
                               "instanceTerminationAction": "DELETE"}


def test_n1_pins_a_haswell_or_later_cpu(gce: GceFake, launch: Callable[..., Any]) -> None:
    launch(spec(type="n1-standard-4"))
    [b] = gce.sent_instances()
    assert b["minCpuPlatform"] == "Intel Haswell"


@pytest.mark.parametrize("egress,external", [("nat", False), ("none", False),
                                              ("public-ip", True)])
def test_egress_modes(gce: GceFake, launch: Callable[..., Any], egress: str,
                      external: bool) -> None:
    out = launch(spec(egress=egress))
    [b] = gce.sent_instances()
    assert ("accessConfigs" in b["networkInterfaces"][0]) is external
    routers = [r.body for r in gce.calls("routers.insert")]
    if egress == "nat":
        assert routers == [{"name": f"nestcloud-nat-{REGION}",
                            "network": "global/networks/nestcloud",
                            "description": "nestcloud: Cloud NAT for --egress nat in this "
                                           "region",
                            "nats": [{"name": "nestcloud-nat", "natIpAllocateOption": "AUTO_ONLY",
                                      "sourceSubnetworkIpRangesToNat":
                                          "ALL_SUBNETWORKS_ALL_IP_RANGES"}]}]
    else:
        assert routers == []
    from providers.gcp import GcpProvider

    [note] = [n for n in out.result.notes if n.startswith("egress:")]
    assert note == GcpProvider.egress_cost(egress, 1).note  # the text the plan prices
    if egress == "none":
        assert "no route to the internet" in note


def test_public_ip_with_nat_adds_an_address_per_vm(gce: GceFake,
                                                   launch: Callable[..., Any]) -> None:
    launch(spec(egress="nat", public_ip=True))
    [b] = gce.sent_instances()
    assert b["networkInterfaces"][0]["accessConfigs"] == [{"type": "ONE_TO_ONE_NAT",
                                                            "name": "External NAT"}]


def test_no_egress_with_a_public_ip_is_contradictory(gce: GceFake,
                                                     launch: Callable[..., Any]) -> None:
    with pytest.raises(InputError, match="--egress none with --public-ip"):
        launch(spec(egress="none", public_ip=True))
    assert gce.requests == []


def test_egress_cost_prices_only_what_facts_knows() -> None:
    from providers.gcp import GcpProvider

    ip = GcpProvider.egress_cost(None, 4)
    assert ip is not None and ip.mode == "public-ip"
    assert ip.usd_per_hour == pytest.approx(4 * 0.005)  # FACTS: about $0.005/h, unconfirmed
    assert "unconfirmed" in ip.note and ip.price_date is None
    nat = GcpProvider.egress_cost("nat", 4)
    assert nat is not None and nat.usd_per_hour == 0.0
    assert "knows no confirmed figure" in nat.note and "not in the total" in nat.note
    none = GcpProvider.egress_cost("none", 4)
    assert none is not None and none.usd_per_hour == 0.0
    assert GcpProvider.capabilities.egress == ("public-ip", "nat", "none")


# -- bootstrap -----------------------------------------------------------------------------------


def _meta(body: dict[str, Any]) -> dict[str, str]:
    return {i["key"]: i["value"] for i in body["metadata"]["items"]}


def test_ubuntu_user_data_is_the_profile_with_the_report_after_the_check(
        gce: GceFake, launch: Callable[..., Any]) -> None:
    import yaml

    from nestcloud.bootstrap.profiles import L1CHECK_PATH

    launch(spec())
    [b] = gce.sent_instances()
    meta = _meta(b)
    assert "startup-script" not in meta
    assert meta["user-data"].startswith("#cloud-config\n")  # one part: no MIME of ours
    step = yaml.safe_load(meta["user-data"])["runcmd"][-1]
    assert step[:2] == ["sh", "-c"] and step[2].startswith(f"python3 {L1CHECK_PATH} ")
    # The report: the guest attribute nestcloud/l1 on the metadata server (FACTS "GCP").
    assert ("http://metadata.google.internal/computeMetadata/v1/instance/guest-attributes/"
            "nestcloud/l1") in step[2]


def test_ubuntu_user_data_keeps_the_users_part(gce: GceFake,
                                               launch: Callable[..., Any]) -> None:
    import email
    import email.policy

    launch(spec(user_data="#!/bin/sh\necho hello-from-user\n"))
    [b] = gce.sent_instances()
    msg = email.message_from_string(_meta(b)["user-data"], policy=email.policy.default)
    kinds = [p.get_content_type() for p in msg.walk() if not p.is_multipart()]
    assert kinds == ["text/cloud-config", "text/x-shellscript"]
    assert "hello-from-user" in _meta(b)["user-data"]


@pytest.mark.skipif(shutil.which("cloud-init") is None, reason="cloud-init is not installed")
def test_the_ubuntu_user_data_with_its_report_is_valid_cloud_config(
        gce: GceFake, launch: Callable[..., Any], tmp_path: Any) -> None:
    launch(spec())
    path = tmp_path / "user-data.yaml"
    path.write_text(_meta(gce.sent_instances()[0])["user-data"])
    proc = subprocess.run(["cloud-init", "schema", "--config-file", str(path)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "Valid cloud-config" in proc.stdout, proc.stdout


@pytest.mark.parametrize("os_alias,installer", [("debian-12", "apt-get"), ("rhel-9", "dnf")])
def test_debian_and_rhel_get_an_idempotent_startup_script(
        gce: GceFake, launch: Callable[..., Any], tmp_path: Any, os_alias: str,
        installer: str) -> None:
    from nestcloud.bootstrap.profiles import KVM_PACKAGES, L1CHECK_PATH

    launch(spec(os=os_alias))
    [b] = gce.sent_instances()
    meta = _meta(b)
    assert "user-data" not in meta  # no cloud-init on these images
    script = meta["startup-script"]
    assert script.startswith("#!/bin/bash\n")
    assert installer in script and " ".join(KVM_PACKAGES[os_alias]) in script
    assert L1CHECK_PATH in script
    assert f"sh -c 'python3 {L1CHECK_PATH} --profile kvm; rc=$?; (\n" in script
    # It exits with the check step's status (test_gcp_report: with the user's script).
    assert script.rstrip().splitlines()[-1] == 'exit "$nestcloud_rc"'
    path = tmp_path / "startup.sh"
    path.write_text(script)
    assert subprocess.run(["bash", "-n", str(path)], capture_output=True).returncode == 0
    assert b["disks"][0]["initializeParams"]["sourceImage"].startswith(
        {"debian-12": "projects/debian-cloud/", "rhel-9": "projects/rhel-cloud/"}[os_alias])


def test_the_startup_script_writes_the_profiles_files_exactly(tmp_path: Any) -> None:
    """Run only the file-writing lines of the script under a scratch root: the files come out
    byte for byte as the profile has them, and running them twice changes nothing."""
    import re

    import yaml

    from nestcloud.bootstrap import render_user_data
    from providers.gcp import GcpProvider
    from providers.gcp._guest import startup_script

    r = render_user_data(GcpProvider.capabilities.user_data, "debian-12", "kvm",
                         provider_name="gcp")
    cfg = yaml.safe_load(r.body)
    script = startup_script(cfg, "debian-12", None)
    root = tmp_path / "root"
    blocks = re.findall(r"mkdir -p .*?\nbase64 -d > .*?\nNESTCLOUD_B64\nchmod [^\n]*\n", script,
                        re.S)
    assert len(blocks) == len(cfg["write_files"])  # the report is a command, no file
    prog = "".join(blocks).replace(" /", f" {root}/").replace(" '/", f" '{root}/")
    for _ in range(2):
        subprocess.run(["bash", "-e", "-c", prog], check=True, capture_output=True)
    for f in cfg["write_files"]:
        got = (root / f["path"].lstrip("/")).read_text()
        assert got == f["content"]
        assert oct((root / f["path"].lstrip("/")).stat().st_mode & 0o777) == \
            oct(int(f.get("permissions", "0644"), 8))


def test_debian_takes_a_script_as_user_data_not_cloud_config(
        gce: GceFake, launch: Callable[..., Any]) -> None:
    with pytest.raises(InputError, match="no cloud-init"):
        launch(spec(os="debian-12", user_data="#cloud-config\npackages: [htop]\n"))
    assert gce.requests == []
    launch(spec(os="debian-12", user_data="#!/bin/sh\necho mine\n"))
    script = _meta(gce.sent_instances()[0])["startup-script"]
    assert "/var/lib/nestcloud/user-script.done" in script


@pytest.mark.parametrize("os_alias,hyp", [("windows-2022", "hyperv"), ("windows-2025", "wsl2")])
def test_windows_is_refused_with_the_reason(gce: GceFake, launch: Callable[..., Any],
                                            os_alias: str, hyp: str) -> None:
    with pytest.raises(RefusedError, match="only Linux KVM"):
        launch(spec(os=os_alias, hypervisor=hyp))
    assert gce.requests == []


def test_an_os_without_a_gcp_image_is_bad_input(gce: GceFake,
                                                launch: Callable[..., Any]) -> None:
    with pytest.raises(InputError, match="no public image"):
        launch(spec(os="al2023", hypervisor="firecracker"))
    assert gce.requests == []


# -- refusals and pre-checks ---------------------------------------------------------------------


@pytest.mark.parametrize("type_name", ["e2-standard-4", "n2d-standard-4", "t2a-standard-4"])
def test_types_that_cannot_nest_are_refused_before_any_call(
        gce: GceFake, launch: Callable[..., Any], type_name: str) -> None:
    with pytest.raises(RefusedError, match="cannot run a hypervisor"):
        launch(spec(type=type_name))
    assert gce.requests == []


def test_tags_that_are_not_labels_are_bad_input_naming_them(
        gce: GceFake, launch: Callable[..., Any]) -> None:
    with pytest.raises(InputError) as e:
        launch(spec(tags={"Team": "x", "cost-center": "Big Spender", "nestcloud-name": "y"}))
    msg = str(e.value)
    assert "'Team'" in msg and "'cost-center'" in msg and "'nestcloud-name'" in msg
    assert "Big Spender" not in msg  # values are never echoed
    assert gce.requests == []


def test_quota_is_read_before_any_write(gce: GceFake, launch: Callable[..., Any]) -> None:
    gce.set_quota(REGION, "N2_CPUS", 6)
    with pytest.raises(QuotaError) as e:
        launch(spec(count=2))
    assert e.value.scope == "region"
    assert "N2_CPUS" in e.value.message and "0 of 6 in use" in e.value.message
    assert writes(gce) == []
    assert [r.route for r in gce.requests][0] == "regions.get"


def test_vcpu_quota_reads_the_familys_metric(gce: GceFake, provider: Any) -> None:
    gce.set_quota(REGION, "N2_CPUS", 40)
    q = provider.vcpu_quota(REGION, "n2-standard-4")
    assert q.limit == 40 and q.how == "regions.get N2_CPUS (0 in use)"
    n1 = provider.vcpu_quota(REGION, "n1-standard-4")
    assert n1.limit == gce.quota_limits[REGION]["CPUS"] and "CPUS" in n1.how
    assert provider.vcpu_quota("nowhere-1", "n2-standard-4").limit is None


def test_org_policy_is_an_account_error_naming_the_constraint(
        gce: GceFake, launch: Callable[..., Any]) -> None:
    gce.disable_nested_by_org_policy()
    with pytest.raises(ProviderError) as e:
        launch(spec(ssh_cidr="203.0.113.7/32"))
    assert e.value.scope == "account"
    assert e.value.code == "constraints/compute.disableNestedVirtualization"
    assert "organization policy constraints/compute.disableNestedVirtualization" in \
        e.value.message
    assert gce.project in (e.value.hint or "")
    assert fake_leftovers(gce, "lab") == []  # its SSH rule was rolled back
    assert e.value.outcome is not None and e.value.outcome.created_any is False


def test_a_vm_that_reports_nesting_off_is_deleted_and_the_launch_fails(
        gce: GceFake, launch: Callable[..., Any], monkeypatch: pytest.MonkeyPatch) -> None:
    from fakes import gce_fake

    real = gce_fake._Handler._instance_view

    def view(self: Any, key: tuple[str, str]) -> dict[str, Any]:
        out = real(self, key)
        out["advancedMachineFeatures"] = {"enableNestedVirtualization": False}
        return out

    monkeypatch.setattr(gce_fake._Handler, "_instance_view", view)
    with pytest.raises(ProviderError) as e:
        launch(spec(count=2))
    assert e.value.scope == "type" and "enableNestedVirtualization off" in e.value.message
    assert "rolled back" in e.value.message
    assert gce.instances == {} and len(gce.calls("instances.delete")) == 2


# -- reconcile -----------------------------------------------------------------------------------


def test_an_instance_another_run_made_meanwhile_is_reused(
        gce: GceFake, provider: Any, catalog: Catalog, monkeypatch: pytest.MonkeyPatch) -> None:
    provider.launch(LaunchRequest(spec(count=1), catalog))
    real = provider._raw_instances
    calls = {"n": 0}

    def stale(name: Any, region: Any) -> Any:  # the plan's listing misses seat 0
        calls["n"] += 1
        return [] if calls["n"] == 1 else real(name, region)

    monkeypatch.setattr(provider, "_raw_instances", stale)
    out = provider.launch(LaunchRequest(spec(count=2), catalog))
    assert len(out.result.created) == 1 and len(out.result.instances) == 2
    assert out.found_live == (out.result.reused[0],)
    assert len(gce.instances) == 2


def test_a_name_taken_by_someone_else_is_refused_and_ours_rolled_back(
        gce: GceFake, launch: Callable[..., Any], gce_client: Any) -> None:
    from fakes.gce_fake import wait_done
    from google.cloud import compute_v1 as c

    zone = zones_of("n2-standard-4")[0]
    ops = gce_client(c.ZoneOperationsClient)
    body = c.Instance.from_json(json.dumps({
        "name": "lab-1", "machineType": f"zones/{zone}/machineTypes/n2-standard-4",
        "networkInterfaces": [{"network": "global/networks/default"}],
        "disks": [{"boot": True, "initializeParams": {"sourceImage": "x"}}]}))
    wait_done(ops, gce_client(c.InstancesClient).insert_unary(
        project=gce.project, zone=zone, instance_resource=body), project=gce.project, zone=zone)
    with pytest.raises(InputError, match="did not create"):
        launch(spec(count=2))
    assert sorted(n for _, n in gce.instances) == ["lab-1"]  # theirs stays, ours is gone


def test_a_stopped_seat_blocks_its_name(gce: GceFake, launch: Callable[..., Any]) -> None:
    launch(spec())
    gce.instances[next(iter(gce.instances))]["status"] = "TERMINATED"
    with pytest.raises(InputError, match=r"lab-0 \(terminated\)"):
        launch(spec())


def test_dry_run_shows_exactly_what_the_launch_then_sends(
        gce: GceFake, launch: Callable[..., Any]) -> None:
    dry = launch(spec(count=2, ttl_seconds=3600, ssh_cidr="203.0.113.0/24",
                      tags={"team": "x"}), dry_run=True).result
    assert writes(gce) == [] and dry.dry_run and dry.created == []
    ops = [r.operation for r in dry.requests]
    assert ops == ["networks.insert", "subnetworks.insert", "firewalls.insert",
                   "instances.insert", "instances.insert"]
    launch(spec(count=2, ttl_seconds=3600, ssh_cidr="203.0.113.0/24", tags={"team": "x"}))
    sent = {"networks.insert": [r.body for r in gce.calls("networks.insert")],
            "subnetworks.insert": [r.body for r in gce.calls("subnetworks.insert")],
            "firewalls.insert": [r.body for r in gce.calls("firewalls.insert")],
            "instances.insert": sorted(gce.sent_instances(), key=lambda b: b["name"])}
    for op, bodies in sent.items():  # seats go out in parallel: compared in seat order
        assert [r.params["body"] for r in dry.requests if r.operation == op] == bodies, op


def test_dry_run_above_the_fleet_threshold_is_one_bulk_insert(
        gce: GceFake, provider: Any, launch: Callable[..., Any]) -> None:
    n = provider.fleet_threshold + 1
    dry = launch(spec(count=n), dry_run=True).result
    [bulk] = [r for r in dry.requests if r.operation == "regionInstances.bulkInsert"]
    body = bulk.params["body"]
    assert body["count"] == body["minCount"] == str(n)
    assert sorted(body["perInstanceProperties"]) == sorted(f"lab-{s}" for s in range(n))
    assert body["instanceProperties"]["machineType"] == "n2-standard-4"  # a bare name
    assert body["instanceProperties"]["advancedMachineFeatures"] == \
        {"enableNestedVirtualization": True}
    assert writes(gce) == []
    launch(spec(count=n))
    [sent] = [r.body for r in gce.calls("regionInstances.bulkInsert")]
    assert sent == body


# -- ttl, console, down, leftovers, verify ------------------------------------------------------


def test_the_cloud_deletes_expired_vms_itself(gce: GceFake, provider: Any,
                                              launch: Callable[..., Any]) -> None:
    launch(spec(count=2, ttl_seconds=3600))
    assert gce.expire_due(NOW + dt.timedelta(minutes=59)) == []
    assert sorted(gce.expire_due(NOW + dt.timedelta(hours=1, minutes=1))) == ["lab-0", "lab-1"]
    assert provider.list("lab") == []


def test_wait_reads_the_guest_attribute_then_the_serial_console(
        gce: GceFake, provider: Any, launch: Callable[..., Any]) -> None:
    from nestcloud.bootstrap.wait import wait_for_ready

    out = launch(spec(count=2)).result
    ready = {"status": "ready", "profile": "kvm", "checks": {"kvm": {"ok": True}}, "failed": []}
    gce.set_guest_attribute("lab-0", "nestcloud/l1", json.dumps(ready))
    gce.append_serial_output("lab-1", "boot...\nNESTCLOUD-L1 " + json.dumps(
        {"status": "failed", "checks": {"kvm": {"ok": False, "detail": "no /dev/kvm"}},
         "failed": ["kvm"]}) + "\n")
    assert provider.console(out.instances[0]).startswith("NESTCLOUD-L1 {")
    report = wait_for_ready(provider, out.instances, timeout_s=5, interval_s=0.01)
    assert [(r.name, r.status) for r in report.instances] == [("lab", "ready"),
                                                              ("lab", "failed")]
    assert report.instances[1].failed_checks == ["kvm: no /dev/kvm"]
    reads = gce.calls("instances.getGuestAttributes")
    assert reads and all(r.query.get("variableKey") == "nestcloud/l1" for r in reads)


def test_console_of_a_gone_vm_is_empty(gce: GceFake, provider: Any,
                                       launch: Callable[..., Any]) -> None:
    inst = launch(spec()).result.instances[0]
    gce.instances.clear()
    assert provider.console(inst) == ""


def test_down_removes_vms_rule_and_addresses_and_keeps_the_network(
        gce: GceFake, provider: Any, launch: Callable[..., Any], gce_client: Any) -> None:
    from fakes.gce_fake import wait_done
    from google.cloud import compute_v1 as c

    launch(spec(count=2, ssh_cidr="203.0.113.7/32"))
    addr = c.Address(name="lab-ip", labels={"nestcloud-name": "lab"})
    wait_done(gce_client(c.RegionOperationsClient), gce_client(c.AddressesClient).insert_unary(
        project=gce.project, region=REGION, address_resource=addr), project=gce.project,
        region=REGION)
    gone = provider.down("lab")
    assert len(gone.terminated) == 2
    assert gone.deleted == [f"projects/{gce.project}/global/firewalls/nestcloud-lab-ssh",
                            f"projects/{gce.project}/regions/{REGION}/addresses/lab-ip"]
    assert any("shared network nestcloud" in n for n in gone.notes)
    assert fake_leftovers(gce, "lab") == []
    assert "nestcloud" in gce.networks  # shared, documented
    again = provider.down("lab")
    assert again.terminated == [] and again.deleted == []
    assert again.notes == [f"nothing named 'lab' in {REGION} in project {gce.project}"]


def test_leftovers_are_rules_of_names_without_vms(gce: GceFake, provider: Any,
                                                  launch: Callable[..., Any]) -> None:
    launch(spec(name="gone", ssh_cidr="203.0.113.7/32"))
    launch(spec(name="kept", ssh_cidr="203.0.113.7/32"))
    for key in [k for k in gce.instances if k[1] == "gone-0"]:
        gce.instances.pop(key)
    rows = provider.leftovers(None, provider.list())
    assert rows == [{"provider": "gcp", "name": "gone", "region": "global",
                     "kind": "firewall",
                     "id": f"projects/{gce.project}/global/firewalls/nestcloud-gone-ssh"}]
    assert provider.leftovers("kept") == []
    provider.down("gone")
    assert provider.leftovers() == []


def test_verify_catalog_agrees_with_machine_types_and_names_differences(
        gce: GceFake, provider: Any) -> None:
    cat = gcp_catalog()
    ok = provider.verify_catalog(cat, REGION)
    assert ok.ok and ok.checked == len([t for t in cat.of("gcp") if REGION in t.regions])
    assert gce.calls("machineTypes.aggregatedList")
    wrong = cat.replace(types=[t.replace(vcpus=t.vcpus + 1) if t.name == "n2-standard-4" else t
                               for t in cat.types])
    res = provider.verify_catalog(wrong, REGION)
    assert [(d.type, d.field, d.catalog, d.live) for d in res.diffs] == \
        [("n2-standard-4", "vcpus", 5, 4)]


# -- construction ----------------------------------------------------------------------------------


def test_a_loopback_endpoint_gets_anonymous_credentials_and_needs_a_project(
        gce: GceFake, monkeypatch: pytest.MonkeyPatch) -> None:
    from google.auth.credentials import AnonymousCredentials

    from providers.gcp import GcpProvider

    def no_adc(*a: Any, **k: Any) -> Any:
        raise AssertionError("Application Default Credentials must not be read")

    monkeypatch.setattr("google.auth.default", no_adc)
    p = GcpProvider(region=REGION, project=gce.project, gcp_endpoint=gce.url)
    assert isinstance(p.api.credentials, AnonymousCredentials)
    with pytest.raises(InputError, match="no GCP project"):
        _ = GcpProvider(region=REGION, gcp_endpoint=gce.url).api


@pytest.mark.parametrize("endpoint", ["http://compute.example.com", "ftp://127.0.0.1:1",
                                      "not a url"])
def test_endpoints_that_would_leak_credentials_are_refused(endpoint: str) -> None:
    from providers.gcp import GcpProvider

    with pytest.raises(InputError, match="--gcp-endpoint"):
        GcpProvider(region=REGION, project="p-123456", gcp_endpoint=endpoint)


def test_project_from_the_environment_and_its_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    from providers.gcp import GcpProvider

    monkeypatch.setenv("GOOGLE_CLOUD_PROJECT", "env-project-1")
    assert GcpProvider(region=REGION)._project == "env-project-1"
    with pytest.raises(InputError, match="not a project id"):
        GcpProvider(region=REGION, project="../../evil")


def test_configured_looks_for_settings_without_calling_anything(
        monkeypatch: pytest.MonkeyPatch, tmp_path: Any) -> None:
    from providers.gcp import GcpProvider

    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path))
    monkeypatch.delenv("GOOGLE_APPLICATION_CREDENTIALS", raising=False)
    assert GcpProvider.configured() is False
    assert GcpProvider.configured(project="p-123456") is True
    (tmp_path / "application_default_credentials.json").write_text("{}")
    assert GcpProvider.configured() is True


def test_importing_the_provider_imports_no_google_module() -> None:
    import sys

    code = ("import sys, providers.gcp as g; caps = g.GcpProvider.capabilities; "
            "opts = g.GcpProvider.options; "
            "print([m for m in sys.modules if m == 'google' or m.startswith('google.')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_the_class_declares_its_hooks_and_options() -> None:
    from providers.gcp import GcpProvider
    from providers.gcp.pricing import PRICE_SOURCE

    caps = GcpProvider.capabilities
    assert (caps.rules, caps.access_policy, caps.native_ttl, caps.quota, caps.leftovers) == \
        (True, True, True, True, True)
    assert caps.prices == PRICE_SOURCE and caps.windows is False
    assert caps.user_data.windows == "unsupported"
    assert [(o.name, o.flag, o.envvar) for o in GcpProvider.options] == [
        ("project", "--project", "GOOGLE_CLOUD_PROJECT"),
        ("gcp_endpoint", "--gcp-endpoint", "NESTCLOUD_GCP_ENDPOINT")]
    for hook in ("rules", "egress_cost", "fetch_prices", "access_policy"):
        assert callable(getattr(GcpProvider, hook))


def test_the_class_hooks_call_the_modules(monkeypatch: pytest.MonkeyPatch) -> None:
    from nestcloud.provider import AccessPolicy, PriceFetch
    from providers.gcp import GcpProvider, iam, pricing, rules

    seen: list[Any] = []
    monkeypatch.setattr(rules, "rules", lambda s, c, e: seen.append(("rules", s)) or [])
    monkeypatch.setattr(pricing, "fetch_prices",
                        lambda regions, shapes=None: seen.append(
                            ("prices", tuple(regions), shapes)) or PriceFetch(table={}))
    monkeypatch.setattr(iam, "access_policy",
                        lambda instance_role=None, l1=False: seen.append(("iam", l1)) or
                        AccessPolicy(document={}, explain=""))
    s = spec()
    assert GcpProvider.rules(s, gcp_catalog(), None) == []
    cat = gcp_catalog()
    assert GcpProvider.fetch_prices(["us-central1"], cat).table == {}
    assert GcpProvider.access_policy(l1=True).explain == ""
    shapes = {t.name: (t.vcpus, t.memory_gib) for t in cat.of("gcp")}
    assert seen == [("rules", s), ("prices", ("us-central1",), shapes), ("iam", True)]
