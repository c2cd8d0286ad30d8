"""The AWS provider's least-privilege documents, through its ``access_policy`` hook: the
provider calls nothing outside the operator's policy and the policy holds nothing it does not
need; the Windows L1's instance role allows exactly the readiness tag its script writes."""

from __future__ import annotations

import copy
import json
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest

from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.errors import InputError
from nestcloud.provider import AccessPolicy, UserDataEnvelope
from nestcloud.spec import TAG_NAME
from providers.aws import AwsProvider
from providers.aws import iam

# -- the documents themselves -------------------------------------------------------------

# Condition keys and operators the policy may use: each one is cited in providers/aws/iam.py.
ALLOWED_CONDITION_KEYS = {"ec2:CreateAction", f"aws:RequestTag/{TAG_NAME}",
                          f"aws:ResourceTag/{TAG_NAME}"}
ALLOWED_OPERATORS = {"Null", "StringEquals"}


def test_the_provider_declares_its_access_policy() -> None:
    assert AwsProvider.capabilities.access_policy is True
    got = AwsProvider.access_policy()
    assert isinstance(got, AccessPolicy)
    assert got.document == iam.policy()
    assert got.explain == (
        "nestcloud: least-privilege IAM policy for the AWS provider (create it with "
        "`aws iam create-policy --policy-name nestcloud --policy-document file://p.json`); a "
        "Windows L1 also needs an instance profile to report readiness: "
        "`nestcloud iam-policy -p aws --l1-role`")


def test_the_policy_is_a_valid_least_privilege_document() -> None:
    policy = AwsProvider.access_policy().document
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
    stmts = {st["Sid"]: st for st in AwsProvider.access_policy().document["Statement"]}
    assert stmts["NestcloudNewRuleInOwnGroup"]["Resource"] == [
        "arn:aws:ec2:*:*:security-group-rule/*"]
    own = stmts["NestcloudManageOwn"]
    assert "ec2:AuthorizeSecurityGroupIngress" in own["Action"]
    assert "arn:aws:ec2:*:*:security-group/*" in own["Resource"]


def test_the_policy_is_a_fresh_copy_each_time() -> None:
    p = AwsProvider.access_policy().document
    p["Statement"].clear()
    assert AwsProvider.access_policy().document["Statement"]
    role = AwsProvider.access_policy(l1=True).document
    role["Policy"]["Statement"].clear()
    assert AwsProvider.access_policy(l1=True).document["Policy"]["Statement"]


# -- iam:PassRole and the Windows L1's instance role -----------------------------------------


def test_pass_role_only_when_asked_and_only_that_role() -> None:
    base = AwsProvider.access_policy().document
    assert "iam:PassRole" not in iam.policy_actions(base)
    with_role = AwsProvider.access_policy("nc-l1").document
    assert with_role["Statement"][:-1] == base["Statement"]
    assert with_role["Statement"][-1] == {"Sid": "NestcloudPassL1Role", "Effect": "Allow",
                                          "Action": "iam:PassRole",
                                          "Resource": "arn:aws:iam::*:role/nc-l1"}


@pytest.mark.parametrize("bad", ["", "a b", "x" * 65, "role/*", "*",
                                 # `$` matches before a final newline: the whole name counts.
                                 "nc-l1\n"])
def test_a_bad_role_name_is_bad_input_naming_the_flag(bad: str) -> None:
    with pytest.raises(InputError) as info:
        AwsProvider.access_policy(instance_role=bad)
    assert info.value.message == ("--instance-role: not an IAM role name (1-64 of letters, "
                                  f"digits and + = , . @ _ -): {bad!r}")


def test_the_l1_role_with_an_instance_role_is_bad_input() -> None:
    with pytest.raises(InputError) as info:
        AwsProvider.access_policy(instance_role="r", l1=True)
    assert info.value.message == ("--l1-role prints the instance role itself: use "
                                  "--instance-role separately, for the operator policy")


def test_the_l1_role_may_only_set_the_readiness_tag_on_nestcloud_instances() -> None:
    from nestcloud.bootstrap.profiles import TAG_L1

    got = AwsProvider.access_policy(l1=True)
    role = got.document
    assert role["TrustPolicy"] == {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
         "Action": "sts:AssumeRole"}]}
    [st] = role["Policy"]["Statement"]
    assert st == {"Sid": "NestcloudL1ReportsReadiness", "Effect": "Allow",
                  "Action": "ec2:CreateTags", "Resource": "arn:aws:ec2:*:*:instance/*",
                  "Condition": {"Null": {"aws:ResourceTag/nestcloud:name": "false"},
                                "ForAllValues:StringEquals": {"aws:TagKeys": [TAG_L1]}}}
    assert got.explain.startswith("nestcloud: the Windows L1's instance role: `aws iam "
                                  "create-role --role-name R --assume-role-policy-document`")
    assert "`nestcloud launch --instance-profile R`" in got.explain
    # It is what the L1 does: New-EC2Tag (ec2:CreateTags) of $NcTag on its own instance.
    script = AwsProvider.capabilities.user_data.windows_tag_script
    assert "New-EC2Tag -Region $region -Resource $id -Tag @{Key = $NcTag; Value = $Value}" \
        in script


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
    assert iam.action_allowed("ec2:DescribeImages", ["ec2:describe*"])
    assert not iam.action_allowed("ec2:RunInstances", ["ec2:Run"])
    assert not iam.action_allowed("ec2:TerminateInstances", ["ec2:Describe*"])


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
    prov = AwsProvider(region="us-east-1", endpoint_url=endpoint)
    prov.sleep = lambda s: None
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
    """`catalog refresh-prices --provider aws`: the provider's fetch_prices, through its own
    paginated call; the local endpoint has no Price List API, so a Stubber answers (the call
    is still recorded)."""
    import boto3
    from botocore.stub import Stubber

    client = boto3.Session().client("pricing", region_name="us-east-1", endpoint_url=endpoint)
    with Stubber(client) as stub:
        stub.add_response("get_products", {"PriceList": [], "FormatVersion": "aws_v1"})
        got = AwsProvider.fetch_prices(["us-east-1"], client=client)
        stub.assert_no_pending_responses()
    assert got.table == {} and got.spot is False


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
    policy = iam.policy_actions(AwsProvider.access_policy().document)

    outside = sorted(a for a in recorded if not iam.action_allowed(a, policy))
    assert outside == [], f"the AWS provider calls actions the policy does not grant: {outside}"
    unused = sorted(a for a in policy if a not in recorded and a not in iam.IMPLIED)
    assert unused == [], f"the policy grants actions no verb uses: {unused}"
    assert not set(iam.IMPLIED) & recorded, "IMPLIED lists a directly called action"
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
                                  iam.policy_actions(iam.policy()))
