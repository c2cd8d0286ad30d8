"""providers/gcp/iam.py: the custom role nestcloud's GCP calls need, as data."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest

from nestcloud.errors import InputError
from nestcloud.provider import AccessPolicy
from providers.gcp import iam
from providers.gcp.iam import access_policy, permissions_for_request

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fakes.gce_fake import GceFake, _Handler  # noqa: E402

SA = "l1-host@my-project.iam.gserviceaccount.com"


def _routes() -> list[str]:
    handler = _Handler.__new__(_Handler)
    handler.gce = GceFake()  # never started: only its route table is read
    return [route for _, _, route, _ in handler._routes()]


def _role(policy: AccessPolicy) -> dict[str, Any]:
    return policy.document


def test_the_role_is_a_gcloud_role_file() -> None:
    role = _role(access_policy())
    assert set(role) == {"title", "description", "stage", "includedPermissions"}
    assert role["stage"] == "GA"
    assert 0 < len(role["title"]) <= 100 and 0 < len(role["description"]) <= 256
    perms = role["includedPermissions"]
    assert perms == sorted(set(perms))
    assert all(p.startswith("compute.") and "*" not in p for p in perms)
    json.dumps(role)  # plain data


def test_every_method_nestcloud_calls_is_covered_by_the_role() -> None:
    perms = set(_role(access_policy())["includedPermissions"])
    for method in iam.CALLS:
        assert set(iam.METHOD_PERMISSIONS[method].permissions) <= perms, method
    # ... and the role is nothing more than those, plus what request bodies imply.
    derived = {p for m in iam.CALLS for p in iam.METHOD_PERMISSIONS[m].permissions}
    assert perms == derived | set(iam.IMPLIED)
    assert all(why for why in iam.IMPLIED.values())


def test_what_the_issue_asks_for_is_there_and_the_shared_network_is_not_deleted() -> None:
    perms = set(_role(access_policy())["includedPermissions"])
    for p in ("compute.instances.create", "compute.instances.delete",
              "compute.instances.getGuestAttributes", "compute.instances.getSerialPortOutput",
              "compute.regions.get", "compute.machineTypes.list", "compute.firewalls.create",
              "compute.firewalls.delete", "compute.networks.updatePolicy",
              "compute.routers.create", "compute.addresses.delete",
              "compute.zoneOperations.get", "compute.regionOperations.get",
              "compute.instances.setMetadata", "compute.instances.setLabels",
              "compute.instances.setTags", "compute.disks.create", "compute.subnetworks.use",
              "compute.subnetworks.useExternalIp"):
        assert p in perms, p
    # `down` leaves nestcloud's network and subnet for the next launch (issue 13).
    assert "compute.networks.delete" not in perms
    assert "compute.subnetworks.delete" not in perms
    assert not any(p.startswith("iam.") for p in perms)


def test_every_route_of_the_compute_fake_has_a_known_permission() -> None:
    routes = _routes()
    assert "instances.insert" in routes and "regionInstances.bulkInsert" in routes
    assert sorted(set(routes) - set(iam.METHOD_PERMISSIONS)) == []


def test_calls_are_methods_with_a_reason() -> None:
    assert set(iam.CALLS) <= set(iam.METHOD_PERMISSIONS)
    assert all(why for why in iam.CALLS.values())
    assert all(g.basis in iam.BASES for g in iam.METHOD_PERMISSIONS.values())


INSERT_BODY: dict[str, Any] = {
    "name": "demo-0",
    "machineType": "zones/us-central1-a/machineTypes/n2-standard-4",
    "advancedMachineFeatures": {"enableNestedVirtualization": True},
    "labels": {"nestcloud-name": "demo"},
    "tags": {"items": ["nestcloud-demo"]},
    "metadata": {"items": [{"key": "user-data", "value": "#cloud-config\n"}]},
    "disks": [{"boot": True, "autoDelete": True,
               "initializeParams": {"sourceImage": "projects/ubuntu-os-cloud/global/images/"
                                                   "family/ubuntu-2404-lts-amd64"}}],
    "networkInterfaces": [{"subnetwork": "regions/us-central1/subnetworks/nestcloud",
                           "accessConfigs": [{"type": "ONE_TO_ONE_NAT"}]}],
    "scheduling": {"provisioningModel": "SPOT", "instanceTerminationAction": "DELETE"},
}


def test_an_insert_needs_what_its_body_sets() -> None:
    assert permissions_for_request("instances.insert", INSERT_BODY) == {
        "compute.instances.create", "compute.instances.setLabels", "compute.instances.setTags",
        "compute.instances.setMetadata", "compute.disks.create", "compute.subnetworks.use",
        "compute.subnetworks.useExternalIp"}
    bare = {"name": "x", "machineType": "m", "disks": [{"source": "zones/z/disks/d"}],
            "networkInterfaces": [{"subnetwork": "s"}]}
    assert permissions_for_request("instances.insert", bare) == {
        "compute.instances.create", "compute.disks.use", "compute.subnetworks.use"}
    assert permissions_for_request("instances.insert", {
        **INSERT_BODY, "serviceAccounts": [{"email": SA, "scopes": []}]}) >= {
        "compute.instances.setServiceAccount", "iam.serviceAccounts.actAs"}


def test_bulk_insert_reads_its_instance_properties() -> None:
    body = {"count": 3, "minCount": 3, "namePattern": "demo-#",
            "instanceProperties": {k: v for k, v in INSERT_BODY.items() if k != "name"}}
    assert permissions_for_request("regionInstances.bulkInsert", body) == \
        permissions_for_request("instances.insert", INSERT_BODY)


def test_firewalls_and_nat_routers() -> None:
    assert permissions_for_request("firewalls.insert", {"name": "f"}) == {
        "compute.firewalls.create", "compute.networks.updatePolicy"}
    assert permissions_for_request("firewalls.delete") == {
        "compute.firewalls.delete", "compute.networks.updatePolicy"}
    nat = {"name": "r", "nats": [{"name": "n", "natIpAllocateOption": "MANUAL_ONLY",
                                  "natIps": ["regions/us-central1/addresses/a"]}]}
    assert permissions_for_request("routers.insert", nat) == {"compute.routers.create",
                                                              "compute.addresses.use"}
    assert permissions_for_request("instances.aggregatedList") == {"compute.instances.list"}


def test_an_unknown_method_is_an_error_not_an_empty_set() -> None:
    with pytest.raises(KeyError, match="instances.frobnicate"):
        permissions_for_request("instances.frobnicate")


def test_the_role_covers_every_request_of_a_full_launch_body() -> None:
    perms = set(_role(access_policy())["includedPermissions"])
    for method, body in (("instances.insert", INSERT_BODY),
                         ("regionInstances.bulkInsert", {"instanceProperties": INSERT_BODY})):
        assert permissions_for_request(method, body) <= perms


# -- the operator's service account, and the L1 ---------------------------------------------


def test_an_instance_service_account_adds_attach_and_act_as() -> None:
    plain = set(_role(access_policy())["includedPermissions"])
    policy = access_policy(instance_role=SA)
    role = _role(policy)
    assert set(role["includedPermissions"]) == plain | {"compute.instances.setServiceAccount",
                                                       "iam.serviceAccounts.actAs"}
    assert SA in role["description"] and len(role["description"]) <= 256
    assert SA in policy.explain
    # actAs in a project binding reaches every service account: say how to narrow it.
    assert f"gcloud iam service-accounts add-iam-policy-binding {SA}" in policy.explain
    assert "roles/iam.serviceAccountUser" in policy.explain
    assert permissions_for_request("instances.insert", {
        **INSERT_BODY, "serviceAccounts": [{"email": SA}]}) <= set(role["includedPermissions"])


@pytest.mark.parametrize("bad", ["", "not-an-email", "a@b.com", "x@y.iam.gserviceaccount.com\n",
                                 "ROLE@p.iam.gserviceaccount.com"])
def test_a_bad_service_account_is_bad_input(bad: str) -> None:
    with pytest.raises(InputError, match="service account"):
        access_policy(instance_role=bad)


def test_default_compute_service_account_form_is_accepted() -> None:
    sa = "123456789012-compute@developer.gserviceaccount.com"
    assert sa in _role(access_policy(instance_role=sa))["description"]


def test_the_longest_accepted_service_account_still_fits_the_description() -> None:
    sa = "a" * 63 + "@" + "b" * 101 + ".gserviceaccount.com"
    assert len(_role(access_policy(instance_role=sa))["description"]) <= 256
    with pytest.raises(InputError):
        access_policy(instance_role="a" * 64 + "@p.iam.gserviceaccount.com")


@pytest.mark.parametrize("role", [None, SA])
def test_the_l1_needs_no_identity(role: str | None) -> None:
    with pytest.raises(InputError, match="guest attributes") as info:
        access_policy(instance_role=role, l1=True)
    assert "no IAM" in info.value.message


def test_explain_says_how_to_create_and_bind_the_role() -> None:
    text = access_policy().explain
    assert "gcloud iam roles create nestcloud --project PROJECT --file role.json" in text
    assert "--role=projects/PROJECT/roles/nestcloud" in text
    assert "API key" in text  # refresh-prices needs no role


def test_documents_are_fresh_copies() -> None:
    a = access_policy()
    a.document["includedPermissions"].append("compute.everything")
    assert "compute.everything" not in access_policy().document["includedPermissions"]
