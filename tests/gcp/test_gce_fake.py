"""The GCE fake, driven by the real google-cloud-compute client (REST transport).

These tests are the fake's contract for the GCP provider's author: every endpoint and knob is
exercised through the real client, every answer is parsed strictly against the client's own
message types, and no packet leaves loopback (the ``loopback_only`` guard fails any lookup or
connection elsewhere).
"""

from __future__ import annotations

import json
from collections import Counter
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest

compute_v1 = pytest.importorskip("google.cloud.compute_v1")

from google.api_core import exceptions as gexc  # noqa: E402
from google.api_core import retry as gretry  # noqa: E402
from google.protobuf import json_format  # noqa: E402

from fakes.gce_fake import (  # noqa: E402
    CPU_METRIC,
    PROJECT,
    PROJECT_NUMBER,
    GceFake,
    MachineTypeRow,
    load_machine_types,
    make_client,
    wait_done,
)

P = PROJECT
REGION = "us-central1"
ROWS = load_machine_types()


def zones_of(machine_type: str, region: str = REGION) -> list[str]:
    """Zones the price file offers ``machine_type`` in, in ``region`` (never hard-coded)."""
    return sorted(z for r in ROWS if r.name == machine_type for z in r.zones
                  if z.rsplit("-", 1)[0] == region)


def row_of(machine_type: str) -> MachineTypeRow:
    return next(r for r in ROWS if r.name == machine_type)


ZONE = zones_of("n2-standard-4")[0]
OTHER_ZONE = zones_of("n2-standard-4")[1]
DONE = compute_v1.Operation.Status.DONE


@pytest.fixture
def cx(gce: GceFake, gce_client: Any) -> SimpleNamespace:
    c = compute_v1
    return SimpleNamespace(
        instances=gce_client(c.InstancesClient),
        region_instances=gce_client(c.RegionInstancesClient),
        zone_ops=gce_client(c.ZoneOperationsClient),
        region_ops=gce_client(c.RegionOperationsClient),
        global_ops=gce_client(c.GlobalOperationsClient), networks=gce_client(c.NetworksClient),
        subnetworks=gce_client(c.SubnetworksClient), firewalls=gce_client(c.FirewallsClient),
        routers=gce_client(c.RoutersClient), addresses=gce_client(c.AddressesClient),
        regions=gce_client(c.RegionsClient), zones=gce_client(c.ZonesClient),
        machine_types=gce_client(c.MachineTypesClient))


def instance(name: str, *, zone: str = ZONE, machine_type: str = "n2-standard-4",
             nested: bool = True, labels: dict[str, str] | None = None,
             metadata: dict[str, str] | None = None, spot: bool = False,
             scheduling: Any = None, nic: Any = None) -> Any:
    c = compute_v1
    sched = scheduling or c.Scheduling(provisioning_model="SPOT" if spot else "STANDARD")
    return c.Instance(
        name=name, machine_type=f"zones/{zone}/machineTypes/{machine_type}",
        advanced_machine_features=c.AdvancedMachineFeatures(enable_nested_virtualization=nested),
        labels=labels or {"nestcloud-name": "lab"},
        metadata=c.Metadata(items=[c.Items(key=k, value=v) for k, v in
                                   (metadata or {"enable-guest-attributes": "TRUE"}).items()]),
        scheduling=sched,
        network_interfaces=[nic or c.NetworkInterface(network="global/networks/default")],
        disks=[c.AttachedDisk(
            boot=True, auto_delete=True, initialize_params=c.AttachedDiskInitializeParams(
                source_image="projects/ubuntu-os-cloud/global/images/family/ubuntu-2404-lts-amd64",
                disk_type=f"zones/{zone}/diskTypes/pd-balanced"))])


def insert(cx: SimpleNamespace, body: Any, zone: str = ZONE, request_id: str | None = None,
           **kw: Any) -> Any:
    req = compute_v1.InsertInstanceRequest(project=P, zone=zone, instance_resource=body)
    if request_id:
        req.request_id = request_id
    return cx.instances.insert_unary(request=req, **kw)


def insert_done(cx: SimpleNamespace, body: Any, zone: str = ZONE) -> Any:
    return wait_done(cx.zone_ops, insert(cx, body, zone), project=P, zone=zone)


def bulk(cx: SimpleNamespace, *, count: int, min_count: int | None = None,
         machine_type: str = "n2-standard-4", pattern: str | None = "lab-####",
         names: list[str] | None = None, shape: str | None = None,
         deny: tuple[str, ...] = (), nested: bool = True) -> Any:
    c = compute_v1
    props = c.InstanceProperties(
        machine_type=machine_type,
        advanced_machine_features=c.AdvancedMachineFeatures(enable_nested_virtualization=nested),
        labels={"nestcloud-name": "lab"},
        network_interfaces=[c.NetworkInterface(network="global/networks/default")],
        disks=[c.AttachedDisk(
            boot=True, auto_delete=True, initialize_params=c.AttachedDiskInitializeParams(
                source_image="projects/debian-cloud/global/images/family/debian-12"))])
    res = c.BulkInsertInstanceResource(count=count, instance_properties=props)
    if min_count is not None:
        res.min_count = min_count
    if pattern:
        res.name_pattern = pattern
    if names:
        res.per_instance_properties = {
            n: c.BulkInsertInstanceResourcePerInstanceProperties(name=n) for n in names}
    if shape or deny:
        res.location_policy = c.LocationPolicy(
            target_shape=shape or "ANY",
            locations={f"zones/{z}": c.LocationPolicyLocation(preference="DENY") for z in deny})
    return cx.region_instances.bulk_insert_unary(project=P, region=REGION,
                                                 bulk_insert_instance_resource_resource=res)


def guest(cx: SimpleNamespace, name: str, zone: str = ZONE, **kw: Any) -> Any:
    return cx.instances.get_guest_attributes(request={"project": P, "zone": zone,
                                                      "instance": name, **kw})


def serial(cx: SimpleNamespace, name: str, zone: str = ZONE, **kw: Any) -> Any:
    return cx.instances.get_serial_port_output(request={"project": P, "zone": zone,
                                                        "instance": name, **kw})


def all_instances(cx: SimpleNamespace) -> dict[str, Any]:
    return {i.name: i for _, scoped in cx.instances.aggregated_list(project=P)
            for i in scoped.instances}


def quota(cx: SimpleNamespace, metric: str, region: str = REGION) -> tuple[float, float]:
    q = next(q for q in cx.regions.get(project=P, region=region).quotas if q.metric == metric)
    return q.limit, q.usage


# -- instances: insert, operations, get, list, delete --------------------------------------


def test_insert_is_pending_then_waiting_reaches_done_and_get_shows_what_was_sent(
        gce: GceFake, cx: SimpleNamespace, loopback_only: list[str]) -> None:
    c = compute_v1
    body = instance("lab-1", scheduling=c.Scheduling(
        instance_termination_action="DELETE", max_run_duration=c.Duration(seconds=7200),
        provisioning_model="STANDARD"), metadata={"enable-guest-attributes": "TRUE",
                                                  "user-data": "#cloud-config\n"})
    body.min_cpu_platform = "Intel Haswell"
    op = insert(cx, body)
    assert op.status == c.Operation.Status.PENDING
    assert op.operation_type == "insert"
    assert op.target_link.endswith(f"/zones/{ZONE}/instances/lab-1")
    assert cx.instances.get(project=P, zone=ZONE, instance="lab-1").status == "PROVISIONING"

    first = cx.zone_ops.wait(project=P, zone=ZONE, operation=op.name)
    assert first.status == c.Operation.Status.RUNNING  # one wait is not enough: loops are exercised
    assert cx.instances.get(project=P, zone=ZONE, instance="lab-1").status == "STAGING"
    done = cx.zone_ops.get(project=P, zone=ZONE, operation=op.name)
    assert done.status == DONE and not done.error.errors

    got = cx.instances.get(project=P, zone=ZONE, instance="lab-1")
    assert got.status == "RUNNING"
    assert got.advanced_machine_features.enable_nested_virtualization is True
    assert dict(got.labels) == {"nestcloud-name": "lab"}
    assert {i.key: i.value for i in got.metadata.items}["user-data"] == "#cloud-config\n"
    assert got.scheduling.instance_termination_action == "DELETE"
    assert got.scheduling.max_run_duration.seconds == 7200
    assert got.min_cpu_platform == "Intel Haswell"
    assert got.machine_type.endswith(f"/zones/{ZONE}/machineTypes/n2-standard-4")
    assert got.network_interfaces[0].network.endswith("/global/networks/default")
    assert got.network_interfaces[0].network_i_p

    # What the client sent, exactly, is in the request log (camelCase proto JSON).
    sent = gce.sent_instances()[0]
    assert sent["advancedMachineFeatures"] == {"enableNestedVirtualization": True}
    assert sent["scheduling"]["instanceTerminationAction"] == "DELETE"
    assert sent["machineType"] == f"zones/{ZONE}/machineTypes/n2-standard-4"
    assert [r.route for r in gce.requests] == [
        "instances.insert", "instances.get", "zoneOperations.wait", "instances.get",
        "zoneOperations.get", "instances.get"]
    assert loopback_only == []  # every call went to the fake, nothing tried to leave


def test_an_existing_name_is_409_already_exists_and_a_missing_one_404(
        cx: SimpleNamespace) -> None:
    insert_done(cx, instance("lab-1"))
    with pytest.raises(gexc.Conflict) as e:
        insert(cx, instance("lab-1"))
    assert e.value.code == 409
    assert e.value.errors[0]["reason"] == "alreadyExists"
    assert e.value.errors[0]["domain"] == "global"
    assert f"projects/{P}/zones/{ZONE}/instances/lab-1' already exists" in e.value.message
    # Names are per zone: the same name elsewhere is fine.
    assert insert_done(cx, instance("lab-1", zone=OTHER_ZONE), OTHER_ZONE).error.errors == []
    with pytest.raises(gexc.NotFound) as nf:
        cx.instances.get(project=P, zone=ZONE, instance="nope")
    assert nf.value.errors[0]["reason"] == "notFound"
    assert "was not found" in nf.value.message


def test_delete_goes_through_stopping_and_frees_quota(cx: SimpleNamespace) -> None:
    insert_done(cx, instance("lab-1"))
    assert quota(cx, "N2_CPUS")[1] == row_of("n2-standard-4").vcpus
    op = cx.instances.delete_unary(project=P, zone=ZONE, instance="lab-1")
    assert op.operation_type == "delete"
    assert cx.instances.get(project=P, zone=ZONE, instance="lab-1").status == "STOPPING"
    wait_done(cx.zone_ops, op, project=P, zone=ZONE)
    with pytest.raises(gexc.NotFound):
        cx.instances.get(project=P, zone=ZONE, instance="lab-1")
    assert quota(cx, "N2_CPUS")[1] == 0
    with pytest.raises(gexc.NotFound):
        cx.instances.delete_unary(project=P, zone=ZONE, instance="lab-1")


def test_list_and_aggregated_list_page_and_filter(gce: GceFake, cx: SimpleNamespace) -> None:
    insert_done(cx, instance("lab-1"))
    insert_done(cx, instance("lab-2", labels={"nestcloud-name": "other"}))
    insert_done(cx, instance("lab-3", zone=OTHER_ZONE), OTHER_ZONE)

    names = [i.name for i in cx.instances.list(
        request={"project": P, "zone": ZONE, "max_results": 1})]
    assert names == ["lab-1", "lab-2"]
    assert [r.query.get("pageToken") for r in gce.calls("instances.list")] == [None, "1"]

    flt = 'labels.nestcloud-name = "lab"'
    agg = cx.instances.aggregated_list(request={"project": P, "filter": flt})
    scoped = {k: [i.name for i in v.instances] for k, v in agg if v.instances}
    assert scoped == {f"zones/{ZONE}": ["lab-1"], f"zones/{OTHER_ZONE}": ["lab-3"]}
    empty = dict(cx.instances.aggregated_list(request={"project": P, "filter": flt}))
    warning = empty["zones/us-east1-b"].warning
    assert warning.code == "NO_RESULTS_ON_PAGE"
    assert [(d.key, d.value) for d in warning.data] == [("scope", "zones/us-east1-b")]

    assert [i.name for i in cx.instances.list(
        request={"project": P, "zone": ZONE, "filter": "name eq lab-[12]"})] == ["lab-1", "lab-2"]
    assert [i.name for i in cx.instances.list(request={
        "project": P, "zone": ZONE,
        "filter": '(labels.nestcloud-name = "other") (status = "RUNNING")'})] == ["lab-2"]
    with pytest.raises(gexc.BadRequest, match="OR in filter is not modelled"):
        list(cx.instances.list(request={"project": P, "zone": ZONE,
                                        "filter": "name = a OR name = b"}))


def test_request_id_makes_an_insert_idempotent(gce: GceFake, cx: SimpleNamespace) -> None:
    rid = "0f2c1b4e-5d6a-4b7c-8d9e-0a1b2c3d4e5f"
    op1 = insert(cx, instance("lab-1"), request_id=rid)
    op2 = insert(cx, instance("lab-1"), request_id=rid)  # would be 409 without the id
    assert op1.name == op2.name
    assert len(gce.instances) == 1


# -- validation ------------------------------------------------------------------------------


@pytest.mark.parametrize("change, field, words", [
    (lambda b: setattr(b, "machine_type", "n2-standard-4"), "resource.machineType",
     "The URL is malformed."),
    (lambda b: setattr(b, "machine_type", f"zones/{ZONE}/machineTypes/n9-standard-4"),
     "resource.machineType", "does not exist in zone"),
    (lambda b: setattr(b, "name", "Lab_1"), "resource.name", "Must be a match of regex"),
    (lambda b: b.labels.update({"nestcloud:name": "lab"}), "resource.labels", "Label keys"),
    (lambda b: b.network_interfaces[0].__setattr__("network", "nestcloud"),
     "resource.networkInterfaces[0].network", "The URL is malformed."),
    (lambda b: b.network_interfaces[0].__setattr__("network", "global/networks/missing"),
     "resource.networkInterfaces[0].network", "cannot be found"),
    (lambda b: b.metadata.items.append(
        compute_v1.Items(key="user-data", value="x" * (256 * 1024 + 1))),
     "resource.metadata", "too large"),
])
def test_bad_insert_bodies_are_400_invalid_naming_the_field(
        gce: GceFake, cx: SimpleNamespace, change: Any, field: str, words: str) -> None:
    body = instance("lab-1")
    change(body)
    with pytest.raises(gexc.BadRequest) as e:
        insert(cx, body)
    assert e.value.errors[0]["reason"] == "invalid"
    assert f"Invalid value for field '{field}'" in e.value.message
    assert words in e.value.message
    assert gce.instances == {}


def test_a_type_not_offered_in_the_zone_is_refused(cx: SimpleNamespace) -> None:
    offered = set(zones_of("t2a-standard-4"))
    zone = next(z for z in sorted({z for r in ROWS for z in r.zones}) if z not in offered)
    with pytest.raises(gexc.BadRequest, match="does not exist in zone"):
        insert(cx, instance("arm-1", zone=zone, machine_type="t2a-standard-4"), zone)


def test_a_custom_network_needs_a_subnetwork(cx: SimpleNamespace) -> None:
    c = compute_v1
    wait_done(cx.global_ops, cx.networks.insert_unary(project=P, network_resource=c.Network(
        name="nestcloud", auto_create_subnetworks=False)), project=P)
    with pytest.raises(gexc.BadRequest, match="Subnetwork should be specified"):
        insert(cx, instance("lab-1", nic=c.NetworkInterface(network="global/networks/nestcloud")))


# -- quotas ----------------------------------------------------------------------------------


def test_regions_get_reports_quota_usage_per_series(cx: SimpleNamespace) -> None:
    assert quota(cx, "N2_CPUS") == (24.0, 0.0)
    insert_done(cx, instance("lab-1"))
    insert_done(cx, instance("old-1", machine_type="n1-standard-2", nested=True))
    n2, n1 = row_of("n2-standard-4").vcpus, row_of("n1-standard-2").vcpus
    assert quota(cx, "N2_CPUS")[1] == n2
    assert quota(cx, CPU_METRIC["n1"])[1] == n1
    assert quota(cx, "INSTANCES")[1] == 2
    region = cx.regions.get(project=P, region=REGION)
    assert region.status == "UP"
    assert sorted(z.rsplit("/", 1)[-1] for z in region.zones) == sorted(
        {z for r in ROWS for z in r.zones if z.startswith(REGION + "-")})


def test_quota_exceeded_ends_the_operation_with_quota_info_and_creates_nothing(
        gce: GceFake, cx: SimpleNamespace) -> None:
    gce.set_quota(REGION, "N2_CPUS", 8)
    insert_done(cx, instance("lab-1"))
    insert_done(cx, instance("lab-2"))
    op = insert(cx, instance("lab-3"))
    with pytest.raises(gexc.NotFound):  # a quota refusal never shows the instance
        cx.instances.get(project=P, zone=ZONE, instance="lab-3")
    done = wait_done(cx.zone_ops, op, project=P, zone=ZONE)
    err = done.error.errors[0]
    assert err.code == "QUOTA_EXCEEDED"
    assert err.message == f"Quota 'N2_CPUS' exceeded.  Limit: 8.0 in region {REGION}."
    info = err.error_details[0].quota_info
    assert (info.metric_name, info.limit_name, info.limit) == (
        "compute.googleapis.com/n2_cpus", "N2-CPUS-per-project-region", 8.0)
    assert dict(info.dimensions) == {"region": REGION}
    assert done.http_error_status_code == 403
    assert set(all_instances(cx)) == {"lab-1", "lab-2"}


def test_spot_counts_against_preemptible_cpus_when_the_region_has_it(
        gce: GceFake, cx: SimpleNamespace) -> None:
    gce.set_quota(REGION, "PREEMPTIBLE_CPUS", 8)
    insert_done(cx, instance("spot-1", spot=True))
    assert quota(cx, "PREEMPTIBLE_CPUS")[1] == row_of("n2-standard-4").vcpus
    assert quota(cx, "N2_CPUS")[1] == 0


# -- stockouts and seat failures -------------------------------------------------------------


def test_a_zone_stockout_ends_in_zone_resource_pool_exhausted_with_nothing_left(
        gce: GceFake, cx: SimpleNamespace) -> None:
    gce.stockout(ZONE)
    op = insert(cx, instance("lab-1"))
    assert cx.instances.get(project=P, zone=ZONE, instance="lab-1").status == "PROVISIONING"
    err = wait_done(cx.zone_ops, op, project=P, zone=ZONE).error.errors[0]
    assert err.code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert err.message == (f"The zone 'projects/{P}/zones/{ZONE}' does not have enough resources "
                           "available to fulfill the request.  Try a different zone, or try "
                           "again later.")
    assert all_instances(cx) == {}
    assert quota(cx, "N2_CPUS")[1] == 0
    assert insert_done(cx, instance("lab-1", zone=OTHER_ZONE), OTHER_ZONE).error.errors == []


def test_a_stockout_can_be_per_machine_type(gce: GceFake, cx: SimpleNamespace) -> None:
    gce.stockout(ZONE, "n2-standard-4")
    assert insert_done(cx, instance("a", machine_type="n2-standard-4")).error.errors[0].code == \
        "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert insert_done(cx, instance("b", machine_type="n2-standard-8")).error.errors == []


def test_seat_37_of_50_single_inserts_fails_only_that_one(gce: GceFake,
                                                           cx: SimpleNamespace) -> None:
    gce.set_quota(REGION, "N2_CPUS", 1000)
    gce.fail_at(37)
    ops = [insert(cx, instance(f"lab-{i}", machine_type="n2-standard-2")) for i in range(1, 51)]
    results = [wait_done(cx.zone_ops, op, project=P, zone=ZONE) for op in ops]
    failed = [i + 1 for i, op in enumerate(results) if op.error.errors]
    assert failed == [37]
    assert results[36].error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert len(all_instances(cx)) == 49 and "lab-37" not in all_instances(cx)


# -- bulkInsert --------------------------------------------------------------------------------


def test_bulk_insert_seat_37_of_50_rolls_everything_back(gce: GceFake,
                                                        cx: SimpleNamespace) -> None:
    gce.set_quota(REGION, "N2_CPUS", 1000)
    gce.fail_at(37)
    op = bulk(cx, count=50, min_count=50, machine_type="n2-standard-2")
    assert op.operation_type == "bulkInsert"
    running = cx.region_ops.wait(project=P, region=REGION, operation=op.name)
    assert len(all_instances(cx)) == 49  # made, visible, about to be rolled back
    statuses = running.instances_bulk_insert_operation_metadata.per_location_status
    assert {s.status for s in statuses.values()} == {"ROLLING_BACK"}
    done = wait_done(cx.region_ops, running, project=P, region=REGION)
    assert done.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert all_instances(cx) == {}
    per = done.instances_bulk_insert_operation_metadata.per_location_status.values()
    assert sum(s.target_vm_count for s in per) == 50
    assert sum(s.deleted_vm_count for s in per) == 49
    assert sum(s.failed_to_create_vm_count for s in per) == 1
    assert quota(cx, "N2_CPUS")[1] == 0


def test_bulk_insert_spreads_over_the_regions_zones_with_a_name_pattern(
        gce: GceFake, cx: SimpleNamespace) -> None:
    zones = zones_of("n2-standard-4")
    gce.stockout(zones[0])
    done = wait_done(cx.region_ops, bulk(cx, count=6, deny=(zones[1],)), project=P,
                     region=REGION)
    assert not done.error.errors
    made = all_instances(cx)
    assert sorted(made) == [f"lab-{i:04d}" for i in range(1, 7)]
    used = Counter(i.zone.rsplit("/", 1)[-1] for i in made.values())
    assert set(used) == set(zones[2:]) and max(used.values()) - min(used.values()) <= 1
    assert {i.status for i in made.values()} == {"RUNNING"}
    assert all(i.advanced_machine_features.enable_nested_virtualization for i in made.values())
    per = done.instances_bulk_insert_operation_metadata.per_location_status
    assert {k: v.created_vm_count for k, v in per.items()} == {
        f"zones/{z}": n for z, n in used.items()}


def test_bulk_insert_single_zone_and_numbering_after_existing_names(
        gce: GceFake, cx: SimpleNamespace) -> None:
    insert_done(cx, instance("lab-0003"))
    done = wait_done(cx.region_ops, bulk(cx, count=3, shape="ANY_SINGLE_ZONE"), project=P,
                     region=REGION)
    assert not done.error.errors
    made = {n: i for n, i in all_instances(cx).items() if n != "lab-0003"}
    assert sorted(made) == ["lab-0004", "lab-0005", "lab-0006"]
    assert len({i.zone for i in made.values()}) == 1


def test_bulk_insert_quota_is_all_or_nothing_up_front(gce: GceFake, cx: SimpleNamespace) -> None:
    gce.set_quota(REGION, "N2_CPUS", 24)
    fits = 24 // row_of("n2-standard-4").vcpus
    op = bulk(cx, count=fits + 2)
    cx.region_ops.wait(project=P, region=REGION, operation=op.name)
    assert all_instances(cx) == {}  # never made, not even while running
    done = wait_done(cx.region_ops, op, project=P, region=REGION)
    assert done.error.errors[0].code == "QUOTA_EXCEEDED"
    assert all_instances(cx) == {}
    # With minCount below what fits, it makes as many as the quota allows.
    done = wait_done(cx.region_ops, bulk(cx, count=fits + 2, min_count=fits - 1), project=P,
                     region=REGION)
    assert not done.error.errors
    assert len(all_instances(cx)) == fits


def test_bulk_insert_capacity_shortfall_is_a_stockout_with_nothing_made(
        gce: GceFake, cx: SimpleNamespace) -> None:
    for z in zones_of("n2-standard-4"):
        gce.zone_capacity(z, 1)
    n = len(zones_of("n2-standard-4"))
    done = wait_done(cx.region_ops, bulk(cx, count=n + 1), project=P, region=REGION)
    assert done.error.errors[0].code == "ZONE_RESOURCE_POOL_EXHAUSTED"
    assert all_instances(cx) == {}
    assert not wait_done(cx.region_ops, bulk(cx, count=n), project=P, region=REGION).error.errors
    assert len(all_instances(cx)) == n


def test_bulk_insert_with_explicit_names_refuses_an_existing_one(cx: SimpleNamespace) -> None:
    insert_done(cx, instance("lab-2"))
    with pytest.raises(gexc.Conflict):
        bulk(cx, count=2, pattern=None, names=["lab-1", "lab-2"])
    done = wait_done(cx.region_ops, bulk(cx, count=2, pattern=None, names=["lab-3", "lab-4"]),
                     project=P, region=REGION)
    assert not done.error.errors
    assert set(all_instances(cx)) == {"lab-2", "lab-3", "lab-4"}


def test_zonal_bulk_insert_uses_the_zone_operation(cx: SimpleNamespace) -> None:
    c = compute_v1
    props = c.InstanceProperties(
        machine_type="n2-standard-4", disks=[c.AttachedDisk(boot=True)],
        network_interfaces=[c.NetworkInterface(network="global/networks/default")])
    res = c.BulkInsertInstanceResource(count=2, name_pattern="z-##", instance_properties=props)
    op = cx.instances.bulk_insert_unary(project=P, zone=ZONE,
                                        bulk_insert_instance_resource_resource=res)
    assert op.zone.endswith(f"/zones/{ZONE}")
    assert not wait_done(cx.zone_ops, op, project=P, zone=ZONE).error.errors
    assert {i.zone.rsplit("/", 1)[-1] for i in all_instances(cx).values()} == {ZONE}


# -- rate limits -------------------------------------------------------------------------------


def test_429_on_a_third_of_calls_is_absorbed_only_by_a_retry_the_caller_passes(
        gce: GceFake, cx: SimpleNamespace) -> None:
    gce.rate_limit(every=3)
    cx.regions.get(project=P, region=REGION)
    cx.regions.get(project=P, region=REGION)
    with pytest.raises(gexc.TooManyRequests) as e:  # the client's default retry skips 429
        cx.regions.get(project=P, region=REGION)
    assert e.value.code == 429 and e.value.errors[0]["reason"] == "rateLimitExceeded"
    assert "compute.googleapis.com" in e.value.message

    retry = gretry.Retry(predicate=gretry.if_exception_type(gexc.TooManyRequests),
                         initial=0.01, maximum=0.05, multiplier=2, timeout=10)
    for _ in range(6):
        cx.regions.get(project=P, region=REGION, retry=retry)
    statuses = Counter(r.status for r in gce.calls("regions.get"))
    assert statuses[429] == len(gce.calls("regions.get")) // 3 >= 3


def test_a_rate_limited_insert_retried_with_a_request_id_makes_one_instance(
        gce: GceFake, cx: SimpleNamespace) -> None:
    gce.rate_limit(every=2, method="POST")
    retry = gretry.Retry(predicate=gretry.if_exception_type(gexc.TooManyRequests),
                         initial=0.01, maximum=0.05, multiplier=2, timeout=10)
    op = insert(cx, instance("lab-1"), request_id="7d8e9f00-1111-4222-8333-944455556666",
                retry=retry)
    done = wait_done(cx.zone_ops, op, project=P, zone=ZONE, retry=retry)  # waits are POSTs too
    assert not done.error.errors
    assert list(all_instances(cx)) == ["lab-1"]
    assert 429 in {r.status for r in gce.requests}


# -- nested virtualization: org policy and the E2 trap -----------------------------------------


def test_org_policy_refuses_nested_with_412_naming_the_constraint(
        gce: GceFake, cx: SimpleNamespace) -> None:
    gce.disable_nested_by_org_policy()
    with pytest.raises(gexc.PreconditionFailed) as e:
        insert(cx, instance("lab-1"))
    assert e.value.errors[0]["reason"] == "conditionNotMet"
    assert "constraints/compute.disableNestedVirtualization" in e.value.message
    assert PROJECT_NUMBER in e.value.message
    with pytest.raises(gexc.PreconditionFailed):
        bulk(cx, count=2)
    assert gce.instances == {}
    assert insert_done(cx, instance("plain-1", nested=False)).error.errors == []


def test_e2_accepts_the_nested_flag_and_reads_it_back_true(cx: SimpleNamespace) -> None:
    """FACTS' trap: the API takes the flag on E2 and the VM has no vmx; only a check before
    launch (or in the guest) catches it, never the API's answer."""
    zone = zones_of("e2-standard-4")[0]
    done = insert_done(cx, instance("e2-1", zone=zone, machine_type="e2-standard-4"), zone)
    assert not done.error.errors
    got = cx.instances.get(project=P, zone=zone, instance="e2-1")
    assert got.advanced_machine_features.enable_nested_virtualization is True


# -- guest attributes and serial port ----------------------------------------------------------


def test_guest_attributes_appear_once_running_and_enabled(gce: GceFake,
                                                          cx: SimpleNamespace) -> None:
    op = insert(cx, instance("lab-1"))
    value = json.dumps({"kvm": True, "ready": True})
    gce.set_guest_attribute("lab-1", "nestcloud/l1", value)
    with pytest.raises(gexc.NotFound):  # not running yet: the guest has not written
        guest(cx, "lab-1", variable_key="nestcloud/l1")
    wait_done(cx.zone_ops, op, project=P, zone=ZONE)
    got = guest(cx, "lab-1", variable_key="nestcloud/l1")
    assert json.loads(got.variable_value) == {"kvm": True, "ready": True}
    q = guest(cx, "lab-1", query_path="nestcloud/")
    assert [(i.namespace, i.key, i.value) for i in q.query_value.items] == [
        ("nestcloud", "l1", value)]
    with pytest.raises(gexc.NotFound):
        guest(cx, "lab-1", variable_key="nestcloud/other")


def test_guest_attributes_need_the_metadata_switch_and_can_arrive_late(
        gce: GceFake, cx: SimpleNamespace) -> None:
    insert_done(cx, instance("off-1", metadata={"user-data": "x"}))
    gce.set_guest_attribute("off-1", "nestcloud/l1", "{}")
    with pytest.raises(gexc.NotFound):
        guest(cx, "off-1", variable_key="nestcloud/l1")
    insert_done(cx, instance("late-1"))
    gce.set_guest_attribute("late-1", "nestcloud/l1", "{}", after_reads=2)
    seen = []
    for _ in range(3):
        try:
            guest(cx, "late-1", variable_key="nestcloud/l1")
            seen.append(True)
        except gexc.NotFound:
            seen.append(False)
    assert seen == [False, False, True]


def test_serial_port_output_start_next_and_the_1mib_buffer(gce: GceFake,
                                                           cx: SimpleNamespace) -> None:
    insert_done(cx, instance("lab-1"))
    gce.append_serial_output("lab-1", "boot\n")
    first = serial(cx, "lab-1", port=1)
    assert (first.contents, first.start, first.next_) == ("boot\n", 0, 5)
    gce.append_serial_output("lab-1", "NESTCLOUD-READY kvm ok\n")
    more = serial(cx, "lab-1", port=1,
                                               start=first.next_)
    assert more.contents == "NESTCLOUD-READY kvm ok\n" and more.start == 5
    tail = serial(cx, "lab-1", start=-3)
    assert tail.contents == "ok\n"
    gce.append_serial_output("lab-1", "x" * (1024 * 1024))
    old = serial(cx, "lab-1", start=0)
    assert old.start == old.next_ - 1024 * 1024 and len(old.contents) == 1024 * 1024
    other = serial(cx, "lab-1", port=2)
    assert other.contents == ""


# -- time-to-live --------------------------------------------------------------------------------


def test_expire_due_applies_termination_time_and_max_run_duration(
        gce: GceFake, cx: SimpleNamespace) -> None:
    c = compute_v1
    now = datetime.now(timezone.utc)
    insert_done(cx, instance("ttl-del", scheduling=c.Scheduling(
        termination_time=(now + timedelta(hours=1)).isoformat(),
        instance_termination_action="DELETE")))
    insert_done(cx, instance("ttl-stop", scheduling=c.Scheduling(
        max_run_duration=c.Duration(seconds=1800), instance_termination_action="STOP")))
    insert_done(cx, instance("keep"))
    assert gce.expire_due(now + timedelta(minutes=10)) == []
    assert sorted(gce.expire_due(now + timedelta(hours=2))) == ["ttl-del", "ttl-stop"]
    left = all_instances(cx)
    assert set(left) == {"ttl-stop", "keep"} and left["ttl-stop"].status == "TERMINATED"
    assert quota(cx, "N2_CPUS")[1] == row_of("n2-standard-4").vcpus  # only "keep" counts


# -- machine types, zones ------------------------------------------------------------------------


def test_machine_types_come_from_the_price_file(cx: SimpleNamespace) -> None:
    for name in ("n2-standard-4", "n1-highcpu-2", "t2a-standard-4", "e2-standard-4"):
        row, zone = row_of(name), zones_of(name)[0]
        mt = cx.machine_types.get(project=P, zone=zone, machine_type=name)
        assert mt.guest_cpus == row.vcpus
        assert mt.memory_mb == round(row.memory_gib * 1024)
        assert mt.architecture == ("ARM64" if row.arch == "arm64" else "X86_64")
    with pytest.raises(gexc.NotFound):
        cx.machine_types.get(project=P, zone=ZONE, machine_type="n9-standard-4")
    seen = {(k.removeprefix("zones/"), m.name)
            for k, scoped in cx.machine_types.aggregated_list(project=P)
            for m in scoped.machine_types}
    assert seen == {(z, r.name) for r in ROWS for z in r.zones}
    in_zone = {m.name for m in cx.machine_types.list(project=P, zone=ZONE)}
    assert in_zone == {r.name for r in ROWS if ZONE in r.zones}
    assert cx.zones.get(project=P, zone=ZONE).region.endswith(f"/regions/{REGION}")


def test_a_test_can_pass_its_own_machine_types(gce_client: Any) -> None:
    row = MachineTypeRow("n2-standard-2", 2, 8.0, "x86_64", ("europe-west9-a",))
    with GceFake(machine_types=[row]) as fake:
        mts = make_client(compute_v1.MachineTypesClient, fake.url)
        assert [m.name for m in mts.list(project=P, zone="europe-west9-a")] == ["n2-standard-2"]
        regions = make_client(compute_v1.RegionsClient, fake.url)
        assert [r.name for r in regions.list(project=P)] == ["europe-west9"]


# -- networking --------------------------------------------------------------------------------


def test_the_default_network_is_world_open_on_ssh_and_rdp(cx: SimpleNamespace) -> None:
    rules = {f.name: f for f in cx.firewalls.list(project=P)}
    assert list(rules["default-allow-ssh"].source_ranges) == ["0.0.0.0/0"]
    assert rules["default-allow-ssh"].allowed[0].ports == ["22"]
    assert rules["default-allow-rdp"].allowed[0].ports == ["3389"]


def test_network_subnetwork_firewall_router_nat_and_address(gce: GceFake,
                                                           cx: SimpleNamespace) -> None:
    c = compute_v1
    op = cx.networks.insert_unary(project=P, network_resource=c.Network(
        name="nestcloud", auto_create_subnetworks=False))
    assert wait_done(cx.global_ops, op, project=P).operation_type == "insert"
    net = cx.networks.get(project=P, network="nestcloud")
    assert net.auto_create_subnetworks is False

    def region_done(op: Any) -> Any:
        return wait_done(cx.region_ops, op, project=P, region=REGION)

    region_done(cx.subnetworks.insert_unary(
        project=P, region=REGION, subnetwork_resource=c.Subnetwork(
            name="nestcloud-us", network=net.self_link, ip_cidr_range="10.42.0.0/24")))
    sub = cx.subnetworks.get(project=P, region=REGION, subnetwork="nestcloud-us")
    assert sub.ip_cidr_range == "10.42.0.0/24" and sub.network == net.self_link
    assert list(cx.networks.get(project=P, network="nestcloud").subnetworks) == [sub.self_link]
    with pytest.raises(gexc.BadRequest, match="cannot be found"):
        cx.subnetworks.insert_unary(project=P, region=REGION, subnetwork_resource=c.Subnetwork(
            name="x", network="global/networks/missing", ip_cidr_range="10.43.0.0/24"))

    wait_done(cx.global_ops, cx.firewalls.insert_unary(project=P, firewall_resource=c.Firewall(
        name="lab-ssh", network="global/networks/nestcloud", source_ranges=["203.0.113.7/32"],
        target_tags=["nestcloud-lab"], allowed=[c.Allowed(I_p_protocol="tcp", ports=["22"])])),
        project=P)
    fw = cx.firewalls.get(project=P, firewall="lab-ssh")
    assert (fw.direction, fw.priority, list(fw.target_tags)) == ("INGRESS", 1000, ["nestcloud-lab"])
    assert fw.network == net.self_link
    assert gce.calls("firewalls.insert")[0].body["sourceRanges"] == ["203.0.113.7/32"]
    wait_done(cx.global_ops, cx.firewalls.insert_unary(project=P, firewall_resource=c.Firewall(
        name="no-network", allowed=[c.Allowed(I_p_protocol="icmp")])), project=P)
    assert cx.firewalls.get(project=P, firewall="no-network").network.endswith(
        "/global/networks/default")  # proto doc: no network means the default one

    region_done(cx.routers.insert_unary(project=P, region=REGION, router_resource=c.Router(
        name="nestcloud-nat", network="global/networks/nestcloud", nats=[c.RouterNat(
            name="nestcloud-nat", nat_ip_allocate_option="AUTO_ONLY",
            source_subnetwork_ip_ranges_to_nat="ALL_SUBNETWORKS_ALL_IP_RANGES")])))
    router = cx.routers.get(project=P, region=REGION, router="nestcloud-nat")
    assert router.nats[0].nat_ip_allocate_option == "AUTO_ONLY"
    assert router.nats[0].source_subnetwork_ip_ranges_to_nat == "ALL_SUBNETWORKS_ALL_IP_RANGES"

    region_done(cx.addresses.insert_unary(project=P, region=REGION, address_resource=c.Address(
        name="lab-ip")))
    addr = cx.addresses.get(project=P, region=REGION, address="lab-ip")
    assert addr.status == "RESERVED" and addr.address
    insert_done(cx, instance("lab-1", nic=c.NetworkInterface(
        subnetwork="regions/us-central1/subnetworks/nestcloud-us",
        access_configs=[c.AccessConfig(nat_i_p=addr.address)])))
    got = cx.instances.get(project=P, zone=ZONE, instance="lab-1")
    assert got.network_interfaces[0].access_configs[0].nat_i_p == addr.address
    assert got.network_interfaces[0].subnetwork == sub.self_link
    in_use = cx.addresses.get(project=P, region=REGION, address="lab-ip")
    assert in_use.status == "IN_USE" and list(in_use.users) == [got.self_link]

    with pytest.raises(gexc.BadRequest) as e:
        cx.addresses.delete_unary(project=P, region=REGION, address="lab-ip")
    assert e.value.errors[0]["reason"] == "resourceInUseByAnotherResource"
    with pytest.raises(gexc.BadRequest, match="already being used"):
        cx.networks.delete_unary(project=P, network="nestcloud")

    # Tear down in dependency order: every delete then works.
    wait_done(cx.zone_ops, cx.instances.delete_unary(project=P, zone=ZONE, instance="lab-1"),
              project=P, zone=ZONE)
    region_done(cx.addresses.delete_unary(project=P, region=REGION, address="lab-ip"))
    wait_done(cx.global_ops, cx.firewalls.delete_unary(project=P, firewall="lab-ssh"), project=P)
    region_done(cx.routers.delete_unary(project=P, region=REGION, router="nestcloud-nat"))
    region_done(cx.subnetworks.delete_unary(project=P, region=REGION, subnetwork="nestcloud-us"))
    wait_done(cx.global_ops, cx.networks.delete_unary(project=P, network="nestcloud"), project=P)
    with pytest.raises(gexc.NotFound):
        cx.networks.get(project=P, network="nestcloud")
    assert [a.name for a in cx.addresses.list(project=P, region=REGION)] == []
    with pytest.raises(gexc.Conflict):
        cx.networks.insert_unary(project=P, network_resource=c.Network(
            name="default", auto_create_subnetworks=True))


# -- the client's own traps ----------------------------------------------------------------------


def test_extended_operation_result_polls_google_not_the_endpoint(
        gce: GceFake, cx: SimpleNamespace, loopback_only: list[str]) -> None:
    """FACTS' trap, checked on the installed client: insert()'s ExtendedOperation polls
    compute.googleapis.com even though the client was built for the fake. The guard stops it;
    this is why the provider must use *_unary and an OperationsClient of its own."""
    ext = cx.instances.insert(project=P, zone=ZONE, instance_resource=instance("lab-1"))
    assert [r.route for r in gce.requests] == ["instances.insert"]  # the insert itself came here
    with pytest.raises(Exception):
        ext.result(timeout=5)
    assert "compute.googleapis.com" in loopback_only
    assert [r.route for r in gce.requests] == ["instances.insert"]  # the poll never did


# -- every answer has the client's shape ---------------------------------------------------------

SHAPES = {
    "instances.get": "Instance", "instances.list": "InstanceList",
    "instances.aggregatedList": "InstanceAggregatedList",
    "instances.getGuestAttributes": "GuestAttributes",
    "instances.getSerialPortOutput": "SerialPortOutput",
    "regions.get": "Region", "regions.list": "RegionList", "zones.get": "Zone",
    "zones.list": "ZoneList", "machineTypes.get": "MachineType",
    "machineTypes.list": "MachineTypeList",
    "machineTypes.aggregatedList": "MachineTypeAggregatedList",
    "networks.get": "Network", "networks.list": "NetworkList",
    "subnetworks.get": "Subnetwork", "subnetworks.list": "SubnetworkList",
    "firewalls.get": "Firewall", "firewalls.list": "FirewallList",
    "routers.get": "Router", "routers.list": "RouterList",
    "addresses.get": "Address", "addresses.list": "AddressList",
}


def shape_of(route: str) -> str:
    if route in SHAPES:
        return SHAPES[route]
    if route.split(".")[-1] in ("insert", "delete", "bulkInsert", "get", "wait"):
        return "Operation"
    raise AssertionError(f"no shape for {route}")


def test_every_answer_parses_strictly_as_the_clients_message(gce: GceFake,
                                                             cx: SimpleNamespace) -> None:
    c = compute_v1
    # A tour of every endpoint, including failures, so each answer below gets checked.
    test_network_subnetwork_firewall_router_nat_and_address(gce, cx)
    insert_done(cx, instance("lab-1"))
    gce.set_guest_attribute("lab-1", "nestcloud/l1", "{}")
    gce.append_serial_output("lab-1", "hello\n")
    guest(cx, "lab-1", variable_key="nestcloud/l1")
    guest(cx, "lab-1", query_path="nestcloud/")
    serial(cx, "lab-1")
    list(cx.instances.list(project=P, zone=ZONE))
    list(cx.instances.aggregated_list(project=P))
    gce.fail_at(2)
    wait_done(cx.region_ops, bulk(cx, count=3), project=P, region=REGION)
    gce.set_quota(REGION, "N2_CPUS", 4)
    insert_done(cx, instance("over"))
    cx.regions.get(project=P, region=REGION)
    list(cx.regions.list(project=P))
    cx.zones.get(project=P, zone=ZONE)
    list(cx.zones.list(project=P))
    cx.machine_types.get(project=P, zone=ZONE, machine_type="n2-standard-4")
    list(cx.machine_types.list(project=P, zone=ZONE))
    list(cx.machine_types.aggregated_list(project=P))
    list(cx.networks.list(project=P))
    list(cx.firewalls.list(project=P))
    list(cx.subnetworks.list(project=P, region=REGION))
    list(cx.routers.list(project=P, region=REGION))
    last_insert = gce.calls("instances.insert")[-1].response["name"]
    cx.zone_ops.get(project=P, zone=ZONE, operation=last_insert)

    checked: set[str] = set()
    for r in gce.requests:
        if r.status >= 400:
            err = r.response["error"]
            assert err["code"] == r.status and err["message"]
            assert all(set(e) == {"message", "domain", "reason"} for e in err["errors"])
            continue
        name = shape_of(r.route)
        msg = getattr(c, name)
        json_format.Parse(json.dumps(r.response), msg.pb(msg()), ignore_unknown_fields=False)
        checked.add(r.route)
    assert set(SHAPES) <= checked
    assert {"zoneOperations.wait", "zoneOperations.get", "regionOperations.wait",
            "globalOperations.wait", "regionInstances.bulkInsert"} <= checked
    assert gce.crashes == []
