"""The AWS provider: EC2 instances that can run their own hypervisor.

Every verb acts on a named group found by the ``nestcloud:name`` tag. This module does the
I/O (reads a launch into a plan, sends what requests.py builds from it, reads it back); the
fleet path is fleet.py, the cross-machine launch lock lock.py, SDK errors errors.py. The class
hooks the core calls without making a provider (rules, prices, the IAM policy, the sandbox)
live in their own modules and are imported when called.

boto3 is imported only where a session or client is made: importing this module (the
registry does, to read the class attributes) imports no SDK.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast

from nestcloud.cache import cache_dir, prune, read_cache_entry, write_cache_entry
from nestcloud.errors import (
    LaunchInterrupted,
    CleanupError,
    CredentialsError,
    InputError,
    NestcloudError,
    ProviderError,
    UnsupportedError,
)
from nestcloud.provider import (Capabilities, LaunchOutcome, LaunchRequest, ProviderOption,
                                Quota, UserDataEnvelope, is_loopback_host, local_owner)
from nestcloud.spec import (REGION_RE, TAG_EXPIRES, TAG_LAB, TAG_NAME, TAG_OWNER, TAG_SEAT,
                            TagLimits, check_name)
from providers.aws.errors import aws_errors, error_code
from providers.aws.fleet import (FLEET_THRESHOLD, create_fleet_params, default_subnets,
                                 launch_fleet)
from providers.aws.lock import (TAG_LOCK, LaunchRun, TemplateLock, create_template_params,
                                delete_template, describe_template, find_templates,
                                stale_lock, tag_value, template_name)
from providers.aws.pricing import SOURCE_TEXT as PRICE_SOURCE
from providers.aws.requests import (
    ALL_STATES,
    FOUND_STATES,
    KEPT_STATES,
    LIVE_STATES,
    NO_INSTANCE_PROFILE,
    RHEL_NAME,
    RHEL_OWNER,
    SSM_IMAGE_PARAMETERS,
    TAG_L1,
    LaunchPlan,
    Subnet,
    confirmed_equivalents,
    cpu_flag_proven,
    decide_nesting,
    diff_type,
    ec2_readiness_note,
    listed,
    nested_field,
    printable,
    reconcile,
    run_instances_params,
    seats_group,
    security_group_name,
    security_group_requests,
    spec_digest,
    ssh_permission,
    tag_dict,
    to_instance,
)

if TYPE_CHECKING:  # annotations only: reading the class attributes makes none of these
    from concurrent.futures import Future

    import boto3
    from botocore.config import Config

    from nestcloud.catalog import Catalog, InstanceType
    from nestcloud.checks import Finding
    from nestcloud.models import DownResult, Instance, LaunchResult, VerifyResult
    from nestcloud.provider import AccessPolicy, LocalEndpoint, PriceFetch
    from nestcloud.spec import LaunchSpec

USER_DATA_LIMIT = 16 * 1024  # FACTS.md: 16 KB raw, before base64
MAX_TOKEN_GENERATIONS = 20
# How often a token's instance is looked for after IdempotentParameterMismatch (see
# AwsProvider._token_owner), waiter_delay apart.
TOKEN_OWNER_READS = 3
# botocore retry attempts (first call included). Standard mode backs off exponentially with
# jitter up to 20 s, so 10 attempts ride out well over a minute of throttling per call.
MAX_ATTEMPTS = 10
# Service Quotas code of "Running On-Demand Standard (A, C, D, H, I, M, R, T, Z) instances",
# counted in vCPUs (AWS CLI examples for get-aws-default-service-quota). The quota name lists
# the families it covers; x8i (class X) has its own quota, which nestcloud does not check.
VCPU_QUOTA_CODE = "L-1216C47A"
VCPU_QUOTA_CLASSES = frozenset("acdhimrtz")
VERIFY_BATCH = 100
# How long an instance type's or an image's description is kept in the cache (see _fact).
FACT_TTL_S = 24 * 3600.0
# The caller's ARN never changes for a key; it is asked again after this long all the same,
# so an unused key's entry is pruned.
IDENTITY_TTL_S = 30 * 24 * 3600.0
# How long the image an SSM alias named is used without asking again: a new AMI behind an
# alias (about weekly) is picked up this much later; the one before it stays launchable.
ALIAS_TTL_S = 15 * 60.0
# How long an answer prefetch() (or a lab's search for its seats) read stays good for the
# launch plan that follows; a lab's plan takes them well under a second later.
AHEAD_TTL_S = 30.0
SANDBOX_NOTES = (
    "sandbox: this is a local EC2 endpoint, not AWS: no guest boots and nothing is billed; "
    "the requests are the real ones",
)
# How a Windows L1 on EC2 writes its readiness tag (UserDataEnvelope.windows_tag_script):
# IMDSv2 for its own id and region, then New-EC2Tag with the instance profile's credentials.
SET_TAG_SCRIPT = resources.files("providers.aws").joinpath("files", "set-tag.ps1").read_text(
    encoding="utf-8")


_Rows = list[dict[str, str]]  # (``list`` is a method name inside the class)


def _plural(noun: str, items: list[str]) -> str:
    return noun if len(items) == 1 else noun + "s"


def _json_dict(body: bytes | None) -> dict[str, Any] | None:
    """A cache entry's body as the JSON object it holds, or None."""
    if body is None:
        return None
    try:
        got = json.loads(body)
    except ValueError:
        return None
    return got if isinstance(got, dict) else None


def is_loopback_url(url: str | None) -> bool:
    """An endpoint on this machine (the sandbox, a test's moto), whatever its scheme."""
    from urllib.parse import urlparse

    return bool(url) and is_loopback_host(urlparse(url or "").hostname)


def _retry_config(mode: str) -> Config:
    """botocore's own retries, ``mode`` "standard" or "adaptive", MAX_ATTEMPTS each."""
    from botocore.config import Config

    retries: Any = {"mode": mode, "total_max_attempts": MAX_ATTEMPTS}
    return Config(retries=retries, user_agent_extra="nestcloud")


class AwsProvider:
    """EC2 through boto3, with the standard credential chain and standard retries."""

    name: ClassVar[str] = "aws"
    capabilities: ClassVar[Capabilities] = Capabilities(
        fleet_above=FLEET_THRESHOLD,   # one CreateFleet with every equivalent type and zone
        quota=True,                    # vcpu_quota: Service Quotas, standard families
        launch_lock=True,              # the name's launch template (lock.TemplateLock)
        prefetch=True,                 # plan()'s reads, started while a lab searches
        adaptive_rate=True,            # botocore's adaptive retry mode for big launches
        spot=True,
        windows=True,
        local_endpoint=True,           # the sandbox: moto's server on loopback
        leftovers=True,                # security groups and launch templates without seats
        # User data: 16 KiB raw (EC2 RunInstances), gunzipped by cloud-init; Windows runs
        # <powershell> from user data and reports readiness through the nestcloud:l1 tag.
        user_data=UserDataEnvelope(limit_bytes=USER_DATA_LIMIT, gzip=True, windows="user-data",
                                   readiness="console", windows_readiness="tag",
                                   windows_tag_script=SET_TAG_SCRIPT),
        # EC2 tags: keys <= 127 and values <= 256 characters, keys not starting with aws:
        # (the EC2 service model's Tag shape, botocore data/ec2; the user guide says 128 for
        # keys: the stricter number wins); 50 user tags per resource and no aws: values
        # either (AWS "Tag restrictions"). Ours count towards the 50: Name (unless yours), the
        # nestcloud: tags, and the Windows L1's readiness tag.
        tags=TagLimits(cloud="AWS", max_tags=50, key_max=127, value_max=256,
                       added=("Name", TAG_NAME, TAG_OWNER, TAG_EXPIRES, TAG_SEAT, TAG_LAB,
                              TAG_L1),
                       reserved_prefixes=("aws:",)),
        # The optional launch settings EC2 requests carry (requests.instance_settings):
        # not Azure's security type, image generation or outbound path.
        launch_options=frozenset({"instance_profile", "spot", "key_name", "public_ip",
                                  "image"}),
        rules=True,                    # rules.py: the Windows vCPU limit
        prices=PRICE_SOURCE,           # pricing.py: the Price List API (no spot prices)
        access_policy=True,            # iam.py: the IAM policy, the Windows L1's role
    )
    # No construction options beyond region: credentials, profile and endpoint come from the
    # standard AWS configuration (AWS_PROFILE, AWS_ENDPOINT_URL...); --sandbox is local_endpoint.
    options: ClassVar[tuple[ProviderOption, ...]] = ()

    @classmethod
    def configured(cls, **_: Any) -> bool:
        """Usable without --provider when the standard credential chain finds credentials."""
        import boto3

        return boto3.Session().get_credentials() is not None

    # class hooks (no object, no SDK import unless said) -------------------------------------

    @classmethod
    def local_endpoint(cls, note: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Start (or find) the sandbox: the options that point a provider at it."""
        from providers.aws.sandbox import DEFAULT_REGION, notify_stderr, session, start

        st, started = start(note or notify_stderr)
        if started and note is not None:
            note(f"sandbox: started the local EC2 endpoint at {st.url} "
                 "(`nestcloud sandbox stop` removes it)")
        return {"region": DEFAULT_REGION, "endpoint_url": st.url, "session": session()}

    @classmethod
    def endpoint_control(cls, action: Literal["start", "status", "stop"],
                         note: Callable[[str], None]) -> LocalEndpoint | None:
        """`nestcloud sandbox start|status|stop`: the sandbox as it is after ``action``
        (``stop``: the one stopped), None when none runs."""
        from providers.aws.sandbox import control

        return control(action, note)

    @classmethod
    def rules(cls, spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None
              ) -> list[Finding]:
        """EC2's own pre-launch checks (rules.py)."""
        from providers.aws.rules import run

        return run(spec, catalog, entry)

    @classmethod
    def fetch_prices(cls, regions: Sequence[str], catalog: Catalog | None = None, *,
                     client: Any = None) -> PriceFetch:
        """On-demand Linux prices from the Price List API (pricing.py); no spot prices. The
        Price List prices each type itself: ``catalog`` is not needed. ``client``: a
        ``pricing`` client to use (tests), else one is made in us-east-1."""
        from providers.aws.pricing import fetch_prices

        return fetch_prices(regions, client=client)

    @classmethod
    def access_policy(cls, instance_role: str | None = None, l1: bool = False
                      ) -> AccessPolicy:
        """The operator's IAM policy, or with ``l1`` the Windows L1's instance role (iam.py)."""
        from providers.aws.iam import access_policy

        return access_policy(instance_role, l1)

    def __init__(self, region: str | None = None, endpoint_url: str | None = None,
                 session: boto3.Session | None = None, *, sandbox: bool | None = None
                 ) -> None:
        import boto3

        # A local endpoint (the sandbox) unless told otherwise: loopback is never AWS.
        self.sandbox = is_loopback_url(endpoint_url) if sandbox is None else sandbox
        if session is None:
            session = boto3.Session()
            if self.sandbox and session.get_credentials() is None:
                # Only for the local endpoint, and only when none are configured.
                from providers.aws.sandbox import FAKE_CREDENTIALS

                session = boto3.Session(region_name=session.region_name, **FAKE_CREDENTIALS)
        self.session = session
        self.region = region or self.session.region_name
        self.endpoint_url = endpoint_url
        # botocore's own retries, no hand-rolled loops: standard mode retries throttling and
        # transient errors with backoff; MAX_ATTEMPTS (not the default 3) so a throttled burst
        # never fails a lab. A request with adaptive=True adds client-side rate limiting.
        self.config = _retry_config("standard")
        self.fleet_threshold = FLEET_THRESHOLD  # tests force one launch path
        # Locks failed exclusive launches kept for their caller's rollback, by name, until
        # unlock(name) (see launch). The only launch state kept here: it outlives the launch.
        self._held: dict[str, Any] = {}
        self.lock_wait_s: float = 120.0 if self.sandbox else 900.0
        self._clients: dict[tuple[str, str], Any] = {}
        # A boto3 session is not thread-safe: clients are made one at a time under this lock,
        # so the plan's reads can make theirs (~5-15 ms of model loading each) in its worker
        # threads while the other reads wait on the network. Made clients are thread-safe.
        self._client_lock = threading.Lock()
        self._key: str | None = None  # see _key_id
        # Answers read ahead of plan() (prefetch, list): key -> (when, future); see _take_ahead.
        self._ahead: dict[tuple[Any, ...], tuple[float, Future[Any]]] = {}
        # (region, name) whose next list() is kept for the plan that follows (see prefetch).
        self._list_for_plan: set[tuple[str, str]] = set()
        # Seats launch in parallel: each RunInstances mostly waits on the endpoint. The sandbox
        # takes the same path as AWS (bench/bench_launch.py: 20 seats, one at a time 1.43x a
        # bare sequential script, 8 in parallel 1.20x, in one run).
        self.concurrency = 8
        self.waiter_delay: float = 1.0 if self.sandbox else 5.0
        self.sg_delete_timeout_s: float = 10.0 if self.sandbox else 300.0
        # How long a launch waits for the in-guest check of an instance whose nested switch
        # the API did not report, before it terminates it (see readback).
        self.unverified_wait_s: float = 900.0
        self.sleep: Callable[[float], None] = time.sleep
        # The launch time (expiry tags are computed from it); tests move it.
        self.clock: Callable[[], dt.datetime] = lambda: dt.datetime.now(dt.timezone.utc)

    # clients -------------------------------------------------------------------------------

    def _use_adaptive(self) -> None:
        """Adaptive retry mode (client-side rate limiting) for labs that send many calls."""
        if self.config.retries.get("mode") == "adaptive":  # type: ignore[union-attr]
            return  # its clients are already adaptive: keep them
        with self._client_lock:
            self.config = _retry_config("adaptive")
            self._clients.clear()

    def client(self, service: str, region: str | None = None) -> Any:
        region = self._region(region)
        key = (service, region)
        made = self._clients.get(key)
        if made is not None:
            return made
        with self._client_lock:
            if key not in self._clients:
                kwargs: dict[str, Any] = {"region_name": region, "config": self.config}
                if self.endpoint_url:
                    kwargs["endpoint_url"] = self.endpoint_url
                with aws_errors(f"create the {service} client", region=region):
                    self._clients[key] = self.session.client(service, **kwargs)
            return self._clients[key]

    def _region(self, region: str | None) -> str:
        r = region or self.region
        if not r:
            raise InputError("no AWS region: pass --region or set AWS_DEFAULT_REGION (or a "
                             "region in your AWS profile)")
        if not REGION_RE.fullmatch(r):
            # botocore checks the shape only without a custom endpoint; with one, the region
            # goes into the signed Authorization header, and its error text echoes that.
            raise InputError(f"AWS region {r!r}: not a region name (e.g. us-east-1)")
        return r

    # reads ---------------------------------------------------------------------------------

    def describe_type(self, type_name: str, region: str) -> dict[str, Any] | None:
        """DescribeInstanceTypes for one type, or None when the region does not offer it."""
        return self.describe_types((type_name,), region)[type_name]

    def describe_types(self, names: Iterable[str], region: str
                       ) -> dict[str, dict[str, Any] | None]:
        """DescribeInstanceTypes for several types in one call: name -> its description, or
        None when the region does not offer it.

        A name filter (unlike InstanceTypes=[...]) does not fail the whole call on one type
        the region lacks. An answer that the region offers a type is kept FACT_TTL_S per
        type (a type's features do not change once offered), and only the types not kept
        are asked for; "not offered" is always asked again."""
        wanted = list(dict.fromkeys(names))
        out: dict[str, dict[str, Any] | None] = {}
        missed: list[str] = []
        for n in wanted:
            file, key = self._fact("type", region, n)
            body = read_cache_entry(file, key, FACT_TTL_S)
            got = _json_dict(body)
            if got is not None:
                out[n] = got
            else:
                missed.append(n)
        if missed:
            ec2 = self.client("ec2", region)
            live: dict[str, dict[str, Any]] = {}
            what = (f"instance type {missed[0]}" if len(missed) == 1 else
                    f"instance types {', '.join(missed)}")
            with aws_errors(f"describe {what}", region=region):
                for page in ec2.get_paginator("describe_instance_types").paginate(
                        Filters=[{"Name": "instance-type", "Values": missed}]):
                    for it in page["InstanceTypes"]:
                        live[str(it["InstanceType"])] = it
            for n in missed:
                out[n] = live.get(n)
                file, key = self._fact("type", region, n)
                if out[n] is not None and file is not None:
                    write_cache_entry(file, key, json.dumps(out[n], default=str).encode())
            if file is not None and live:
                prune(file.parent, "aws-type-*.json", FACT_TTL_S)
        return out

    def vcpu_quota(self, region: str, type: str) -> Quota | None:
        """The account's on-demand standard vCPU quota in ``region`` (Service Quotas) when it
        counts ``type`` (else None), or Quota(None, why it could not be read). Only the limit:
        current usage would need CloudWatch, so a launch can still hit VcpuLimitExceeded
        (failover handles that)."""
        if not self.quota_covers(type):
            return None
        sq = self.client("service-quotas", region)
        try:
            with aws_errors("read the EC2 vCPU quota (Service Quotas)", region=region):
                got = sq.get_service_quota(ServiceCode="ec2", QuotaCode=VCPU_QUOTA_CODE)
        except CredentialsError as exc:
            if error_code(exc) in ("AccessDenied", "AccessDeniedException"):
                return Quota(None, "no servicequotas:GetServiceQuota permission")
            raise
        except ProviderError as exc:
            return Quota(None, error_code(exc) or exc.message)
        value = (got.get("Quota") or {}).get("Value")
        if value is None:
            return Quota(None, "Service Quotas returned no value")
        return Quota(float(value), "Service Quotas")

    @staticmethod
    def quota_covers(type_name: str) -> bool:
        """Whether VCPU_QUOTA_CODE counts this type (its class letter is in the quota name)."""
        return type_name[:1].lower() in VCPU_QUOTA_CLASSES

    def resolve_image(self, spec: LaunchSpec, region: str) -> tuple[str, str]:
        """(AMI id, how it was found)."""
        if spec.image:
            return spec.image, "--image"
        if spec.os in SSM_IMAGE_PARAMETERS:
            param = SSM_IMAGE_PARAMETERS[spec.os]

            def read() -> dict[str, Any]:
                ssm = self.client("ssm", region)
                try:
                    with aws_errors(f"read the SSM parameter {param}", region=region):
                        return {"ImageId": ssm.get_parameter(Name=param)["Parameter"]["Value"]}
                except ProviderError as exc:
                    if error_code(exc) in ("ParameterNotFound", "ParameterVersionNotFound"):
                        hint = ("the local sandbox endpoint answers only the al2023 parameter: "
                                "use --os al2023 --hypervisor firecracker (or none), or --image "
                                "AMI" if self.sandbox else "pass --image AMI, or pick another --os")
                        raise ProviderError(f"no image for --os {spec.os} in {region}: the "
                                            f"public SSM parameter {param} does not exist there",
                                            hint=hint, code=error_code(exc),
                                            provider="aws") from exc
                    raise

            got, cached = self._cached_json("alias", (region, param), read, ALIAS_TTL_S)
            how = f"SSM parameter {param}"
            if cached:
                how += f", as read in the last {ALIAS_TTL_S / 60:g} minutes"
            return str(cast(dict[str, Any], got)["ImageId"]), how
        if spec.os in RHEL_NAME:
            ec2 = self.client("ec2", region)
            pattern = RHEL_NAME[spec.os]
            with aws_errors("find the newest RHEL image", region=region):
                images = ec2.describe_images(
                    Owners=[RHEL_OWNER],
                    Filters=[{"Name": "name", "Values": [pattern]},
                             {"Name": "architecture", "Values": ["x86_64"]},
                             {"Name": "state", "Values": ["available"]}])["Images"]
            if not images:
                raise ProviderError(f"no image for --os {spec.os} in {region}: DescribeImages "
                                    f"(owner {RHEL_OWNER}, name {pattern}) found none",
                                    hint="pass --image AMI", provider="aws")
            newest = max(images, key=lambda i: i.get("CreationDate", ""))
            return newest["ImageId"], f"newest {pattern} from owner {RHEL_OWNER}"
        raise InputError(f"--os {spec.os!r}: no AWS image alias (known: "
                         f"{', '.join([*SSM_IMAGE_PARAMETERS, *RHEL_NAME])}); pass --image AMI")

    def _image_details(self, spec: LaunchSpec, region: str) -> tuple[str, str, dict[str, Any]]:
        image_id, how = self.resolve_image(spec, region)
        return image_id, how, self.describe_image(image_id, region)

    def describe_image(self, image_id: str, region: str) -> dict[str, Any]:
        """DescribeImages for one AMI. Its architecture, root device and block devices never
        change, so the answer is kept FACT_TTL_S: a new AMI behind an alias is a new id (a
        miss). An AMI deregistered meanwhile fails the launch itself (InvalidAMIID), which
        the rollback handles."""
        def read() -> dict[str, Any]:
            ec2 = self.client("ec2", region)
            try:
                with aws_errors(f"describe image {image_id}", region=region):
                    images = ec2.describe_images(ImageIds=[image_id])["Images"]
            except ProviderError as exc:
                if error_code(exc) in ("InvalidAMIID.NotFound", "InvalidAMIID.Malformed",
                                       "InvalidAMIID.Unavailable"):
                    raise InputError(f"image {image_id!r} does not exist in {region} (or is "
                                     "not visible to this account)") from exc
                raise
            if not images:
                raise InputError(f"image {image_id!r} does not exist in {region}")
            return images[0]  # type: ignore[no-any-return]

        return cast(dict[str, Any], self._cached_json("image", (region, image_id), read)[0])

    def default_network(self, region: str) -> tuple[str, list[Subnet]]:
        """(the default VPC, its default subnet per zone) from one DescribeSubnets: default
        subnets exist only in the default VPC, so their VpcId names it. Without any, nothing
        can launch here (RunInstances without a subnet needs one too): refuse up front."""
        ec2 = self.client("ec2", region)
        with aws_errors("find the default VPC and its subnets", region=region):
            got = ec2.describe_subnets(
                Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]
        if not got:
            raise ProviderError(f"no default VPC in {region} (or it has no default subnet): "
                                "nestcloud launches into the default VPC",
                                hint=f"create one with `aws ec2 create-default-vpc --region "
                                     f"{region}` (missing subnets: `aws ec2 "
                                     f"create-default-subnet --availability-zone ZONE --region "
                                     f"{region}`), or use another region", provider="aws")
        vpcs = {s["VpcId"] for s in got}
        if len(vpcs) != 1:  # never on AWS; refuse rather than guess which one is default
            raise ProviderError(f"default subnets of {len(vpcs)} VPCs in {region}: "
                                f"{', '.join(sorted(vpcs))}", provider="aws")
        subnets = sorted((Subnet(s["SubnetId"], s["AvailabilityZone"]) for s in got),
                         key=lambda s: s.zone)
        return vpcs.pop(), subnets

    def _name_template(self, name: str, region: str) -> dict[str, Any] | None:
        return describe_template(self, template_name(name), region)

    def find_security_groups(self, name: str, region: str) -> list[dict[str, Any]]:
        ec2 = self.client("ec2", region)
        with aws_errors("find the security group", region=region):
            return ec2.describe_security_groups(Filters=[  # type: ignore[no-any-return]
                {"Name": "group-name", "Values": [security_group_name(name)]},
                {"Name": f"tag:{TAG_NAME}", "Values": [name]}])["SecurityGroups"]

    def owner(self, region: str) -> str:
        """Who launches: the caller's ARN (the same on every machine), else the local user.

        An access key belongs to one principal for its whole life, so STS is asked once per
        key and endpoint (see _fact), not once per launch."""
        def read() -> dict[str, Any] | None:
            sts = self.client("sts", region)
            try:
                with aws_errors("identify the caller (STS GetCallerIdentity)", region=region):
                    return {"Arn": str(sts.get_caller_identity()["Arn"])}
            except ProviderError as exc:
                if error_code(exc) in ("AccessDenied", "AccessDeniedException"):
                    return None  # not kept: asked again next time
                raise

        got, _ = self._cached_json("identity", (), read, IDENTITY_TTL_S)
        return str(got["Arn"]) if got else local_owner()

    def _fact(self, kind: str, *parts: str) -> tuple[Path | None, str]:
        """(cache file, entry key) for an answer that does not change for these credentials
        at this endpoint: keyed by a hash of the access key id (never the key itself) and the
        endpoint, since a local endpoint answers any key with its own data. (None, "")
        without a cache directory or credentials: then every answer is read live."""
        d = cache_dir()
        key_id = self._key_id()
        if d is None or not key_id:
            return None, ""
        # boto3 also takes endpoints from AWS_ENDPOINT_URL[_SERVICE]: they are part of "where".
        where = self.endpoint_url or ",".join(f"{k}={v}" for k, v in sorted(os.environ.items())
                                              if k.startswith("AWS_ENDPOINT_URL")) or "aws"
        h = hashlib.sha256("\0".join((kind, where, key_id, *parts)).encode()).hexdigest()
        return d / f"aws-{kind}-{h[:20]}.json", h

    def _key_id(self) -> str:
        """The access key id of this provider's credentials ("" without any), read once:
        prefetch() and plan() read it before their threads start, so no read waits for the
        session while another thread holds it to make a client."""
        if self._key is None:
            with self._client_lock:  # the session is not thread-safe (see client())
                creds = self.session.get_credentials()
            self._key = creds.get_frozen_credentials().access_key if creds is not None else ""
        return self._key or ""

    def _cached_json(self, kind: str, parts: tuple[str, ...],
                     read: Callable[[], dict[str, Any] | None], ttl_s: float = 0.0
                     ) -> tuple[dict[str, Any] | None, bool]:
        """(``read()``'s answer, whether it came from the cache), kept ``ttl_s`` (default
        FACT_TTL_S); a None answer (or an error) is never kept, so only what a launch may
        proceed on is remembered."""
        file, key = self._fact(kind, *parts)
        got = _json_dict(read_cache_entry(file, key, ttl_s or FACT_TTL_S))
        if got is not None:
            return got, True
        answer = read()
        if answer is not None and file is not None:
            write_cache_entry(file, key, json.dumps(answer, default=str).encode("utf-8"))
            # A miss also removes the kind's entries past their age.
            prune(file.parent, f"aws-{kind}-*.json", ttl_s or FACT_TTL_S)
        return answer, False

    def raw_instances(self, region: str, name: str | None = None,
                      states: Iterable[str] = FOUND_STATES) -> list[dict[str, Any]]:
        ec2 = self.client("ec2", region)
        filters = [{"Name": "instance-state-name", "Values": list(states)}]
        filters.append({"Name": f"tag:{TAG_NAME}", "Values": [name]} if name else
                       {"Name": "tag-key", "Values": [TAG_NAME]})
        out: list[dict[str, Any]] = []
        with aws_errors("list instances", region=region):
            for page in ec2.get_paginator("describe_instances").paginate(Filters=filters):
                for res in page["Reservations"]:
                    out.extend(res["Instances"])
        return out

    def render_user_data(self, spec: LaunchSpec) -> tuple[bytes | None, str]:
        from nestcloud.bootstrap import render_user_data

        try:
            rendered = render_user_data(self.capabilities.user_data, spec.os, spec.hypervisor,
                                        provider_name=self.name, extra=spec.user_data,
                                        l2_smoke=spec.l2_smoke)
        except NotImplementedError as exc:
            raise ProviderError("this nestcloud build cannot render the L1 bootstrap "
                                f"(user data) yet: {exc}", provider="aws") from exc
        if rendered.kind == "none" or not rendered.body:
            return None, "none"
        if len(rendered.body) > USER_DATA_LIMIT:
            raise InputError(f"user data is {len(rendered.body)} bytes after rendering; EC2 "
                             f"accepts at most {USER_DATA_LIMIT} bytes (before base64)",
                             hint="shorten --user-data (cloud-init also accepts gzip)")
        kind = rendered.kind + (", gzip" if rendered.gzipped else "")
        return rendered.body, kind

    # launch --------------------------------------------------------------------------------

    def plan(self, spec: LaunchSpec, catalog: Catalog, types: tuple[str, ...] = (), *,
             find_group: bool = True, exclusive: bool = False) -> LaunchPlan:
        """Every read a launch needs, and the decisions made from them. Creates nothing.

        ``types``: equivalent types a fleet may also use; seats already running one of them
        count as present. ``find_group=False``: the security group is not looked up unless
        the lab's running seats name it (``sg_id`` None means "create it, or take the one
        CreateSecurityGroup reports as a duplicate"): a first launch saves one call."""
        from nestcloud.launcher import check_ssh_cidr, default_name

        region = self._region(spec.region)
        spec = spec.model_copy(update={"region": region,
                                       "ssh_cidr": check_ssh_cidr(spec.ssh_cidr,
                                                                  spec.allow_world_ssh)})
        name = spec.name or default_name(spec)
        t = catalog.get("aws", spec.type)
        if t is None:
            raise InputError(f"unknown aws instance type {spec.type!r} (not in the catalog)",
                             hint="see `nestcloud catalog list --provider aws --nested-only`")
        # The reads do not depend on each other: overlap their round trips (and the making of
        # their clients, see client()); results are taken in a fixed order so the first
        # problem reported is the same as in a sequential run. Reads prefetch() started for
        # the same arguments (a lab, while it searched for its seats) are taken as they are.
        self.client("ec2", region)
        self._key_id()
        reads = self._plan_reads(spec, region, name, find_group, types, exclusive)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(max_workers=6) as pool:
            f = {what: self._take_ahead(key) or pool.submit(fn, *args)
                 for what, (key, fn, args) in reads.items()}
            live_types = dict(f["type"].result())
            nesting = decide_nesting(t, live_types[spec.type], region)
            notes = list(nesting.notes)
            image_id, how, image = f["image"].result()
            user_data, kind = f["user_data"].result()
            vpc, subnets = f["network"].result()
            sgs = ([g for g in f["groups"].result() if g.get("VpcId") == vpc]
                   if "groups" in f else [])
            existing = f["existing"].result()
            owner = f["owner"].result()
            template = f["template"].result() if "template" in f else None
        arch = image.get("Architecture")
        if arch and arch != t.arch:
            raise InputError(f"image {image_id} is {arch} but {t.name} is {t.arch}")
        root = image.get("RootDeviceName") or "/dev/xvda"
        snap = max((m.get("Ebs", {}).get("VolumeSize") or 0
                    for m in image.get("BlockDeviceMappings", [])
                    if m.get("DeviceName") == root), default=0)
        disk = spec.disk_gib
        if snap > disk:
            notes.append(f"root disk raised from {disk} to {snap} GiB: the image's root "
                         "snapshot is that large")
            disk = snap
        notes.append(f"image {image_id} ({how})")
        unknown = [n for n in types if n not in live_types]
        if unknown:  # the planned type's answer was read ahead, before the equivalents
            live_types.update(self.describe_types(unknown, region))
        fleet_types, dropped = confirmed_equivalents(
            spec.type, types, live_types, nesting, catalog, region, arch or t.arch)
        notes += dropped
        missing, seat_notes = reconcile(spec, name, region, types, existing)
        notes += seat_notes
        return LaunchPlan(spec=spec, name=name, region=region, nesting=nesting,
                          image_id=image_id, root_device=root, disk_gib=disk,
                          user_data=user_data, user_data_kind=kind,
                          owner=owner, vpc_id=vpc,
                          sg_id=sgs[0]["GroupId"] if sgs else seats_group(existing, name, vpc),
                          existing=existing,
                          missing_seats=missing,
                          digest=spec_digest(spec, image_id, user_data), notes=notes,
                          subnets=subnets, types=fleet_types, template=template)

    def _plan_reads(self, spec: LaunchSpec, region: str, name: str, find_group: bool,
                    types: tuple[str, ...] = (), exclusive: bool = False
                    ) -> dict[str, tuple[tuple[Any, ...], Callable[..., Any], tuple[Any, ...]]]:
        """plan()'s reads: what -> (the arguments its answer depends on, function, args).
        The longest chain first (SSM client, GetParameter, DescribeImages), then the other
        read that needs a new client (STS)."""
        reads: dict[str, tuple[tuple[Any, ...], Callable[..., Any], tuple[Any, ...]]] = {
            "image": (("image", region, spec.os, spec.image), self._image_details,
                      (spec, region)),
            "owner": (("owner", region), self.owner, (region,)),
            # The equivalents a fleet may use are asked in the same call as the planned
            # type; an answer read ahead (for the planned type alone) is keyed the same.
            "type": (("type", region, spec.type), self.describe_types,
                     (tuple(dict.fromkeys((spec.type, *types))), region)),
            "network": (("network", region), self.default_network, (region,)),
            "existing": (("existing", region, name), self.raw_instances, (region, name)),
            "user_data": (("user_data", spec.os, spec.hypervisor, spec.user_data,
                           spec.l2_smoke), self.render_user_data, (spec,)),
        }
        if find_group:
            reads["groups"] = (("groups", region, name), self.find_security_groups,
                               (name, region))
        if not exclusive:
            # A launch that takes no lock still removes a lock a killed run left (see
            # _left_template); an exclusive one (a lab) takes the lock, which does that.
            reads["template"] = (("template", region, name), self._name_template,
                                 (name, region))
        return reads

    def prefetch(self, spec: LaunchSpec) -> None:
        """Start plan()'s read-only lookups for ``spec`` (image, caller identity, instance
        type, default network, rendered user data) in the background and return at once.

        A lab calls this for its cheapest place while it searches for its seats; the plan
        that follows within AHEAD_TTL_S takes each answer (or error) once instead of asking
        again. Creates nothing; a plan for other arguments reads for itself."""
        from nestcloud.launcher import default_name

        region = self._region(spec.region)
        name = spec.name or default_name(spec)
        reads = self._plan_reads(spec, region, name, False)
        # The lab's own search for its seats (list(name)) comes next: keep that listing for
        # the plan instead of reading the same seats twice (see list).
        self._list_for_plan.add((region, name))
        # The seats themselves: the lab's own search (list) is that read, see _remember; the
        # name's launch template is the lock, which the lab's launch takes itself.
        reads.pop("existing")
        reads.pop("template", None)
        # Nearly every read (and the caller's own search) needs the EC2 client: make it
        # first, here, rather than let a smaller client take the lock ahead of it.
        self.client("ec2", region)
        self._key_id()
        from concurrent.futures import ThreadPoolExecutor

        pool = ThreadPoolExecutor(max_workers=len(reads), thread_name_prefix="nestcloud-ahead")
        now = time.monotonic()
        for key, fn, args in reads.values():
            held = self._ahead.get(key)
            if held is None or now - held[0] > AHEAD_TTL_S:
                self._ahead[key] = (now, pool.submit(fn, *args))
        pool.shutdown(wait=False)  # the reads run on; plan() waits for the ones it takes

    def _take_ahead(self, key: tuple[Any, ...]) -> Future[Any] | None:
        """A prefetched answer for ``key``, at most once, and only while fresh."""
        got = self._ahead.pop(key, None)
        if got is None or time.monotonic() - got[0] > AHEAD_TTL_S:
            return None
        return got[1]

    def _remember(self, key: tuple[Any, ...], value: Any) -> None:
        from concurrent.futures import Future

        done: Future[Any] = Future()
        done.set_result(value)
        self._ahead[key] = (time.monotonic(), done)

    def ensure_security_group(self, plan: LaunchPlan, now: dt.datetime,
                              made: list[str] | None = None) -> tuple[str, list[str]]:
        """The group's id, creating it (tagged) if needed; SSH rule only from --ssh-cidr.
        A group it creates is also added to ``made`` at once (a later step may fail)."""
        ec2 = self.client("ec2", plan.region)
        created: list[str] = []
        sg_id = plan.sg_id
        if sg_id is None:
            req = security_group_requests(plan, now)[0]
            try:
                with aws_errors("create the security group", region=plan.region):
                    sg_id = ec2.create_security_group(**req.params)["GroupId"]
                created.append(sg_id)
                if made is not None:
                    made.append(sg_id)
            except ProviderError as exc:
                if error_code(exc) != "InvalidGroup.Duplicate":
                    raise
                # An earlier or concurrent launch of the same name made it: use that one.
                found = [g for g in self.find_security_groups(plan.name, plan.region)
                         if g.get("VpcId") == plan.vpc_id]
                if not found:
                    raise ProviderError(
                        f"security group {security_group_name(plan.name)} exists in "
                        f"{plan.vpc_id} without the {TAG_NAME}={plan.name} tag: nestcloud "
                        "does not use a group it did not make", code=error_code(exc),
                        hint="delete or rename that group, or pick another --name",
                        provider="aws") from exc
                sg_id = found[0]["GroupId"]
        if plan.spec.ssh_cidr:
            perm = ssh_permission(plan.spec.ssh_cidr)
            try:
                with aws_errors("allow SSH in the security group", region=plan.region):
                    ec2.authorize_security_group_ingress(GroupId=sg_id, IpPermissions=[perm])
            except ProviderError as exc:
                if error_code(exc) != "InvalidPermission.Duplicate":
                    raise
        return str(sg_id), created

    def run_seat(self, plan: LaunchPlan, seat: int, sg_id: str, now: dt.datetime
                 ) -> dict[str, Any]:
        """RunInstances for one seat; idempotent through its ClientToken (see client_token).

        EC2 answers a token still bound to an earlier request either with that request's
        instance (same parameters; it may be terminated by now) or with
        IdempotentParameterMismatch (other parameters, e.g. another run's expiry minute).
        A terminated instance means the seat's earlier incarnation: the next generation of
        the token launches a new one. On a mismatch the token's instance is looked up: if it
        runs, it is this seat, launched by a concurrent run of the same launch, and is taken
        as it is; if it is gone, the next generation launches."""
        ec2 = self.client("ec2", plan.region)
        for generation in range(MAX_TOKEN_GENERATIONS):
            params = run_instances_params(plan, seat, sg_id, now, generation)
            try:
                with aws_errors(f"launch {plan.spec.type} (seat {seat} of {plan.name!r})",
                                region=plan.region, type_name=plan.spec.type):
                    inst: dict[str, Any] = ec2.run_instances(**params)["Instances"][0]
            except ProviderError as exc:
                if error_code(exc) != "IdempotentParameterMismatch":
                    raise
                owner = self._token_owner(plan, params["ClientToken"])
                if owner is not None:
                    return owner
                continue
            if inst.get("State", {}).get("Name") not in ("shutting-down", "terminated"):
                return inst
            # The token still points at an instance a previous `down` removed.
        raise ProviderError(f"seat {seat} of {plan.name!r}: every ClientToken generation "
                            "is bound to an earlier instance", provider="aws")

    def _token_owner(self, plan: LaunchPlan, token: str) -> dict[str, Any] | None:
        """The running instance of ``plan.name`` that EC2 bound ``token`` to, or None when
        that instance no longer runs. One launched a moment ago by another run may not be
        listed yet: when none carries the token, the listing is asked again a few times
        before the token counts as one whose instance is long gone (terminated instances
        drop out of listings after about an hour; the token stays bound for a day)."""
        for attempt in range(TOKEN_OWNER_READS):
            if attempt:
                self.sleep(self.waiter_delay)
            mine = [r for r in self.raw_instances(plan.region, plan.name, states=ALL_STATES)
                    if r.get("ClientToken") == token]
            live = [r for r in mine if r.get("State", {}).get("Name") in LIVE_STATES]
            if live:
                return live[0]
            if mine:
                return None
        return None

    def readback(self, plan: LaunchPlan, launched: list[dict[str, Any]]
                 ) -> tuple[list[Instance], list[str]]:
        """Check the nested switch on what we launched; terminate and fail unless it is on.

        EC2 reports CpuOptions.NestedVirtualization for a nested launch (FACTS.md). RunInstances
        answers with the same Instance shape as DescribeInstances; only the instances it
        leaves the field out for are described. One is described first: if DescribeInstances
        does not report the field either, this API does not report it at all, and the rest
        are not described. An instance reported "disabled" is terminated. One not reported at
        all is not verified: it stays only if the in-guest check proves the CPU's
        virtualization flag within ``unverified_wait_s`` (see _proven_in_guest); otherwise it
        is terminated too. Either way the launch fails, naming what was terminated.
        """
        if not launched:
            return [], []
        ids = [i["InstanceId"] for i in launched]
        by_id = {i["InstanceId"]: i for i in launched}
        unknown = [i for i in ids if nested_field(by_id[i]) is None]
        if plan.nesting.mode == "nested" and unknown:
            probe = self._describe(plan.region, unknown[:1])
            by_id.update(probe)
            if any(nested_field(r) is not None for r in probe.values()):
                by_id.update(self._describe(plan.region, unknown[1:]))
        raws = [by_id[i] for i in ids]
        notes: list[str] = []
        proven: set[str] = set()
        if plan.nesting.mode == "nested":
            disabled = [r["InstanceId"] for r in raws if nested_field(r) == "disabled"]
            unreported = [r for r in raws if nested_field(r) is None]
            waited = 0.0
            if unreported and not disabled:
                proven, waited = self._proven_in_guest(plan, unreported)
            unverified = [r["InstanceId"] for r in unreported if r["InstanceId"] not in proven]
            if disabled or unverified:
                self._terminate_unverified(plan, disabled + unverified)
                raise self._unverified_error(disabled, unverified, waited)
            if proven:
                notes.append(f"nested switch not reported by the API for "
                             f"{', '.join(sorted(proven))}; the in-guest check found the CPU's "
                             "virtualization flag on each, so they stay")
        order = {iid: n for n, iid in enumerate(ids)}
        out = [to_instance(r, plan.region) for r in raws]
        out = [i.model_copy(update={"nested": True}) if i.id in proven else i for i in out]
        return sorted(out, key=lambda i: order.get(i.id, 0)), notes

    def _proven_in_guest(self, plan: LaunchPlan, raws: list[dict[str, Any]]
                         ) -> tuple[set[str], float]:
        """(the instances whose in-guest check reported the vmx/svm flag within
        ``unverified_wait_s``, the seconds waited). The local endpoint boots no guest:
        nothing is waited for there."""
        from nestcloud.bootstrap.wait import wait_for_ready

        if self.sandbox:
            return set(), 0.0
        timeout = max(0.0, self.unverified_wait_s)
        report = wait_for_ready(self, [to_instance(r, plan.region) for r in raws],
                                timeout_s=timeout, interval_s=min(10.0, timeout) or 1.0,
                                sleep=self.sleep)
        proven = {r.id for r in report.instances if cpu_flag_proven(r.checks)}
        return proven, timeout

    def _terminate_unverified(self, plan: LaunchPlan, ids: list[str]) -> None:
        ec2 = self.client("ec2", plan.region)
        with aws_errors("terminate instances whose nested switch is not verified",
                        region=plan.region):
            ec2.terminate_instances(InstanceIds=ids)

    def _unverified_error(self, disabled: list[str], unverified: list[str], waited: float
                          ) -> UnsupportedError:
        parts = []
        if disabled:
            parts.append(f"AWS launched {', '.join(disabled)} with "
                         "CpuOptions.NestedVirtualization = disabled although the request "
                         "enabled it")
        if unverified:
            where = ("the local endpoint did not echo it (a sandbox started by an older "
                     "nestcloud? `nestcloud sandbox stop` and run again)" if self.sandbox else
                     f"and no in-guest check proved the CPU's virtualization flag within "
                     f"{waited:g} s")
            parts.append(f"the API did not report CpuOptions.NestedVirtualization for "
                         f"{', '.join(unverified)} although the request enabled it, {where}: "
                         "nested virtualization is not verified")
        return UnsupportedError("; ".join(parts) + "; they were terminated",
                                hint="this launch path dropped or did not confirm the nested "
                                     "switch; report it, and use a .metal type meanwhile",
                                provider="aws")

    def _describe(self, region: str, ids: list[str]) -> dict[str, dict[str, Any]]:
        if not ids:
            return {}
        ec2 = self.client("ec2", region)
        with aws_errors("read back the new instances", region=region):
            return {i["InstanceId"]: i for page in ec2.get_paginator(
                "describe_instances").paginate(InstanceIds=ids)
                for r in page["Reservations"] for i in r["Instances"]}

    def use_fleet(self, plan: LaunchPlan) -> bool:
        return len(plan.missing_seats) > self.fleet_threshold

    def launch(self, request: LaunchRequest) -> LaunchOutcome:
        """Launch the missing seats; above ``fleet_threshold`` of them in one EC2 Fleet call
        whose overrides cover every default-VPC zone and ``spec.type`` plus
        ``request.types`` (equivalent nested-capable types the planner allows). With
        ``request.exclusive`` the name's launch lock is held throughout, and a failed launch
        keeps it for the caller's rollback (``lock_held``; the caller calls unlock(name))."""
        run = LaunchRun(exclusive=request.exclusive)
        if request.adaptive:
            self._use_adaptive()  # many calls: client-side rate limiting as well as retries
        try:
            result = self._launch(request.spec, request.catalog, request.dry_run,
                                  request.types, run)
        except ProviderError as exc:
            raise exc.with_outcome(self._outcome(run))
        except KeyboardInterrupt as exc:
            raise LaunchInterrupted(self._outcome(run), *exc.args) from exc
        return self._outcome(run, result)

    def _outcome(self, run: LaunchRun, result: LaunchResult | None = None) -> LaunchOutcome:
        return LaunchOutcome(result=result, attempts=tuple(run.attempts),
                             created_any=run.created_any and not run.other_holds,
                             found_live=tuple(run.found_live), lock_held=run.held is not None)

    def _launch(self, spec: LaunchSpec, catalog: Catalog, dry_run: bool,
                types: tuple[str, ...], run: LaunchRun) -> LaunchResult:
        from nestcloud.models import LaunchResult, PlannedRequest

        all_types = tuple(dict.fromkeys((spec.type, *types)))
        plan = self.plan(spec, catalog, all_types, find_group=dry_run,
                         exclusive=run.exclusive)
        now = self.clock()
        reused = [to_instance(r, plan.region) for r in plan.existing
                  if r.get("State", {}).get("Name") in LIVE_STATES]
        notes = list(plan.notes)
        if plan.user_data is not None:
            notes.append(f"user data: {len(plan.user_data)} bytes ({plan.user_data_kind})")
        if ec2_readiness_note(spec.os, spec.instance_profile):
            notes.append(NO_INSTANCE_PROFILE)
        base: dict[str, Any] = dict(provider="aws", name=plan.name, region=plan.region,
                                    type=spec.type, sandbox=self.sandbox)
        if dry_run:
            reqs: list[PlannedRequest] = []
            sg = plan.sg_id or "<new group>"
            if plan.sg_id is None:
                reqs += security_group_requests(plan, now)
            elif plan.spec.ssh_cidr:  # sent on every run; a duplicate rule is a no-op
                reqs.append(PlannedRequest(service="ec2", operation="AuthorizeSecurityGroupIngress",
                                           params={"GroupId": plan.sg_id, "IpPermissions": [
                                               ssh_permission(plan.spec.ssh_cidr)]}))
            if self.use_fleet(plan):
                subnets = default_subnets(plan)
                reqs += [PlannedRequest(service="ec2", operation="CreateLaunchTemplate",
                                        params=create_template_params(plan, sg, now)),
                         PlannedRequest(service="ec2", operation="CreateFleet",
                                        params=create_fleet_params(
                                            plan, "<new template>", plan.types, subnets, now)),
                         PlannedRequest(service="ec2", operation="DeleteLaunchTemplate",
                                        params={"LaunchTemplateId": "<new template>"})]
            else:
                reqs += [PlannedRequest(service="ec2", operation="RunInstances",
                                        params=printable(run_instances_params(plan, s, sg,
                                                                              now)))
                         for s in plan.missing_seats]
            notes.append("dry run: nothing was created")
            return LaunchResult(**base, instances=reused, reused=[i.id for i in reused],
                                notes=notes, dry_run=True, requests=reqs)
        self.unlock(plan.name)  # a lock an earlier failed launch of the name still held
        # From here on this launch may have created something (a create whose answer is
        # lost counts): a failure before it leaves nothing for a rollback to remove.
        run.created_any = True
        made_groups: list[str] = []
        try:
            sg_id, created_sg = self.ensure_security_group(plan, now, made=made_groups)
            notes += [f"created security group {g} ({security_group_name(plan.name)}): no "
                      "inbound rule" + (f" except SSH from {plan.spec.ssh_cidr}"
                                        if plan.spec.ssh_cidr else "")
                      for g in created_sg]
            lock = (TemplateLock(self, plan, notes, run) if plan.missing_seats and (
                run.exclusive or self.use_fleet(plan)) else None)
            if lock is None:
                # No lock to take: a template a killed run left is removed here. A lab
                # (exclusive) did not read it with the plan: it takes the lock when seats
                # are missing, which removes one; asked only when none are.
                held = (self._name_template(plan.name, plan.region) if run.exclusive
                        else plan.template)
                if held is not None:
                    notes += self._left_template(dataclasses.replace(plan, template=held))
            plan, reused, new, read_notes = self._create(plan, lock, sg_id, now, all_types,
                                                         reused, notes, run)
        except BaseException as exc:
            if not run.exclusive:  # a lab rolls back itself, and says so (see lab.py)
                self._say_what_is_left(plan, exc, made_groups, run.found_live)
            raise
        notes += read_notes
        if self.sandbox:
            notes += SANDBOX_NOTES
        instances = sorted([*reused, *new], key=lambda i: (i.seat is None, i.seat or 0))
        return LaunchResult(**base, instances=instances,
                            created=[i.id for i in new],
                            reused=[i.id for i in reused], notes=notes)

    def _create(self, plan: LaunchPlan, lock: TemplateLock | None, sg_id: str, now: dt.datetime,
                all_types: tuple[str, ...], reused: list[Instance], notes: list[str],
                run: LaunchRun) -> tuple[LaunchPlan, list[Instance], list[Instance], list[str]]:
        """Take the launch lock (when ``lock``), launch the missing seats, read them back:
        (the plan as read again under the lock, the seats reused, the new ones, notes)."""
        done = False
        try:
            if lock is not None:
                lock.acquire(sg_id, now)
                while lock.contended:
                    # The run we waited for may have removed the group (its rollback): make
                    # sure of it again, and hold a template that names the one that exists.
                    again, made = self.ensure_security_group(
                        dataclasses.replace(plan, sg_id=None), now)
                    notes += [f"created security group {g} again (the run waited for had "
                              "removed it)" for g in made]
                    if again == sg_id:
                        break
                    sg_id = again
                    lock.release()
                    lock.acquire(sg_id, now)
                # Another run of this name may have launched between our search and the lock
                # (we may have waited for it): its seats count as present.
                plan, reused = self._relist(plan, all_types, notes, run)
            if self.use_fleet(plan):
                assert lock is not None  # a fleet launches from the lock's template
                launched = launch_fleet(self, plan, lock, now, plan.types, run)
                notes.append(f"launched {len(launched)} seat(s) in one EC2 Fleet call "
                             f"({len(plan.types)} type(s) x every default-VPC zone)")
            else:
                launched = self._run_seats(plan, sg_id, now)
            new, read_notes = self.readback(plan, launched)
            done = True
        finally:
            if lock is not None:
                if done or not run.exclusive:
                    lock.release()
                else:
                    # A lab removes what a failed launch created: it must do so before another
                    # run can take the lock and count those seats as its own. It calls unlock().
                    run.held = lock
                    with self._client_lock:
                        self._held[plan.name] = lock
        return plan, reused, new, read_notes

    def _left_template(self, plan: LaunchPlan) -> list[str]:
        """The name's launch template when this launch takes no lock: removed when a killed
        run left it (its holder is gone, or it is older than any launch holds one), else
        named (another run holds it right now)."""
        held = plan.template or {}
        tid = str(held.get("LaunchTemplateId"))
        label = f"launch template {tid} ({template_name(plan.name)})"
        why = stale_lock(held, template_name(plan.name), taking=False)
        if why is None:
            holder = tag_value(held, TAG_LOCK) or "unknown"
            return [f"{label} is held by {holder}: another launch of {plan.name!r} is running "
                    f"(if that run was killed on another machine, `nestcloud down "
                    f"{plan.name}` removes it)"]
        try:
            delete_template(self, tid, plan.region)
        except ProviderError as exc:
            return [f"{label}, left by an interrupted run ({why}), was not deleted "
                    f"({exc.message}); `nestcloud down {plan.name}` removes it"]
        return [f"removed {label} left by an interrupted run: {why}"]

    def _say_what_is_left(self, plan: LaunchPlan, exc: BaseException,
                          made_groups: list[str], found_live: list[str]) -> None:
        """After a failed or interrupted launch: remove the security group this launch made
        when no instance of the name exists, and put exactly what is left of the name on
        ``exc`` (the hint of a nestcloud error; an extra argument of KeyboardInterrupt)."""
        region, name = plan.region, plan.name
        try:
            live = self.raw_instances(region, name, states=KEPT_STATES)
            groups = [str(g["GroupId"]) for g in self.find_security_groups(name, region)]
            removed = []
            if not live:
                for g in groups:
                    if g in made_groups and self._try_delete_group(g, region):
                        removed.append(g)
            groups = [g for g in groups if g not in removed]
            templates = find_templates(self, name, region)
        except Exception as err:  # noqa: BLE001 - the launch's own error is what is raised
            note = (f"what is left of {name!r} could not be listed ({err}): `nestcloud ls "
                    f"--name {name}` shows it, `nestcloud down {name}` removes it")
        else:
            before = {r["InstanceId"] for r in plan.existing} | set(found_live)
            new = sorted(r["InstanceId"] for r in live if r["InstanceId"] not in before)
            old = sorted(r["InstanceId"] for r in live if r["InstanceId"] in before)
            parts = [f"{_plural('instance', ids)} {', '.join(ids)} ({why})"
                     for ids, why in ((new, "launched by this run, running"),
                                      (old, "there before this run")) if ids]
            if groups:
                parts.append(f"{_plural('security group', groups)} {', '.join(groups)}")
            if templates:
                parts.append(f"{_plural('launch template', templates)} "
                             f"{', '.join(templates)}")
            if parts:
                note = ("left: " + "; ".join(parts) + ": run the same command again to "
                        f"complete, or `nestcloud down {name}` to remove them")
            else:
                note = f"nothing of {name!r} is left" + (
                    f" (removed {_plural('security group', removed)} {', '.join(removed)} "
                    "this launch created)" if removed else "")
        if isinstance(exc, NestcloudError):
            exc.hint = f"{exc.hint}; {note}" if exc.hint else note
        else:
            exc.args = (*exc.args, ("interrupted; " if isinstance(exc, KeyboardInterrupt)
                                    else "") + note)

    def _try_delete_group(self, group_id: str, region: str) -> bool:
        """One DeleteSecurityGroup (no waiting for terminating instances): deleted?"""
        ec2 = self.client("ec2", region)
        try:
            with aws_errors(f"delete security group {group_id}", region=region):
                ec2.delete_security_group(GroupId=group_id)
        except ProviderError as exc:
            return error_code(exc) == "InvalidGroup.NotFound"
        return True

    def unlock(self, name: str) -> None:
        """Release the launch lock a failed exclusive launch of ``name`` kept for its
        caller's rollback (see launch); harmless when none is held or `down` removed it."""
        with self._client_lock:
            held = self._held.pop(name, None)
        if held is not None:
            held.release()

    def _relist(self, plan: LaunchPlan, types: tuple[str, ...], notes: list[str],
                run: LaunchRun) -> tuple[LaunchPlan, list[Instance]]:
        """The plan with the name's seats read again (under the launch lock), and the live
        ones. Seats found now that the first read did not see belong to another run: they
        are kept in ``run.found_live`` so a failed launch does not remove them."""
        existing = self.raw_instances(plan.region, plan.name)
        missing, _ = reconcile(plan.spec, plan.name, plan.region, types, existing)
        live = [to_instance(r, plan.region) for r in existing
                if r.get("State", {}).get("Name") in LIVE_STATES]
        before = {r["InstanceId"] for r in plan.existing}
        run.found_live = [i.id for i in live if i.id not in before]
        if run.found_live:
            notes.append(f"{len(run.found_live)} seat(s) of {plan.name!r} appeared "
                              f"meanwhile (another run launched them): "
                              f"{', '.join(run.found_live)}; launching only the missing ones")
        return dataclasses.replace(plan, existing=existing, missing_seats=missing), live

    def _run_seats(self, plan: LaunchPlan, sg_id: str, now: dt.datetime
                   ) -> list[dict[str, Any]]:
        """RunInstances for every missing seat; after a failure no further seat starts."""
        seats = plan.missing_seats
        if not seats:
            return []
        stop = threading.Event()
        errors: list[BaseException] = []

        def one(seat: int) -> dict[str, Any] | None:
            if stop.is_set():
                return None
            try:
                return self.run_seat(plan, seat, sg_id, now)
            except BaseException as exc:
                stop.set()
                errors.append(exc)
                return None

        workers = max(1, min(self.concurrency, len(seats)))
        from concurrent.futures import ThreadPoolExecutor

        if workers == 1:
            results = [one(s) for s in seats]
        else:
            with ThreadPoolExecutor(max_workers=workers) as pool:
                results = list(pool.map(one, seats))
        done = [r for r in results if r is not None]
        if errors:
            raise errors[0]  # what is left is said by the caller (see _say_what_is_left)
        return done

    # list / down / console -----------------------------------------------------------------

    def list(self, name: str | None = None) -> list[Instance]:
        """The instances of ``name`` (every name when None). Right after prefetch() for that
        name (a lab's search before it launches the missing seats) the listing is also kept
        for the launch plan that follows within AHEAD_TTL_S, which then does not read the
        same seats again (taken once, see _take_ahead; ``down`` drops it)."""
        if name is not None:
            check_name(name, "group name")  # a filter value: EC2 reads * and ? as wildcards
        region = self._region(None)
        raws = self.raw_instances(region, name)
        if name is not None and (region, name) in self._list_for_plan:
            self._list_for_plan.discard((region, name))
            self._remember(("existing", region, name), raws)
        return listed(raws, region)

    def leftovers(self, name: str | None = None, instances: Iterable[Instance] | None = None
                  ) -> _Rows:
        """What names without any instance still have: their security groups and launch
        templates (found by the ``nestcloud:name`` tag), as rows `ls` prints and `down NAME`
        removes. ``instances``: the listing the caller already has (else it is read)."""
        region = self._region(None)
        ec2 = self.client("ec2", region)
        tag = ([{"Name": f"tag:{TAG_NAME}", "Values": [name]}] if name else
               [{"Name": "tag-key", "Values": [TAG_NAME]}])
        found: list[tuple[str, str, str]] = []
        with aws_errors("list security groups and launch templates", region=region):
            for page in ec2.get_paginator("describe_security_groups").paginate(Filters=tag):
                found += [(tag_dict(g.get("Tags")).get(TAG_NAME, ""), "security-group",
                           str(g["GroupId"])) for g in page["SecurityGroups"]]
            for page in ec2.get_paginator("describe_launch_templates").paginate(Filters=tag):
                found += [(tag_dict(t.get("Tags")).get(TAG_NAME, ""), "launch-template",
                           str(t["LaunchTemplateId"])) for t in page["LaunchTemplates"]]
        have = {i.name for i in (instances if instances is not None else self.list(name))}
        kinds = {"security-group": 0, "launch-template": 1}
        return [{"provider": "aws", "name": n, "region": region, "kind": k, "id": i}
                for n, k, i in sorted(found, key=lambda f: (f[0], kinds[f[1]], f[2]))
                if n and n not in have]

    def down(self, name: str) -> DownResult:
        check_name(name, "group name")  # never "every group" (empty) nor a pattern
        region = self._region(None)
        self._ahead.pop(("existing", region, name), None)  # about to be stale
        ec2 = self.client("ec2", region)
        ids = [i.id for i in self.list(name)]  # seat order, as `ls` shows them
        from nestcloud.models import DownResult

        result = DownResult(provider="aws", name=name)
        if ids:
            with aws_errors(f"terminate the instances of {name!r}", region=region):
                ec2.terminate_instances(InstanceIds=ids)
            try:
                with aws_errors(f"wait for the instances of {name!r} to terminate",
                                region=region):
                    ec2.get_waiter("instance_terminated").wait(
                        InstanceIds=ids,
                        WaiterConfig={"Delay": self.waiter_delay,
                                      "MaxAttempts": max(1, int(600 / self.waiter_delay))})
            except ProviderError as exc:
                raise CleanupError(f"the instances of {name!r} did not terminate in time",
                                   leftovers=ids, hint=f"run `nestcloud down {name}` again",
                                   provider="aws") from exc
            result.terminated = ids
        for sg in self.find_security_groups(name, region):
            self._delete_security_group(sg["GroupId"], region)
            result.deleted.append(sg["GroupId"])
        # The launch template last: it is the name's launch lock (a lab's rollback holds it),
        # and a run waiting for it must find everything else of this launch gone.
        for tid in find_templates(self, name, region):  # a lock left behind, or ours
            delete_template(self, tid, region)
            result.deleted.append(tid)
            with self._client_lock:
                held = self._held.get(name)
                if held is not None and held.template_id == tid:
                    held.forget()  # a lab's rollback released it: unlock has no work
                    self._held.pop(name, None)
        if not ids and not result.deleted:
            result.notes.append(f"nothing named {name!r} in {region}")
        return result

    def _delete_security_group(self, group_id: str, region: str) -> None:
        """Delete, retrying while ENIs of just-terminated instances still hold the group."""
        ec2 = self.client("ec2", region)
        deadline = time.monotonic() + self.sg_delete_timeout_s
        delay = 1.0
        while True:
            try:
                with aws_errors(f"delete security group {group_id}", region=region):
                    ec2.delete_security_group(GroupId=group_id)
                return
            except ProviderError as exc:
                code = error_code(exc)
                if code == "InvalidGroup.NotFound":
                    return
                if code != "DependencyViolation" or time.monotonic() >= deadline:
                    raise CleanupError(f"could not delete security group {group_id}: {exc}",
                                       leftovers=[group_id],
                                       hint=f"retry later: aws ec2 delete-security-group "
                                            f"--group-id {group_id} --region {region}",
                                       provider="aws") from exc
                self.sleep(delay)
                delay = min(delay * 2, 15.0)

    def console(self, instance: Instance) -> str:
        ec2 = self.client("ec2", instance.region)
        with aws_errors(f"read the console of {instance.id}", region=instance.region):
            out = ec2.get_console_output(InstanceId=instance.id, Latest=True)
        return str(out.get("Output") or "")

    # catalog -------------------------------------------------------------------------------

    def verify_catalog(self, catalog: Catalog, region: str) -> VerifyResult:
        from nestcloud.models import CatalogDiff, VerifyResult

        ec2 = self.client("ec2", region)
        mine = [t for t in catalog.of("aws") if not t.regions or region in t.regions]
        live: dict[str, dict[str, Any]] = {}
        names = sorted({t.name for t in mine})
        # A name filter (unlike InstanceTypes=[...]) does not fail the whole call on one type
        # the region lacks; no processor-feature filter: we read SupportedFeatures ourselves.
        with aws_errors("describe the catalog's instance types", region=region):
            for i in range(0, len(names), VERIFY_BATCH):
                batch = names[i:i + VERIFY_BATCH]
                for page in ec2.get_paginator("describe_instance_types").paginate(
                        Filters=[{"Name": "instance-type", "Values": batch}]):
                    for it in page["InstanceTypes"]:
                        live[it["InstanceType"]] = it
        diffs: list[CatalogDiff] = []
        missing: list[str] = []
        for t in mine:
            it = live.get(t.name)
            if it is None:
                missing.append(t.name)
                continue
            diffs += diff_type(t, it)
        return VerifyResult(provider="aws", region=region, checked=len(mine), diffs=diffs,
                            missing_live=missing)
