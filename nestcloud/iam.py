"""The least privilege nestcloud needs: an AWS IAM policy and an Azure custom role, as data.

Both documents list only what the built-in providers call (``providers/aws.py``,
``providers/azure.py``); ``tests/test_iam.py`` runs every provider verb against the local
endpoints, records each call and asserts the recorded set is inside these documents, and that
every entry here is either recorded or listed in ``AWS_IMPLIED`` / ``AZURE_IMPLIED`` with the
reason no client call names it. Pure data and pure functions: no SDK import.

Sources for the condition keys and resource shapes (nothing here is invented):

- ``ec2:CreateAction`` on ``ec2:CreateTags`` limits tagging to tag-on-create: AWS EC2 User
  Guide, "Grant permission to tag Amazon EC2 resources during creation"
  (docs.aws.amazon.com/AWSEC2/latest/UserGuide/supported-iam-actions-tagging.html).
- ``aws:RequestTag/<key>`` on the created instance/volume/launch-template/fleet ARNs and
  ``aws:ResourceTag/<key>`` on existing ones, with RunInstances split by resource type, is the
  pattern of the Karpenter controller policy (aws/karpenter-provider-aws,
  website/content/en/preview/reference/cloudformation.md: AllowScopedEC2InstanceAccessActions,
  AllowScopedEC2InstanceActionsWithTags, AllowScopedResourceCreationTagging,
  AllowScopedDeletion), which is also where the public-parameter ARN
  ``arn:aws:ssm:<region>::parameter/aws/service/*`` (empty account) and ``pricing:GetProducts``
  on ``"*"`` (AllowPricingReadActions) come from.
- ``"Null": {"<key>": "false"}`` means "the key is present": IAM User Guide, condition
  operators, "Condition operator to check existence of condition keys".
- ``iam:PassRole`` on the role's ARN for launching with an instance profile: EC2 User Guide,
  "Grant permissions to attach an IAM role to an instance"
  (docs.aws.amazon.com/AWSEC2/latest/UserGuide/permission-to-pass-iam-roles.html).
- The Windows L1 instance role: ``ForAllValues:StringEquals`` on ``aws:TagKeys`` ("the only tag
  key in the request must be ..."): IAM User Guide, "IAM: Add a specific tag with specific
  values"; ``aws:ResourceTag/<key>`` on ``ec2:CreateTags``: IAM User Guide, "Single-valued
  context key policy examples". It is NOT limited to the calling instance itself: the
  ``${ec2:SourceInstanceARN}`` policy variable exists (AWS managed policy
  AWSElasticDisasterRecoveryEc2InstancePolicy uses it), but no AWS document found here says a
  condition key compares it with the instance being tagged (``aws:ARN`` is undocumented), so the
  role may set only the ``nestcloud:l1`` tag, only on instances tagged ``nestcloud:name``.
- ``sts:GetCallerIdentity`` needs no permission (STS API reference, GetCallerIdentity); it is
  listed anyway so the document names every call nestcloud makes.
- Azure: the action names follow the ARM operation scheme ``{Namespace}/{type}[/{type}]/
  {read|write|delete|<name>/action}``; the join/action linked-access checks and
  ``Microsoft.Compute/locations/*`` / ``Microsoft.Network/locations/*`` async-operation reads are
  the ones the built-in "Virtual Machine Contributor" role (9980e02c-c2be-4d73-94e8-173b1dc7cf3c,
  MicrosoftDocs azure-docs built-in-roles/compute.md) grants for the same VM/NIC/disk work. A
  subnet that uses a NAT gateway needs ``Microsoft.Network/natGateways/join/action``, the same
  linked-access check as for NSGs and public IPs (the action names follow the scheme above).

Not covered, on purpose (say so to users rather than widen the policy): a customer-managed
default EBS encryption key (then the KMS key policy must let the caller use it; the AWS-managed
``aws/ebs`` key needs nothing), and the ``AWSServiceRoleForEC2Spot`` service-linked role Spot
launches need to exist (created once per account, by the console or an administrator).
"""

from __future__ import annotations

import copy
import fnmatch
import json
import re
from typing import Any
from urllib.parse import urlsplit

from nestcloud.spec import TAG_NAME

TAG_L1 = "nestcloud:l1"  # nestcloud.bootstrap.profiles.TAG_L1 (a test keeps them equal)
# IAM's roleNameType (botocore iam service model): 1-64 of [\w+=,.@-].
ROLE_NAME_RE = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)

__all__ = [
    "AWS_IMPLIED", "AZURE_IMPLIED", "action_allowed", "aws_action", "aws_l1_role",
    "aws_policy",
    "azure_actions_for_request", "azure_role_definition", "policy_actions", "role_actions",
]

POLICY_VERSION = "2012-10-17"
ARN = "arn:aws:ec2:*:*"  # any region and account the credentials reach

# "The request tags the new resource with nestcloud:name" / "the resource carries it".
_REQUEST_TAGGED = {"Null": {f"aws:RequestTag/{TAG_NAME}": "false"}}
_RESOURCE_TAGGED = {"Null": {f"aws:ResourceTag/{TAG_NAME}": "false"}}

# Every create call the provider makes that carries TagSpecifications.
_TAGGING_CREATE_ACTIONS = ["CreateSecurityGroup", "RunInstances", "CreateLaunchTemplate",
                           "CreateFleet"]

_AWS_POLICY: dict[str, Any] = {
    "Version": POLICY_VERSION,
    "Statement": [
        {
            # Describe* calls do not support resource-level permissions: Resource must be "*".
            "Sid": "NestcloudRead",
            "Effect": "Allow",
            "Action": [
                "ec2:DescribeImages",            # image by id; RHEL by owner+name
                "ec2:DescribeInstanceTypes",     # nesting/metal check, catalog verify
                "ec2:DescribeInstances",         # ls, reconcile, read-back, terminate waiter
                "ec2:DescribeSecurityGroups",    # find the group of a name
                "ec2:DescribeSubnets",           # the default VPC's default subnets
                "ec2:DescribeLaunchTemplates",   # who holds a launch lock; down/reap leftovers
            ],
            "Resource": "*",
        },
        {
            "Sid": "NestcloudPublicImageParameters",
            "Effect": "Allow",
            "Action": ["ssm:GetParameter"],
            "Resource": "arn:aws:ssm:*::parameter/aws/service/*",
        },
        {
            # `catalog refresh-prices --provider aws`; the Price List API has no resources.
            "Sid": "NestcloudPriceList",
            "Effect": "Allow",
            "Action": ["pricing:GetProducts"],
            "Resource": "*",
        },
        {
            # Quota check before a region is tried (EC2 "Running On-Demand Standard"
            # vCPU quota, L-1216C47A). Read-only; no resource scoping is claimed here.
            "Sid": "NestcloudQuotaRead",
            "Effect": "Allow",
            "Action": ["servicequotas:GetServiceQuota"],
            "Resource": "*",
        },
        {
            "Sid": "NestcloudWhoAmI",
            "Effect": "Allow",
            "Action": ["sts:GetCallerIdentity"],
            "Resource": "*",
        },
        {
            # What a launch uses but does not create or own: AMIs and their snapshots, the
            # default subnet, the ENI and spot request RunInstances makes untagged, key pairs.
            "Sid": "NestcloudLaunchUsing",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            "Resource": [
                "arn:aws:ec2:*::image/*",
                "arn:aws:ec2:*::snapshot/*",
                f"{ARN}:subnet/*",
                f"{ARN}:network-interface/*",
                f"{ARN}:key-pair/*",
                f"{ARN}:spot-instances-request/*",
            ],
        },
        {
            # Instances join only nestcloud's own security groups.
            "Sid": "NestcloudLaunchIntoOwnGroup",
            "Effect": "Allow",
            "Action": ["ec2:RunInstances", "ec2:CreateFleet"],
            "Resource": [f"{ARN}:security-group/*", f"{ARN}:launch-template/*"],
            "Condition": copy.deepcopy(_RESOURCE_TAGGED),
        },
        {
            # Anything nestcloud creates must be tagged nestcloud:name in the create call.
            "Sid": "NestcloudCreateOnlyTagged",
            "Effect": "Allow",
            "Action": ["ec2:CreateSecurityGroup", "ec2:RunInstances", "ec2:CreateFleet",
                       "ec2:CreateLaunchTemplate"],
            "Resource": [f"{ARN}:instance/*", f"{ARN}:volume/*", f"{ARN}:security-group/*",
                         f"{ARN}:launch-template/*", f"{ARN}:fleet/*"],
            "Condition": copy.deepcopy(_REQUEST_TAGGED),
        },
        {
            "Sid": "NestcloudGroupInAnyVpc",
            "Effect": "Allow",
            "Action": ["ec2:CreateSecurityGroup"],
            "Resource": [f"{ARN}:vpc/*"],
        },
        {
            # Tags only as part of those creates, never on existing resources.
            "Sid": "NestcloudTagOnCreate",
            "Effect": "Allow",
            "Action": ["ec2:CreateTags"],
            "Resource": [f"{ARN}:instance/*", f"{ARN}:volume/*", f"{ARN}:security-group/*",
                         f"{ARN}:launch-template/*", f"{ARN}:fleet/*"],
            "Condition": {"StringEquals": {"ec2:CreateAction": list(_TAGGING_CREATE_ACTIONS)},
                          **copy.deepcopy(_REQUEST_TAGGED)},
        },
        {
            # Change, read the console of, or remove only what carries nestcloud:name.
            "Sid": "NestcloudManageOwn",
            "Effect": "Allow",
            "Action": [
                "ec2:AuthorizeSecurityGroupIngress",  # SSH only from --ssh-cidr
                "ec2:DeleteLaunchTemplate",           # after each launch (its lock); down/reap
                "ec2:DeleteSecurityGroup",
                "ec2:GetConsoleOutput",               # readiness marker
                "ec2:TerminateInstances",
            ],
            "Resource": [f"{ARN}:instance/*", f"{ARN}:security-group/*",
                         f"{ARN}:launch-template/*"],
            "Condition": copy.deepcopy(_RESOURCE_TAGGED),
        },
        {
            # A new ingress rule is its own (untagged) resource; the statement above still
            # requires its group to be nestcloud's.
            "Sid": "NestcloudNewRuleInOwnGroup",
            "Effect": "Allow",
            "Action": ["ec2:AuthorizeSecurityGroupIngress"],
            "Resource": [f"{ARN}:security-group-rule/*"],
        },
    ],
}

#: Actions in the policy that no API call names directly, and why IAM still checks them.
AWS_IMPLIED: dict[str, str] = {
    "ec2:CreateTags": "checked by IAM on every create call that carries TagSpecifications "
                      "(ec2:CreateAction = " + " / ".join(_TAGGING_CREATE_ACTIONS) + ")",
}

# botocore signing name -> IAM service prefix, where they differ or to be explicit.
_IAM_PREFIX: dict[str, str] = {"ec2": "ec2", "ssm": "ssm", "sts": "sts", "pricing": "pricing",
                               "servicequotas": "servicequotas"}


def aws_policy(instance_role: str | None = None) -> dict[str, Any]:
    """The IAM policy document (a fresh copy: callers may change it).

    ``instance_role``: the role inside the instance profile given to ``launch
    --instance-profile``; the policy then also lets the operator pass that role (only it) to
    the instances. Without it nothing in the policy can hand a role to an instance.
    """
    doc = copy.deepcopy(_AWS_POLICY)
    if instance_role is not None:
        if not ROLE_NAME_RE.fullmatch(instance_role):
            raise ValueError(f"not an IAM role name (1-64 of letters, digits and + = , . @ _ "
                             f"-): {instance_role!r}")
        doc["Statement"].append({
            "Sid": "NestcloudPassL1Role",
            "Effect": "Allow",
            "Action": "iam:PassRole",
            "Resource": f"arn:aws:iam::*:role/{instance_role}",
        })
    return doc


_L1_TRUST_POLICY: dict[str, Any] = {
    "Version": POLICY_VERSION,
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "ec2.amazonaws.com"},
                   "Action": "sts:AssumeRole"}],
}

_L1_ROLE_POLICY: dict[str, Any] = {
    "Version": POLICY_VERSION,
    "Statement": [{
        # The Windows L1 writes its readiness JSON as its own nestcloud:l1 tag
        # (nestcloud/bootstrap/files/l1-windows.ps1, Set-NcTag).
        "Sid": "NestcloudL1ReportsReadiness",
        "Effect": "Allow",
        "Action": "ec2:CreateTags",
        "Resource": f"{ARN}:instance/*",
        "Condition": {
            **_RESOURCE_TAGGED,
            "ForAllValues:StringEquals": {"aws:TagKeys": [TAG_L1]},
        },
    }],
}


def aws_l1_role() -> dict[str, Any]:
    """What a Windows L1 on EC2 needs to report readiness: the instance role's trust policy
    and permissions policy (``aws iam create-role --assume-role-policy-document`` /
    ``put-role-policy``), then an instance profile holding that role."""
    return {"TrustPolicy": copy.deepcopy(_L1_TRUST_POLICY),
            "Policy": copy.deepcopy(_L1_ROLE_POLICY)}


def aws_action(signing_name: str, operation: str) -> str:
    """The IAM action an API operation needs: ``ec2`` + ``RunInstances`` -> ec2:RunInstances."""
    return f"{_IAM_PREFIX.get(signing_name, signing_name)}:{operation}"


def policy_actions(policy: dict[str, Any]) -> set[str]:
    """Every action an Allow statement of ``policy`` names."""
    out: set[str] = set()
    for st in policy.get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        acts = st.get("Action", [])
        out.update([acts] if isinstance(acts, str) else acts)
    return out


def action_allowed(action: str, patterns: set[str] | list[str]) -> bool:
    """IAM/RBAC action matching: case-insensitive, ``*`` and ``?`` wildcards."""
    low = action.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


# -- Azure -------------------------------------------------------------------------------------

_AZURE_ROLE: dict[str, Any] = {
    "Name": "nestcloud operator",
    "IsCustom": True,
    "Description": "What nestcloud needs to launch, list, read the console of and remove its "
                   "own nested-virtualization VMs (one resource group per launch).",
    "Actions": [
        # resource groups: one per launch, found by tags, deleted whole
        "Microsoft.Resources/subscriptions/resourceGroups/read",
        "Microsoft.Resources/subscriptions/resourceGroups/resources/read",  # what `down` removes
        "Microsoft.Resources/subscriptions/resourceGroups/write",
        "Microsoft.Resources/subscriptions/resourceGroups/delete",
        "Microsoft.Resources/subscriptions/operationresults/read",
        # VM sizes: vCPUs, memory, generations, restrictions
        "Microsoft.Compute/skus/read",
        # marketplace images: the versions behind `latest` and the image's OS disk size
        "Microsoft.Compute/locations/publishers/artifacttypes/offers/skus/versions/read",
        # vCPU usage against quota, checked before any write (Compute usages API)
        "Microsoft.Compute/locations/usages/read",
        # VMs and the bootstrap extension (Windows)
        "Microsoft.Compute/virtualMachines/read",
        "Microsoft.Compute/virtualMachines/write",
        "Microsoft.Compute/virtualMachines/delete",
        "Microsoft.Compute/virtualMachines/retrieveBootDiagnosticsData/action",
        # Windows readiness: a read-only Run Command script prints the L1's marker file
        "Microsoft.Compute/virtualMachines/runCommand/action",
        "Microsoft.Compute/virtualMachines/extensions/read",
        "Microsoft.Compute/virtualMachines/extensions/write",
        # the OS disk the VM create makes; removed by id when the group is the user's
        "Microsoft.Compute/disks/write",
        "Microsoft.Compute/disks/delete",
        # polling long-running compute operations
        "Microsoft.Compute/locations/operations/read",
        # network: NSG (no inbound but --ssh-cidr), VNet/subnet, the outbound path (a NAT
        # gateway with its public IP, or a public IP per VM), NIC
        "Microsoft.Network/networkSecurityGroups/read",
        "Microsoft.Network/networkSecurityGroups/write",
        "Microsoft.Network/networkSecurityGroups/delete",
        "Microsoft.Network/networkSecurityGroups/join/action",
        "Microsoft.Network/virtualNetworks/read",
        "Microsoft.Network/virtualNetworks/write",
        "Microsoft.Network/virtualNetworks/delete",
        "Microsoft.Network/virtualNetworks/subnets/join/action",
        "Microsoft.Network/publicIPAddresses/read",
        "Microsoft.Network/publicIPAddresses/write",
        "Microsoft.Network/publicIPAddresses/delete",
        "Microsoft.Network/publicIPAddresses/join/action",
        "Microsoft.Network/natGateways/read",
        "Microsoft.Network/natGateways/write",
        "Microsoft.Network/natGateways/delete",
        "Microsoft.Network/natGateways/join/action",
        "Microsoft.Network/networkInterfaces/read",
        "Microsoft.Network/networkInterfaces/write",
        "Microsoft.Network/networkInterfaces/delete",
        "Microsoft.Network/networkInterfaces/join/action",
        "Microsoft.Network/locations/operations/read",
        # auto-shutdown at the TTL
        "Microsoft.DevTestLab/schedules/read",
        "Microsoft.DevTestLab/schedules/write",
        "Microsoft.DevTestLab/schedules/delete",
    ],
    "NotActions": [],
    "DataActions": [],
    "NotDataActions": [],
    "AssignableScopes": ["/subscriptions/{subscription-id}"],
}

#: Role actions no request names directly, and why ARM still checks them.
AZURE_IMPLIED: dict[str, str] = {
    "Microsoft.Compute/locations/operations/read": "polling a long-running compute operation "
                                                   "(the Azure-AsyncOperation URL ARM returns)",
    "Microsoft.Network/locations/operations/read": "polling a long-running network operation",
    "Microsoft.Resources/subscriptions/operationresults/read": "polling a resource-group delete "
                                                               "(the Location URL ARM returns; "
                                                               "\"Get the subscription operation "
                                                               "results\" in the built-in roles)",
    "Microsoft.Compute/disks/write": "the VM create makes its OS disk; the built-in Virtual "
                                     "Machine Contributor role grants this for the same work "
                                     "(whether ARM checks it for an implicit OS disk is "
                                     "unconfirmed)",
}


def azure_role_definition() -> dict[str, Any]:
    """The custom role (``az role definition create --role-definition @file.json``)."""
    return copy.deepcopy(_AZURE_ROLE)


def role_actions(role: dict[str, Any]) -> list[str]:
    return list(role.get("Actions", []))


_VERBS = {"GET": "read", "HEAD": "read", "PUT": "write", "PATCH": "write", "DELETE": "delete"}
# Canonical casing of the Microsoft.Resources types (ARM paths are case-insensitive).
_RESOURCES_TYPES = {"resourcegroups": "resourceGroups", "resources": "resources",
                    "operationresults": "operationresults", "locations": "locations",
                    "providers": "providers", "tagnames": "tagNames"}
# Referenced resource type -> the linked-access check ARM makes when another resource uses it.
_JOIN: dict[str, str] = {
    "microsoft.network/virtualnetworks/subnets": "Microsoft.Network/virtualNetworks/subnets/join/action",
    "microsoft.network/networksecuritygroups": "Microsoft.Network/networkSecurityGroups/join/action",
    "microsoft.network/publicipaddresses": "Microsoft.Network/publicIPAddresses/join/action",
    "microsoft.network/networkinterfaces": "Microsoft.Network/networkInterfaces/join/action",
    "microsoft.network/natgateways": "Microsoft.Network/natGateways/join/action",
}


def azure_action(method: str, url: str) -> str:
    """The RBAC action an ARM request needs, from its method and path.

    ``PUT .../providers/Microsoft.Compute/virtualMachines/vm1`` ->
    ``Microsoft.Compute/virtualMachines/write``; ``POST .../virtualMachines/vm1/deallocate`` ->
    ``Microsoft.Compute/virtualMachines/deallocate/action``; ``GET
    /subscriptions/s/resourcegroups`` -> ``Microsoft.Resources/subscriptions/resourceGroups/read``.
    """
    method = method.upper()
    segs = [s for s in urlsplit(url).path.split("/") if s]
    low = [s.lower() for s in segs]
    if not low or low[0] != "subscriptions" or len(segs) < 2:
        raise ValueError(f"not a subscription-scoped ARM path: {url!r}")
    if "providers" in low[2:]:
        p = len(low) - 1 - low[::-1].index("providers")
        namespace, rest = segs[p + 1], segs[p + 2:]
    else:
        namespace = "Microsoft.Resources"
        rest = ["subscriptions", segs[1], *segs[2:]]
        rest = [_RESOURCES_TYPES.get(s.lower(), s) if i % 2 == 0 else s
                for i, s in enumerate(rest)]
    if not rest:
        raise ValueError(f"no resource type in ARM path: {url!r}")
    if method == "POST":
        # .../type/name/<action>: the last segment names the action.
        if len(rest) % 2 == 1 and len(rest) >= 3:
            types, verb = rest[:-1][0::2], f"{rest[-1]}/action"
        else:
            types, verb = rest[0::2], "action"
    elif method in _VERBS:
        types, verb = rest[0::2], _VERBS[method]
    else:
        raise ValueError(f"unsupported HTTP method {method!r}")
    return "/".join([namespace, *types, verb])


def _resource_type_of(resource_id: str) -> str | None:
    segs = [s for s in resource_id.split("/") if s]
    low = [s.lower() for s in segs]
    if "providers" not in low:
        return None
    p = len(low) - 1 - low[::-1].index("providers")
    rest = low[p + 2:]
    return "/".join([low[p + 1], *rest[0::2]])


def _referenced_ids(body: Any) -> list[str]:
    """ARM ids this body points at through ``{"id": ...}`` references (not its own id)."""
    found: list[str] = []

    def walk(node: Any, top: bool) -> None:
        if isinstance(node, dict):
            ref = node.get("id")
            if not top and isinstance(ref, str) and ref.startswith("/subscriptions/"):
                found.append(ref)
            for value in node.values():
                walk(value, False)
        elif isinstance(node, list):
            for value in node:
                walk(value, False)

    walk(body, True)
    return found


def azure_actions_for_request(method: str, url: str, body: Any = None) -> list[str]:
    """The request's own action plus the join checks ARM makes for what its body references."""
    actions = [azure_action(method, url)]
    if isinstance(body, (bytes, str)) and body:
        try:
            body = json.loads(body)
        except ValueError:
            body = None
    if method.upper() in ("PUT", "PATCH") and isinstance(body, (dict, list)):
        for ref in _referenced_ids(body):
            join = _JOIN.get(_resource_type_of(ref) or "")
            if join and join not in actions:
                actions.append(join)
    return actions


def explain(provider: str) -> str:
    """One line for stderr saying what the printed document is and how to use it."""
    if provider == "aws":
        return ("nestcloud: least-privilege IAM policy for the AWS provider (create it with "
                "`aws iam create-policy --policy-name nestcloud --policy-document file://p.json`"
                "); a Windows L1 also needs an instance profile to report readiness: "
                "`nestcloud iam-policy -p aws --l1-role`")
    if provider == "aws-l1":
        return ("nestcloud: the Windows L1's instance role: `aws iam create-role --role-name R "
                "--assume-role-policy-document` with TrustPolicy, `aws iam put-role-policy "
                "--role-name R --policy-name nestcloud-l1 --policy-document` with Policy, "
                "`aws iam create-instance-profile --instance-profile-name R` and "
                "`add-role-to-instance-profile`; then `nestcloud launch --instance-profile R`, "
                "and `nestcloud iam-policy -p aws --instance-role R` for the operator. It may "
                "set only the nestcloud:l1 tag, on nestcloud-tagged instances (not only on "
                "itself: no documented condition key was found for that)")
    return ("nestcloud: Azure custom role for the Azure provider (replace {subscription-id}, "
            "then `az role definition create --role-definition @role.json`)")
