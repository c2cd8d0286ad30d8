"""The least privilege the AWS provider needs, as data: the operator's IAM policy and the
Windows L1's instance role (``AwsProvider.access_policy``, `nestcloud iam-policy`).

The policy lists only what this provider calls; ``tests/aws/test_aws_iam.py`` runs every
verb against the local endpoint, records each call and asserts the recorded set is inside the
policy, and that every entry here is either recorded or listed in ``IMPLIED`` with the reason
no client call names it. Pure data and pure functions: no SDK import.

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

Not covered, on purpose (say so to users rather than widen the policy): a customer-managed
default EBS encryption key (then the KMS key policy must let the caller use it; the AWS-managed
``aws/ebs`` key needs nothing), and the ``AWSServiceRoleForEC2Spot`` service-linked role Spot
launches need to exist (created once per account, by the console or an administrator).
"""

from __future__ import annotations

import copy
import fnmatch
import re
from typing import Any

from nestcloud.errors import InputError
from nestcloud.provider import AccessPolicy
from nestcloud.spec import TAG_NAME
from providers.aws.requests import TAG_L1

# IAM's roleNameType (botocore iam service model): 1-64 of [\w+=,.@-].
ROLE_NAME_RE = re.compile(r"[\w+=,.@-]{1,64}", re.ASCII)

__all__ = ["IMPLIED", "ROLE_NAME_RE", "access_policy", "action_allowed", "aws_action",
           "l1_role", "policy", "policy_actions"]

POLICY_VERSION = "2012-10-17"
ARN = "arn:aws:ec2:*:*"  # any region and account the credentials reach

# "The request tags the new resource with nestcloud:name" / "the resource carries it".
_REQUEST_TAGGED = {"Null": {f"aws:RequestTag/{TAG_NAME}": "false"}}
_RESOURCE_TAGGED = {"Null": {f"aws:ResourceTag/{TAG_NAME}": "false"}}

# Every create call the provider makes that carries TagSpecifications.
_TAGGING_CREATE_ACTIONS = ["CreateSecurityGroup", "RunInstances", "CreateLaunchTemplate",
                           "CreateFleet"]

_POLICY: dict[str, Any] = {
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
IMPLIED: dict[str, str] = {
    "ec2:CreateTags": "checked by IAM on every create call that carries TagSpecifications "
                      "(ec2:CreateAction = " + " / ".join(_TAGGING_CREATE_ACTIONS) + ")",
}

# botocore signing name -> IAM service prefix, where they differ or to be explicit.
_IAM_PREFIX: dict[str, str] = {"ec2": "ec2", "ssm": "ssm", "sts": "sts", "pricing": "pricing",
                               "servicequotas": "servicequotas"}


def policy(instance_role: str | None = None) -> dict[str, Any]:
    """The IAM policy document (a fresh copy: callers may change it).

    ``instance_role``: the role inside the instance profile given to ``launch
    --instance-profile``; the policy then also lets the operator pass that role (only it) to
    the instances. Without it nothing in the policy can hand a role to an instance.
    """
    doc = copy.deepcopy(_POLICY)
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
        # (files/set-tag.ps1, Set-NcTag).
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


def l1_role() -> dict[str, Any]:
    """What a Windows L1 on EC2 needs to report readiness: the instance role's trust policy
    and permissions policy (``aws iam create-role --assume-role-policy-document`` /
    ``put-role-policy``), then an instance profile holding that role."""
    return {"TrustPolicy": copy.deepcopy(_L1_TRUST_POLICY),
            "Policy": copy.deepcopy(_L1_ROLE_POLICY)}


def aws_action(signing_name: str, operation: str) -> str:
    """The IAM action an API operation needs: ``ec2`` + ``RunInstances`` -> ec2:RunInstances."""
    return f"{_IAM_PREFIX.get(signing_name, signing_name)}:{operation}"


def policy_actions(doc: dict[str, Any]) -> set[str]:
    """Every action an Allow statement of the policy document ``doc`` names."""
    out: set[str] = set()
    for st in doc.get("Statement", []):
        if st.get("Effect") != "Allow":
            continue
        acts = st.get("Action", [])
        out.update([acts] if isinstance(acts, str) else acts)
    return out


def action_allowed(action: str, patterns: set[str] | list[str]) -> bool:
    """IAM/RBAC action matching: case-insensitive, ``*`` and ``?`` wildcards."""
    low = action.lower()
    return any(fnmatch.fnmatchcase(low, p.lower()) for p in patterns)


EXPLAIN = ("nestcloud: least-privilege IAM policy for the AWS provider (create it with "
           "`aws iam create-policy --policy-name nestcloud --policy-document file://p.json`"
           "); a Windows L1 also needs an instance profile to report readiness: "
           "`nestcloud iam-policy -p aws --l1-role`")
EXPLAIN_L1 = ("nestcloud: the Windows L1's instance role: `aws iam create-role --role-name R "
              "--assume-role-policy-document` with TrustPolicy, `aws iam put-role-policy "
              "--role-name R --policy-name nestcloud-l1 --policy-document` with Policy, "
              "`aws iam create-instance-profile --instance-profile-name R` and "
              "`add-role-to-instance-profile`; then `nestcloud launch --instance-profile R`, "
              "and `nestcloud iam-policy -p aws --instance-role R` for the operator. It may "
              "set only the nestcloud:l1 tag, on nestcloud-tagged instances (not only on "
              "itself: no documented condition key was found for that)")


def access_policy(instance_role: str | None = None, l1: bool = False) -> AccessPolicy:
    """AwsProvider.access_policy: the operator's policy (``instance_role``: it may also pass
    that role to instances), or with ``l1`` the Windows L1's instance role. InputError for a
    role name IAM would refuse, or for ``l1`` with ``instance_role`` (the role is printed
    itself; the operator's PassRole comes with the plain policy)."""
    if l1:
        if instance_role is not None:
            raise InputError("--l1-role prints the instance role itself: use --instance-role "
                             "separately, for the operator policy")
        return AccessPolicy(document=l1_role(), explain=EXPLAIN_L1)
    try:
        doc = policy(instance_role)
    except ValueError as exc:
        raise InputError(f"--instance-role: {exc}") from None
    return AccessPolicy(document=doc, explain=EXPLAIN)
