"""The least-privilege documents: the providers call nothing outside them, and they hold nothing
the providers do not need. Plus the `nestcloud iam-policy` command's exact output."""

from __future__ import annotations

import copy
import json
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from typer.testing import CliRunner

from nestcloud.provider import UserDataEnvelope
from nestcloud import iam
from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.cli import app
from nestcloud.spec import TAG_NAME

# -- the documents themselves -------------------------------------------------------------

# Condition keys and operators the policy may use: each one is cited in nestcloud/iam.py.
ALLOWED_CONDITION_KEYS = {"ec2:CreateAction", f"aws:RequestTag/{TAG_NAME}",
                          f"aws:ResourceTag/{TAG_NAME}"}
ALLOWED_OPERATORS = {"Null", "StringEquals"}


def test_aws_policy_is_a_valid_least_privilege_document() -> None:
    policy = iam.aws_policy()
    assert policy["Version"] == "2012-10-17"
    sids = [st["Sid"] for st in policy["Statement"]]
    assert len(sids) == len(set(sids))
    assert all(sid.isascii() and sid.isalnum() for sid in sids)  # IAM: Sid is [A-Za-z0-9]
    # A customer managed policy holds at most 6,144 characters (whitespace not counted).
    assert len(json.dumps(policy, separators=(",", ":"))) <= 6144
    for st in policy["Statement"]:
        assert set(st) <= {"Sid", "Effect", "Action", "Resource", "Condition"}, st["Sid"]
        assert st["Effect"] == "Allow"
        assert st["Action"] and all("*" not in a and "?" not in a for a in st["Action"])
        assert all(a.split(":")[0] in {"ec2", "ssm", "sts", "pricing", "servicequotas"}
                   for a in st["Action"])
        assert st["Resource"]
        for op, keys in st.get("Condition", {}).items():
            assert op in ALLOWED_OPERATORS, (st["Sid"], op)
            assert set(keys) <= ALLOWED_CONDITION_KEYS, (st["Sid"], keys)
    # Nothing that destroys or changes may run on resources not carrying nestcloud:name.
    destructive = {"ec2:TerminateInstances", "ec2:DeleteSecurityGroup",
                   "ec2:AuthorizeSecurityGroupIngress", "ec2:GetConsoleOutput"}
    for st in policy["Statement"]:
        hit = destructive & set(st["Action"])
        if hit and st["Sid"] != "NestcloudNewRuleInOwnGroup":
            assert st["Condition"] == {"Null": {f"aws:ResourceTag/{TAG_NAME}": "false"}}, hit
    # CreateTags only as part of a create call, never on its own.
    [tag_st] = [st for st in policy["Statement"] if "ec2:CreateTags" in st["Action"]]
    assert tag_st["Action"] == ["ec2:CreateTags"]
    assert set(tag_st["Condition"]["StringEquals"]["ec2:CreateAction"]) == {
        "RunInstances", "CreateSecurityGroup", "CreateLaunchTemplate", "CreateFleet"}


def test_the_new_rule_statement_cannot_stand_alone() -> None:
    # AuthorizeSecurityGroupIngress on the untagged rule resource is allowed unconditionally,
    # but the same call also needs its (tagged) group: that statement must exist.
    stmts = {st["Sid"]: st for st in iam.aws_policy()["Statement"]}
    assert stmts["NestcloudNewRuleInOwnGroup"]["Resource"] == ["arn:aws:ec2:*:*:security-group-rule/*"]
    own = stmts["NestcloudManageOwn"]
    assert "ec2:AuthorizeSecurityGroupIngress" in own["Action"]
    assert "arn:aws:ec2:*:*:security-group/*" in own["Resource"]


def test_aws_policy_is_a_fresh_copy_each_time() -> None:
    p = iam.aws_policy()
    p["Statement"].clear()
    assert iam.aws_policy()["Statement"]


def test_azure_role_definition_shape() -> None:
    role = iam.azure_role_definition()
    assert role["IsCustom"] is True and role["Name"] == "nestcloud operator"
    assert role["AssignableScopes"] == ["/subscriptions/{subscription-id}"]
    assert role["NotActions"] == [] and role["DataActions"] == []
    assert all("*" not in a for a in role["Actions"])
    assert len(role["Actions"]) == len({a.lower() for a in role["Actions"]})
    for action in role["Actions"]:
        ns, *_rest, verb = action.split("/")
        assert ns in {"Microsoft.Resources", "Microsoft.Compute", "Microsoft.Network",
                      "Microsoft.DevTestLab"}, action
        assert verb in {"read", "write", "delete", "action"}, action
    assert set(iam.AZURE_IMPLIED) <= set(role["Actions"])


# -- mapping calls to actions -------------------------------------------------------------


@pytest.mark.parametrize("signing,op,want", [
    ("ec2", "RunInstances", "ec2:RunInstances"),
    ("ssm", "GetParameter", "ssm:GetParameter"),
    ("sts", "GetCallerIdentity", "sts:GetCallerIdentity"),
    ("servicequotas", "GetServiceQuota", "servicequotas:GetServiceQuota"),
    ("pricing", "GetProducts", "pricing:GetProducts"),
])
def test_aws_action(signing: str, op: str, want: str) -> None:
    assert iam.aws_action(signing, op) == want


def test_aws_signing_names_are_the_iam_prefixes() -> None:
    # The mapping relies on botocore's signing name being the IAM prefix for these services.
    import botocore.session

    s = botocore.session.get_session()
    for service, prefix in [("ec2", "ec2"), ("ssm", "ssm"), ("sts", "sts"),
                            ("pricing", "pricing"), ("service-quotas", "servicequotas")]:
        assert s.get_service_model(service).signing_name == prefix


def test_action_allowed_is_case_insensitive_with_wildcards() -> None:
    assert iam.action_allowed("ec2:runinstances", ["ec2:RunInstances"])
    assert iam.action_allowed("Microsoft.Compute/virtualMachines/write",
                              ["microsoft.compute/virtualmachines/*"])
    assert not iam.action_allowed("ec2:RunInstances", ["ec2:Run"])
    assert not iam.action_allowed("ec2:TerminateInstances", ["ec2:Describe*"])


SUBP = "/subscriptions/0000/resourceGroups/g/providers"


@pytest.mark.parametrize("method,path,want", [
    ("PUT", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0?api-version=2024-07-01",
     "Microsoft.Compute/virtualMachines/write"),
    ("GET", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0",
     "Microsoft.Compute/virtualMachines/read"),
    ("GET", f"{SUBP}/Microsoft.Compute/virtualMachines",
     "Microsoft.Compute/virtualMachines/read"),
    ("GET", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0/instanceView",
     "Microsoft.Compute/virtualMachines/instanceView/read"),
    ("DELETE", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0",
     "Microsoft.Compute/virtualMachines/delete"),
    ("POST", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0/retrieveBootDiagnosticsData",
     "Microsoft.Compute/virtualMachines/retrieveBootDiagnosticsData/action"),
    ("POST", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0/deallocate",
     "Microsoft.Compute/virtualMachines/deallocate/action"),
    ("PUT", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0/extensions/boot",
     "Microsoft.Compute/virtualMachines/extensions/write"),
    ("PUT", f"{SUBP}/Microsoft.Network/virtualNetworks/v/subnets/default",
     "Microsoft.Network/virtualNetworks/subnets/write"),
    ("PUT", f"{SUBP}/Microsoft.DevTestLab/schedules/shutdown-computevm-vm-0",
     "Microsoft.DevTestLab/schedules/write"),
    ("GET", "/subscriptions/0000/providers/Microsoft.Compute/skus?$filter=location eq 'eastus'",
     "Microsoft.Compute/skus/read"),
    ("GET", "/subscriptions/0000/providers/Microsoft.Compute/locations/eastus/operations/ab12",
     "Microsoft.Compute/locations/operations/read"),
    ("GET", "/subscriptions/0000/providers/Microsoft.Compute/locations/eastus/usages",
     "Microsoft.Compute/locations/usages/read"),
    ("PUT", "/subscriptions/0000/resourcegroups/nestcloud-x-eastus",
     "Microsoft.Resources/subscriptions/resourceGroups/write"),
    ("HEAD", "/subscriptions/0000/resourcegroups/nestcloud-x-eastus",
     "Microsoft.Resources/subscriptions/resourceGroups/read"),
    ("GET", "/subscriptions/0000/resourcegroups?$filter=tagName eq 'nestcloud:name'",
     "Microsoft.Resources/subscriptions/resourceGroups/read"),
    ("DELETE", "/subscriptions/0000/resourceGroups/g",
     "Microsoft.Resources/subscriptions/resourceGroups/delete"),
    ("GET", "/subscriptions/0000/resourceGroups/g/resources",
     "Microsoft.Resources/subscriptions/resourceGroups/resources/read"),
    ("GET", "/subscriptions/0000/operationresults/eyJqb2I",
     "Microsoft.Resources/subscriptions/operationresults/read"),
    ("GET", "/subscriptions/0000", "Microsoft.Resources/subscriptions/read"),
])
def test_azure_action_from_method_and_path(method: str, path: str, want: str) -> None:
    assert iam.azure_action(method, path) == want
    assert iam.azure_action(method, "http://127.0.0.1:5000" + path) == want


@pytest.mark.parametrize("method,path", [("GET", "/providers/Microsoft.Compute/operations"),
                                         ("GET", "/"), ("TRACE", f"{SUBP}/Microsoft.X/y/z")])
def test_azure_action_rejects_what_it_cannot_map(method: str, path: str) -> None:
    with pytest.raises(ValueError):
        iam.azure_action(method, path)


def test_azure_join_actions_come_from_what_the_body_references() -> None:
    nic = {"location": "eastus", "properties": {"ipConfigurations": [{"name": "c", "properties": {
        "subnet": {"id": f"{SUBP}/Microsoft.Network/virtualNetworks/v/subnets/default"},
        "publicIPAddress": {"id": f"{SUBP}/Microsoft.Network/publicIPAddresses/p"}}}]}}
    assert iam.azure_actions_for_request(
        "PUT", f"{SUBP}/Microsoft.Network/networkInterfaces/n", json.dumps(nic)) == [
        "Microsoft.Network/networkInterfaces/write",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/publicIPAddresses/join/action"]
    vm = {"id": f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0",  # its own id: no join
          "properties": {"networkProfile": {"networkInterfaces": [
              {"id": f"{SUBP}/Microsoft.Network/networkInterfaces/n"}]}}}
    assert iam.azure_actions_for_request(
        "PUT", f"{SUBP}/Microsoft.Compute/virtualMachines/vm-0", vm) == [
        "Microsoft.Compute/virtualMachines/write", "Microsoft.Network/networkInterfaces/join/action"]
    vnet = {"properties": {"subnets": [{"name": "default", "properties": {
        "networkSecurityGroup": {"id": f"{SUBP}/Microsoft.Network/networkSecurityGroups/s"}}}]}}
    assert iam.azure_actions_for_request(
        "PUT", f"{SUBP}/Microsoft.Network/virtualNetworks/v", vnet)[1:] == [
        "Microsoft.Network/networkSecurityGroups/join/action"]
    # A GET's body is not a write; a schedule's targetResourceId is not a join.
    assert iam.azure_actions_for_request("GET", f"{SUBP}/Microsoft.Network/virtualNetworks/v",
                                         vnet) == ["Microsoft.Network/virtualNetworks/read"]
    sched = {"properties": {"targetResourceId": f"{SUBP}/Microsoft.Compute/virtualMachines/x"}}
    assert iam.azure_actions_for_request(
        "PUT", f"{SUBP}/Microsoft.DevTestLab/schedules/s", sched) == [
        "Microsoft.DevTestLab/schedules/write"]


# -- the CLI ------------------------------------------------------------------------------


def _run(*args: str) -> Any:
    return CliRunner().invoke(app, ["iam-policy", *args])


def test_cli_aws_json_prints_exactly_the_policy() -> None:
    res = _run("--provider", "aws", "--json")
    assert res.exit_code == 0
    assert res.stdout == json.dumps(iam.aws_policy(), indent=2) + "\n"
    assert res.stderr == ""


def test_cli_aws_without_json_adds_one_line_on_stderr() -> None:
    res = _run("--provider", "aws")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == iam.aws_policy()
    assert res.stderr == iam.explain("aws") + "\n"
    assert "aws iam create-policy" in res.stderr


def test_cli_azure_prints_the_role_definition() -> None:
    res = _run("-p", "AZURE", "--json")
    assert res.exit_code == 0
    assert json.loads(res.stdout) == iam.azure_role_definition()
    res = _run("-p", "azure")
    assert res.stderr == iam.explain("azure") + "\n"


def test_cli_default_is_all() -> None:
    res = _run()
    assert res.exit_code == 0
    assert json.loads(res.stdout) == {"aws": iam.aws_policy(),
                                      "azure": iam.azure_role_definition()}
    assert res.stderr.splitlines() == [iam.explain("aws") + " (the 'aws' key above)",
                                       iam.explain("azure") + " (the 'azure' key above)"]


def test_cli_unknown_provider_is_exit_2_with_the_known_ones() -> None:
    res = _run("--provider", "gcp")
    assert res.exit_code == 2
    assert res.stdout == ""
    assert res.stderr == "error: --provider 'gcp': expected one of aws, azure, all\n"
    res = _run("--provider", "gcp", "--json")
    assert res.exit_code == 2
    assert json.loads(res.stdout)["error"] == "InputError"


def test_cli_does_not_import_a_cloud_sdk() -> None:
    import subprocess
    import sys

    code = ("import sys; from typer.testing import CliRunner; from nestcloud.cli import app; "
            "r = CliRunner().invoke(app, ['iam-policy', '--json']); assert r.exit_code == 0; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore', "
            "'azure')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60)
    assert out.stdout.strip() == "[]"


# -- AWS: record every call the provider makes ------------------------------------------

AWS_CATALOG = """
schema_version: 1
sources:
  facts: {description: "test facts"}
types:
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-11-29,
     regions: [us-east-1]}
  - {provider: aws, name: m7i.metal-24xl, family: m7i, vcpus: 96, memory_gib: 384,
     arch: x86_64, cpu_vendor: intel, nesting: native, bare_metal: true, nesting_source: facts,
     verified: 2026-11-29, regions: [us-east-1]}
"""

READ_ONLY_PREFIXES = ("ec2:Describe", "ec2:Get", "ssm:Get", "sts:GetCallerIdentity",
                      "pricing:Get", "pricing:Describe", "servicequotas:Get",
                      "servicequotas:List")


@dataclass
class AwsCall:
    action: str
    params: dict[str, Any]
    response: dict[str, Any] | None = None


@dataclass
class AwsCallLog:
    """Every operation any botocore session made, with what was sent and what came back."""

    calls: list[AwsCall] = field(default_factory=list)
    mark: int = 0

    def params(self, params: dict[str, Any], model: Any, context: dict[str, Any],
               **_: Any) -> None:
        # provide-client-params fires once per API call with the caller's own params, before
        # any before-call handler (a Stubber, an injected error) can answer in its place.
        call = AwsCall(iam.aws_action(model.service_model.signing_name, model.name),
                       copy.deepcopy(params))
        context["_nc_call"] = call
        self.calls.append(call)

    def after(self, parsed: dict[str, Any], context: dict[str, Any], **_: Any) -> None:
        call = context.get("_nc_call")
        if call is not None:
            call.response = copy.deepcopy(parsed)

    def actions(self, since: int = 0) -> set[str]:
        return {c.action for c in self.calls[since:]}

    def of(self, action: str) -> list[AwsCall]:
        return [c for c in self.calls if c.action == action]


def _hook_new_sessions(mp: pytest.MonkeyPatch, log: AwsCallLog) -> None:
    """Hook every botocore session created from now on (the provider makes its own)."""
    import botocore.session

    original = botocore.session.Session.__init__

    def init(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        # Each name is a prefix of every <event>.<service>.<operation> event.
        self.register("provide-client-params", log.params)
        self.register("after-call", log.after)

    mp.setattr(botocore.session.Session, "__init__", init)


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> AwsCallLog:
    log = AwsCallLog()
    _hook_new_sessions(monkeypatch, log)
    return log


def _fixed_user_data(mp: pytest.MonkeyPatch) -> None:
    """User data content does not change which APIs are called; keep the renderer out."""
    from nestcloud.bootstrap import RenderedUserData

    def render(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
               provider_name: str = "", extra: str | None = None,
               l2_smoke: bool = False) -> RenderedUserData:
        return RenderedUserData(kind="cloud-config", body=b"#cloud-config\nruncmd: [true]\n",
                                gzipped=False)

    mp.setattr("nestcloud.bootstrap.render_user_data", render)


def _aws_catalog() -> Catalog:
    return parse_catalog(AWS_CATALOG, "iam-test-catalog")


def _run_every_aws_verb(endpoint: str, log: AwsCallLog) -> dict[str, set[str]]:
    """Dry run, launch (SSH CIDR, TTL, public IP, 2 seats), re-launch, a metal launch, list,
    console, verify, down twice. Returns the actions seen per phase."""
    from nestcloud.launcher import launch
    from nestcloud.spec import LaunchSpec
    from providers.aws import AwsProvider

    prov = AwsProvider(region="us-east-1", endpoint_url=endpoint)
    prov.sleep = lambda s: None
    prov.warn = lambda text: None
    cat = _aws_catalog()
    name = "iam" + uuid.uuid4().hex[:8]
    spec = LaunchSpec(provider="aws", type="c8i.large", region="us-east-1", os="al2023",
                      hypervisor="firecracker", name=name, count=2,
                      ssh_cidr="203.0.113.7/32", ttl_seconds=3600, public_ip=True,
                      tags={"team": "lab"})
    phases: dict[str, set[str]] = {}

    def phase(label: str, fn: Any) -> Any:
        start = len(log.calls)
        out = fn()
        phases[label] = log.actions(start)
        return out

    phase("dry-run", lambda: launch(spec, cat, prov, dry_run=True))
    result = phase("launch", lambda: launch(spec, cat, prov))
    assert len(result.instances) == 2
    phase("relaunch", lambda: launch(spec, cat, prov))
    metal = spec.model_copy(update={"type": "m7i.metal-24xl", "name": name + "-m", "count": 1,
                                    "public_ip": False, "ssh_cidr": None})
    phase("launch-metal", lambda: launch(metal, cat, prov))
    listed = phase("list", lambda: prov.list(name))
    assert {i.seat for i in listed} == {0, 1}
    phase("list-all", lambda: prov.list(None))
    phase("console", lambda: prov.console(listed[0]))
    phase("verify", lambda: prov.verify_catalog(cat, "us-east-1"))
    # Above the fleet threshold: launch template + CreateFleet + template delete.
    big = spec.model_copy(update={"name": name + "-f", "count": 5, "public_ip": False,
                                  "ssh_cidr": None})
    phase("launch-fleet", lambda: launch(big, cat, prov))
    phase("quota", lambda: prov.vcpu_quota("us-east-1", "c8i.large"))
    phase("down", lambda: (prov.down(name), prov.down(name + "-m"), prov.down(name + "-f")))
    phase("down-again", lambda: prov.down(name))
    phase("refresh-prices", lambda: _refresh_aws_prices(endpoint, cat))
    return phases


def _refresh_aws_prices(endpoint: str, cat: Catalog) -> None:
    """`catalog refresh-prices --provider aws` through nestcloud's own paginated call; the
    local endpoint has no Price List API, so a Stubber answers (the call is still recorded)."""
    import boto3
    from botocore.stub import Stubber

    from nestcloud.prices import refresh_prices

    client = boto3.Session().client("pricing", region_name="us-east-1", endpoint_url=endpoint)
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [], "FormatVersion": "aws_v1"})
        _, result = refresh_prices(cat, "aws", ["us-east-1"], aws_client=client)
        stub.assert_no_pending_responses()
    assert result.provider == "aws" and result.regions == ["us-east-1"]


@pytest.fixture(scope="module")
def aws_run(moto_endpoint: str) -> tuple[AwsCallLog, dict[str, set[str]]]:
    """Every AWS verb once for the whole module (the endpoint is slow to list types)."""
    log = AwsCallLog()
    with pytest.MonkeyPatch.context() as mp:
        _hook_new_sessions(mp, log)
        _fixed_user_data(mp)
        phases = _run_every_aws_verb(moto_endpoint, log)
    return log, phases


def test_aws_provider_calls_nothing_outside_the_policy(
        aws_run: tuple[AwsCallLog, dict[str, set[str]]]) -> None:
    aws_calls, phases = aws_run
    recorded = aws_calls.actions()
    policy = iam.policy_actions(iam.aws_policy())

    outside = sorted(a for a in recorded if not iam.action_allowed(a, policy))
    assert outside == [], f"the AWS provider calls actions the policy does not grant: {outside}"
    unused = sorted(a for a in policy if a not in recorded and a not in iam.AWS_IMPLIED)
    assert unused == [], f"the policy grants actions no verb uses: {unused}"
    assert not set(iam.AWS_IMPLIED) & recorded, "AWS_IMPLIED lists a directly called action"
    # Sanity: the run did exercise the launch path and the teardown.
    assert {"ec2:RunInstances", "ec2:CreateSecurityGroup", "ec2:AuthorizeSecurityGroupIngress",
            "ec2:TerminateInstances", "ec2:DeleteSecurityGroup",
            "ec2:GetConsoleOutput"} <= recorded
    # A dry run only reads.
    assert all(a.startswith(READ_ONLY_PREFIXES) for a in phases["dry-run"]), phases["dry-run"]


def test_aws_calls_satisfy_the_policy_conditions(
        aws_run: tuple[AwsCallLog, dict[str, set[str]]]) -> None:
    """The tag conditions hold for what was actually sent: creates carry nestcloud:name in
    TagSpecifications, and changes/deletes/console reads hit only resources created that way."""
    aws_calls = aws_run[0]

    def tagged(params: dict[str, Any], rtype: str) -> bool:
        return any(ts.get("ResourceType") == rtype
                   and any(t.get("Key") == TAG_NAME and t.get("Value")
                           for t in ts.get("Tags", []))
                   for ts in params.get("TagSpecifications", []))

    own_instances: set[str] = set()
    own_groups: set[str] = set()
    for call in aws_calls.of("ec2:RunInstances"):
        assert tagged(call.params, "instance") and tagged(call.params, "volume"), call.params
        if call.response:
            own_instances.update(i["InstanceId"] for i in call.response.get("Instances", []))
    for call in aws_calls.of("ec2:CreateSecurityGroup"):
        assert tagged(call.params, "security-group"), call.params
        if call.response and call.response.get("GroupId"):
            own_groups.add(call.response["GroupId"])
    own_templates: set[str] = set()
    for call in aws_calls.of("ec2:CreateLaunchTemplate"):
        assert tagged(call.params, "launch-template"), call.params
        data = call.params["LaunchTemplateData"]
        assert tagged(data, "instance") and tagged(data, "volume"), data
        assert set(data["SecurityGroupIds"]) <= own_groups
        if call.response:
            own_templates.add(call.response["LaunchTemplate"]["LaunchTemplateId"])
    for call in aws_calls.of("ec2:CreateFleet"):
        assert tagged(call.params, "fleet"), call.params
        [cfg] = call.params["LaunchTemplateConfigs"]
        assert cfg["LaunchTemplateSpecification"]["LaunchTemplateId"] in own_templates
        if call.response:
            own_instances.update(i for f in call.response.get("Instances", [])
                                 for i in f["InstanceIds"])
    assert own_instances and own_groups and own_templates
    for call in aws_calls.of("ec2:DeleteLaunchTemplate"):
        assert call.params["LaunchTemplateId"] in own_templates
    # Only the create actions carry tags (the CreateTags condition's ec2:CreateAction list).
    carrying = {c.action.split(":")[1] for c in aws_calls.calls
                if c.params.get("TagSpecifications")}
    assert carrying == {"RunInstances", "CreateSecurityGroup", "CreateLaunchTemplate",
                        "CreateFleet"}
    assert not aws_calls.of("ec2:CreateTags")

    for call in aws_calls.of("ec2:RunInstances"):
        groups = set(call.params.get("SecurityGroupIds", []))
        for nic in call.params.get("NetworkInterfaces", []):
            groups.update(nic.get("Groups", []))
        assert groups and groups <= own_groups, groups
    for call in aws_calls.of("ec2:TerminateInstances"):
        assert set(call.params["InstanceIds"]) <= own_instances
    for call in aws_calls.of("ec2:GetConsoleOutput"):
        assert call.params["InstanceId"] in own_instances
    for action in ("ec2:DeleteSecurityGroup", "ec2:AuthorizeSecurityGroupIngress"):
        for call in aws_calls.of(action):
            assert call.params["GroupId"] in own_groups, (action, call.params)
    for call in aws_calls.of("ssm:GetParameter"):
        assert call.params["Name"].startswith("/aws/service/")


def test_the_recorder_sees_calls_from_any_new_session(moto_endpoint: str,
                                                  aws_calls: AwsCallLog) -> None:
    # Guards the harness itself: a client of a session made outside the provider is recorded.
    import boto3

    boto3.Session().client("ec2", region_name="us-east-1",
                           endpoint_url=moto_endpoint).describe_availability_zones()
    assert aws_calls.actions() == {"ec2:DescribeAvailabilityZones"}
    assert not iam.action_allowed("ec2:DescribeAvailabilityZones",
                                  iam.policy_actions(iam.aws_policy()))


# -- Azure: record every request at the local ARM fake -----------------------------------

AZURE_CATALOG = """
schema_version: 1
sources:
  facts: {description: "shared/FACTS.md"}
types:
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-11-29, regions: [eastus], hyperv_generations: [V1, V2],
     security_type: Standard}
"""
SSH_PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTestsOnly nestcloud-iam-test"


def _arm_fake() -> Any:
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from fakes.arm_fake import SUB, ArmFake

    return ArmFake, SUB


@pytest.fixture(scope="module")
def azure_run() -> Iterator[tuple[list[Any], dict[str, list[Any]]]]:
    """Every Azure verb once; yields the fake's request log and the requests per phase."""
    from nestcloud.bootstrap import RenderedUserData
    from nestcloud.errors import NestcloudError
    from nestcloud.launcher import launch
    from nestcloud.spec import LaunchSpec
    from providers.azure import AzureProvider

    fake_cls, sub = _arm_fake()
    arm = fake_cls().start()

    def render(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
               provider_name: str = "", extra: str | None = None,
               l2_smoke: bool = False) -> RenderedUserData:
        if os_alias.startswith("windows"):
            return RenderedUserData("powershell", b"Install-WindowsFeature Hyper-V", False)
        return RenderedUserData("cloud-config", b"#cloud-config\nruncmd: [true]\n", False)

    try:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr("nestcloud.bootstrap.render_user_data", render)
            prov = AzureProvider(region="eastus", subscription_id=sub, arm_endpoint=arm.url,
                                 client_options={"retry_backoff_factor": 0,
                                                 "polling_interval": 0},
                                 seat_attempts=1)
            cat = parse_catalog(AZURE_CATALOG, "iam-azure-catalog")
            name = "iam" + uuid.uuid4().hex[:8]
            linux = LaunchSpec(provider="azure", type="Standard_D2s_v5", region="eastus",
                               name=name, count=2, key_name=SSH_PUBLIC_KEY,
                               ssh_cidr="203.0.113.7/32", ttl_seconds=3600, public_ip=True,
                               egress="nat", tags={"team": "lab"})
            windows = linux.model_copy(update={"name": name + "-w", "os": "windows-2022",
                                               "hypervisor": "hyperv", "count": 1,
                                               "key_name": None})
            broken = linux.model_copy(update={"name": name + "-x", "count": 1})
            phases: dict[str, list[Any]] = {}

            def phase(label: str, fn: Any) -> Any:
                start = len(arm.requests)
                out = fn()
                phases[label] = list(arm.requests[start:])
                return out

            phase("dry-run", lambda: launch(linux, cat, prov, dry_run=True))
            phase("launch", lambda: launch(linux, cat, prov))
            phase("relaunch", lambda: launch(linux, cat, prov))
            phase("launch-windows", lambda: launch(windows, cat, prov))
            listed = phase("list", lambda: prov.list(name))
            assert {i.seat for i in listed} == {0, 1}
            phase("list-all", lambda: prov.list(None))
            phase("console", lambda: prov.console(listed[0]))
            # A Windows L1's console reads its marker file through Run Command.
            [win] = prov.list(windows.name)
            phase("console-windows", lambda: prov.console(win))
            phase("verify", lambda: prov.verify_catalog(cat, "eastus"))
            arm.fail_vm(f"{broken.name}-0", "AllocationFailed")

            def rollback() -> None:
                with pytest.raises(NestcloudError):
                    launch(broken, cat, prov)

            phase("rollback", rollback)
            phase("down", lambda: (prov.down(name), prov.down(windows.name or "")))
            phase("down-again", lambda: prov.down(name))

            # Into a group the user owns: `down` then removes resource by resource.
            _put_group(arm.url, sub, "shared-rg")
            shared = AzureProvider(region="eastus", subscription_id=sub, arm_endpoint=arm.url,
                                   resource_group="shared-rg",
                                   client_options={"retry_backoff_factor": 0,
                                                   "polling_interval": 0})
            in_group = linux.model_copy(update={"name": name + "-g", "count": 1})
            phase("launch-in-group", lambda: launch(in_group, cat, shared))
            phase("list-in-group", lambda: shared.list(in_group.name))
            phase("down-in-group", lambda: shared.down(in_group.name or ""))
            yield [r for rs in phases.values() for r in rs], phases
    finally:
        arm.stop()


def _put_group(base: str, sub: str, group: str) -> None:
    """Test setup outside the recorded phases: a resource group nestcloud did not make."""
    import urllib.request

    req = urllib.request.Request(
        f"{base}/subscriptions/{sub}/resourcegroups/{group}?api-version=2022-09-01",
        data=json.dumps({"location": "eastus"}).encode(), method="PUT",
        headers={"Content-Type": "application/json", "Authorization": "Bearer setup"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.status in (200, 201)


def _arm_requests(requests: list[Any]) -> list[Any]:
    """ARM control-plane requests only. The fake polls long-running operations at its own
    /operations/<id> (real ARM: Microsoft.<ns>/locations/operations, in AZURE_IMPLIED) and
    serves the serial log at /blobs/ (a SAS URL: data plane, no RBAC action)."""
    out = []
    for r in requests:
        low = r.path.lower()
        if low.startswith(("/operations/", "/blobs/")):
            continue
        assert low.startswith("/subscriptions/"), r.path
        out.append(r)
    return out


def _azure_actions(requests: list[Any]) -> list[tuple[str, str, str]]:
    return [(action, r.method, r.path) for r in _arm_requests(requests)
            for action in iam.azure_actions_for_request(r.method, r.path, r.body)]


def test_azure_provider_calls_nothing_outside_the_role(
        azure_run: tuple[list[Any], dict[str, list[Any]]]) -> None:
    requests, phases = azure_run
    role = iam.role_actions(iam.azure_role_definition())
    seen = _azure_actions(requests)
    outside = sorted({(a, m, p) for a, m, p in seen if not iam.action_allowed(a, role)})
    assert outside == [], f"the Azure provider needs actions the role lacks: {outside}"
    recorded = {a.lower() for a, _, _ in seen}
    unused = sorted(a for a in role if a.lower() not in recorded and a not in iam.AZURE_IMPLIED)
    assert unused == [], f"the role grants actions no verb uses: {unused}"
    # "Implied" must stay true: nothing listed there is in fact requested directly.
    direct = sorted(a for a in iam.AZURE_IMPLIED if a.lower() in recorded)
    assert direct == [], f"AZURE_IMPLIED lists actions that are requested directly: {direct}"
    # The run exercised creation, the Windows extension, the TTL schedule, console, teardown.
    for needed in ("Microsoft.Compute/virtualMachines/write",
                   "Microsoft.Compute/virtualMachines/extensions/write",
                   # the outbound path (NAT gateway on the subnet) and the image's disk size
                   "Microsoft.Network/natGateways/write",
                   "Microsoft.Network/natGateways/join/action",
                   "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/"
                   "read",
                   "Microsoft.DevTestLab/schedules/write",
                   "Microsoft.Network/networkInterfaces/join/action",
                   "Microsoft.Compute/virtualMachines/retrieveBootDiagnosticsData/action",
                   "Microsoft.Compute/virtualMachines/runCommand/action",
                   "Microsoft.Resources/subscriptions/resourceGroups/delete"):
        assert needed.lower() in recorded, needed
    # A dry run only reads.
    dry = {a for a, _, _ in _azure_actions(phases["dry-run"])}
    assert all(a.endswith("/read") for a in dry), dry
