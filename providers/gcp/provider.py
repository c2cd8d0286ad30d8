"""The GCP provider: Compute Engine VMs with nested virtualization switched on.

Layout in a project P, region R, for a group named N (FACTS.md "GCP"):

- one network ``nestcloud`` shared by every group of the project (never ``default``, whose
  rules open SSH and RDP to the world), with one subnetwork per region and, for
  ``--egress nat``, one Cloud Router with Cloud NAT per region. It has no ingress rule. These
  stay after ``down`` (they cost nothing without VMs; see README);
- a firewall rule ``nestcloud-N-ssh`` only with ``--ssh-cidr``, on the network tag
  ``nestcloud-N`` every seat carries;
- VMs ``N-0`` .. ``N-(count-1)``: deterministic names, so a re-run reconciles and "already
  exists" is reuse. Each has ``advancedMachineFeatures.enableNestedVirtualization`` (read back
  after creation: a VM that reports it off is deleted and the launch fails), labels for
  nestcloud's tags, a balanced persistent boot disk deleted with it, metadata
  ``enable-guest-attributes=TRUE`` and its bootstrap, ``scheduling.terminationTime`` with
  ``instanceTerminationAction: DELETE`` for a TTL, ``provisioningModel: SPOT`` for spot, and
  ``minCpuPlatform`` on N1.

Up to ``fleet_above`` missing seats are inserted one by one (in parallel), each trying the
region's zones in order; above it one ``regionInstances.bulkInsert`` with ``minCount = count``
(all or nothing) over the region's zones, then each equivalent type. A failed launch removes
what it created. google-cloud-compute is imported only when a verb reaches Google.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import urlparse

from nestcloud.errors import (CapacityError, CleanupError, InputError, LaunchInterrupted,
                              NestcloudError, ProviderError, QuotaError, RefusedError,
                              UnsupportedError)
from nestcloud.provider import (AccessPolicy, Capabilities, EgressCost, LaunchOutcome,
                                LaunchRequest, PriceFetch, ProviderOption, Quota,
                                UserDataEnvelope, is_loopback_http, local_owner)
from nestcloud.spec import (REGION_RE, TAG_EXPIRES, TAG_LAB, TAG_NAME, TAG_OWNER, TAG_SEAT,
                            LaunchSpec, TagLimits, check_name)
from providers.gcp import _guest, _plan
from providers.gcp._plan import PROVIDER
from providers.gcp.pricing import PRICE_SOURCE

if TYPE_CHECKING:
    from nestcloud.catalog import Catalog, InstanceType
    from nestcloud.checks import Finding
    from nestcloud.failover import Attempt
    from nestcloud.models import DownResult, Instance, LaunchResult, VerifyResult
    from providers.gcp._api import Api

ENV_PROJECT = "GOOGLE_CLOUD_PROJECT"
ENV_ENDPOINT = "NESTCLOUD_GCP_ENDPOINT"
SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)
FLEET_ABOVE = 4
Rows = list[dict[str, str]]  # leftovers rows (the class's own `list` shadows the builtin)
# Project ids, including domain-scoped ones ("example.com:my-project"); they go into URL
# paths, so nothing else is accepted.
PROJECT_RE = re.compile(r"\A[a-z][a-z0-9.:-]{0,99}[a-z0-9]\Z")


def _adc_file() -> Path:
    """Where `gcloud auth application-default login` writes its credentials."""
    config = os.environ.get("CLOUDSDK_CONFIG")
    if config:
        return Path(config) / "application_default_credentials.json"
    if os.name == "nt":
        return Path(os.environ.get("APPDATA", "")) / "gcloud" / \
            "application_default_credentials.json"
    return Path.home() / ".config" / "gcloud" / "application_default_credentials.json"


@dataclass
class _Run:
    """What one launch did so far (its rollback and outcome read it)."""

    vms: set[tuple[str, str]] = field(default_factory=set)   # (zone, name) inserted
    bulk_names: set[str] = field(default_factory=set)          # names a bulkInsert asked for
    before: set[str] = field(default_factory=set)              # names there before this run
    firewall: str | None = None                                # made by this run
    attempts: list[Attempt] = field(default_factory=list)
    found_live: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def created_any(self) -> bool:
        return bool(self.vms or self.bulk_names or self.firewall)


@dataclass
class _Plan:
    """What a launch resolved by reading (no writes yet)."""

    spec: LaunchSpec
    name: str
    region: str
    types: tuple[str, ...]
    zones: list[str]                       # the region's zones
    offered: dict[str, list[str]]          # type -> zones of the region offering it
    existing: list[dict[str, Any]]
    reused: list[dict[str, Any]]
    missing: list[int]
    host: _plan.HostSettings
    egress: str
    network: bool                          # exists
    subnet: bool                           # exists
    subnet_cidr: str
    router: bool                           # exists (or not needed)
    firewall: dict[str, Any] | None        # the name's SSH rule, when it exists
    notes: list[str]


class GcpProvider:
    """Compute Engine through google-cloud-compute (REST), Application Default Credentials."""

    name: ClassVar[str] = PROVIDER
    capabilities: ClassVar[Capabilities] = Capabilities(
        fleet_above=FLEET_ABOVE,   # regionInstances.bulkInsert, minCount = count
        quota=True,                # vcpu_quota: regions.get quotas
        native_ttl=True,           # scheduling.terminationTime + instanceTerminationAction
        spot=True,                 # provisioningModel SPOT
        windows=False,             # FACTS: KVM is the only L1 hypervisor on GCP
        leftovers=True,            # SSH firewall rules (and addresses) of names without VMs
        # FACTS: one metadata value <= 256 KiB, sent as text (no gzip). The L1 publishes its
        # check's result as the guest attribute nestcloud/l1 (providers/gcp/_guest.py), which
        # console() reads first, the serial console as fallback.
        user_data=UserDataEnvelope(limit_bytes=_plan.METADATA_VALUE_MAX, gzip=False,
                                   windows="unsupported", readiness="guest-attribute",
                                   linux_report_script=_guest.REPORT_COMMAND),
        # FACTS: label keys 1-63 and values 0-63 characters (the character rules are checked
        # in launch: TagLimits has no place for them; international characters, which Google
        # also allows, are refused as the stricter rule). At most 64 labels per resource
        # (Resource Manager "Requirements for labels", as Google's API references quote it:
        # "No more than 64 labels can be associated with a given resource"; not in FACTS.md).
        # Ours count towards them.
        tags=TagLimits(cloud="GCP", max_tags=64, key_max=63, value_max=63,
                       added=(TAG_NAME, TAG_OWNER, TAG_EXPIRES, TAG_SEAT, TAG_LAB)),
        launch_options=frozenset({"egress"}),
        egress=_plan.EGRESS_MODES,
        rules=True,
        prices=PRICE_SOURCE,
        access_policy=True,
    )
    options: ClassVar[tuple[ProviderOption, ...]] = (
        ProviderOption("project", "--project",
                       "GCP project id (default: GOOGLE_CLOUD_PROJECT, else gcloud's).",
                       envvar=ENV_PROJECT),
        ProviderOption("gcp_endpoint", "--gcp-endpoint",
                       "Compute Engine API endpoint (a private or local one; a plain-http "
                       "loopback endpoint gets anonymous credentials).", envvar=ENV_ENDPOINT),
    )

    # -- class hooks (no SDK, no network unless said) --------------------------------------

    @classmethod
    def configured(cls, project: str | None = None, gcp_endpoint: str | None = None,
                   **_: Any) -> bool:
        """Usable without --provider: a project or endpoint is given, or Application Default
        Credentials are set up (a key file, or gcloud's ADC file). Calls nothing."""
        if project or gcp_endpoint or os.environ.get(ENV_PROJECT):
            return True
        key = os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")
        return bool(key and Path(key).is_file()) or _adc_file().is_file()

    @classmethod
    def rules(cls, spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None
              ) -> list[Finding]:
        from providers.gcp.rules import rules

        return rules(spec, catalog, entry)

    @classmethod
    def egress_cost(cls, mode: str | None, instances: int) -> EgressCost | None:
        return _plan.egress_cost(mode, instances)

    @classmethod
    def fetch_prices(cls, regions: Sequence[str], catalog: Catalog | None = None
                     ) -> PriceFetch:
        """Per-vCPU and per-GiB SKUs priced over the shapes of ``catalog``'s GCP types (the
        catalog being refreshed; None: the catalog in use)."""
        from providers.gcp.pricing import fetch_prices

        shapes = (None if catalog is None else
                  {t.name: (t.vcpus, t.memory_gib) for t in catalog.of(cls.name)})
        return fetch_prices(regions, shapes=shapes)

    @classmethod
    def access_policy(cls, instance_role: str | None = None, l1: bool = False) -> AccessPolicy:
        from providers.gcp.iam import access_policy

        return access_policy(instance_role=instance_role, l1=l1)

    # -- construction ----------------------------------------------------------------------

    def __init__(self, region: str | None = None, project: str | None = None,
                 gcp_endpoint: str | None = None, *, credentials: Any = None,
                 retry: Any = None, max_workers: int = 8, op_timeout_s: float = 1800.0,
                 clock: Callable[[], dt.datetime] | None = None) -> None:
        if region is not None and not REGION_RE.fullmatch(region):
            raise InputError(f"GCP region {region!r}: not a region name (e.g. us-central1)")
        self.region = region
        project = project or os.environ.get(ENV_PROJECT) or None
        if project is not None and not PROJECT_RE.fullmatch(project):
            raise InputError(f"GCP project {project!r}: not a project id (lowercase letters, "
                             "digits and '-', e.g. my-project-123)")
        self._project = project
        endpoint = gcp_endpoint or os.environ.get(ENV_ENDPOINT) or None
        if endpoint is not None:
            url = urlparse(endpoint)
            if url.scheme not in ("http", "https") or not url.hostname:
                raise InputError(f"--gcp-endpoint {endpoint!r}: not an http(s) URL")
            if url.scheme == "http" and not is_loopback_http(endpoint):
                raise InputError(f"--gcp-endpoint {endpoint!r}: plain http is accepted only "
                                 "on this machine (loopback); credentials never travel in "
                                 "clear text", hint="use an https endpoint")
            endpoint = endpoint.rstrip("/")
        self.endpoint = endpoint
        self._credentials = credentials
        self._retry = retry
        self.max_workers = max(1, max_workers)
        self.op_timeout_s = op_timeout_s
        self.fleet_threshold = FLEET_ABOVE  # tests force one launch path
        self.clock: Callable[[], dt.datetime] = clock or (
            lambda: dt.datetime.now(dt.timezone.utc))
        self._api: Api | None = None
        self._lock = threading.Lock()

    @property
    def local(self) -> bool:
        """A plain-http endpoint on this machine (a fake or emulator)."""
        return bool(self.endpoint) and is_loopback_http(self.endpoint or "")

    @property
    def api(self) -> Api:
        """The clients, made on first use: anonymous credentials for a loopback endpoint,
        else Application Default Credentials (which may also name the project)."""
        if self._api is not None:
            return self._api
        with self._lock:
            if self._api is None:
                from providers.gcp._api import Api, translate

                creds, project = self._credentials, self._project
                if creds is None and self.local:
                    from google.auth.credentials import AnonymousCredentials

                    creds = AnonymousCredentials()  # never the user's own on a local fake
                elif creds is None:
                    import google.auth

                    try:
                        creds, adc_project = google.auth.default(scopes=list(SCOPES))
                    except Exception as exc:
                        raise translate(exc, "finding Google credentials") from exc
                    project = project or adc_project
                if not project:
                    raise InputError("no GCP project: pass --project (-o project=...), set "
                                     f"{ENV_PROJECT}, or choose a default with `gcloud config "
                                     "set project PROJECT`")
                if not PROJECT_RE.fullmatch(project):
                    raise InputError(f"GCP project {project!r}: not a project id")
                self._project = project
                self._api = Api(project, creds, self.endpoint, retry=self._retry,
                                op_timeout_s=self.op_timeout_s)
        return self._api

    @property
    def project(self) -> str:
        return self.api.project

    def _region(self, region: str | None) -> str:
        r = region or self.region
        if not r:
            raise InputError("GCP needs a region: pass --region (e.g. us-central1)")
        if not REGION_RE.fullmatch(r):
            raise InputError(f"GCP region {r!r}: not a region name (e.g. us-central1)")
        return r

    # -- reads -----------------------------------------------------------------------------

    def _region_info(self, region: str) -> dict[str, Any]:
        from providers.gcp._api import status_of, to_dict

        api = self.api
        try:
            got = api.call(f"reading region {region}", api.client("regions").get,
                           project=api.project, region=region, where={"region": region})
        except ProviderError as exc:
            if status_of(exc) == 404:
                raise InputError(f"GCP region {region!r} does not exist (or project "
                                 f"{api.project!r} cannot see it)") from exc
            raise
        return to_dict(got)

    def _offered(self, types: Iterable[str], zones: Iterable[str]) -> dict[str, dict[str, Any]]:
        """type -> {zone: machine type} for the given zones (machineTypes.aggregatedList)."""
        from providers.gcp._api import to_dict

        api = self.api
        wanted = list(dict.fromkeys(types))
        zones = set(zones)
        out: dict[str, dict[str, Any]] = {t: {} for t in wanted}
        # Machine type names are lowercase letters, digits and '-': nothing to escape.
        pattern = "|".join(t for t in wanted if re.fullmatch(r"[a-z0-9-]+", t))
        pager = api.call("reading machine types", api.client("machine_types").aggregated_list,
                         request={"project": api.project, "filter": f'name eq "{pattern}"'})
        with _errors("reading machine types"):
            for scope, scoped in pager:
                zone = _plan.last(scope)
                if zone not in zones:
                    continue
                for mt in scoped.machine_types:
                    if mt.name in out:
                        out[mt.name][zone] = to_dict(mt)
        return out

    def _raw_instances(self, name: str | None, region: str | None) -> list[dict[str, Any]]:
        """The instances carrying nestcloud's name label (of ``name``), as REST JSON."""
        from providers.gcp._api import to_dict

        api = self.api
        label = _plan.LABEL_OF[TAG_NAME]
        flt = f'labels.{label} = "{name}"' if name else f"labels.{label}:*"
        pager = api.call("listing instances", api.client("instances").aggregated_list,
                         request={"project": api.project, "filter": flt})
        out: list[dict[str, Any]] = []
        with _errors("listing instances"):
            for scope, scoped in pager:
                zone = _plan.last(scope)
                if region is not None and _plan.region_of_zone(zone) != region:
                    continue
                for inst in scoped.instances:
                    raw = to_dict(inst)
                    if (raw.get("labels") or {}).get(label) and (
                            name is None or raw["labels"][label] == name):
                        out.append(raw)
        return out

    def _get_json(self, doing: str, fn: Callable[..., Any], **kw: Any) -> dict[str, Any] | None:
        """A resource as REST JSON, or None when it does not exist."""
        from providers.gcp._api import status_of, to_dict

        try:
            return to_dict(self.api.call(doing, fn, project=self.api.project, **kw))
        except ProviderError as exc:
            if status_of(exc) == 404:
                return None
            raise

    def vcpu_quota(self, region: str, type: str) -> Quota | None:
        """The region's vCPU limit that applies to ``type`` (regions.get), or why it is
        unknown."""
        try:
            info = self._region_info(region)
        except NestcloudError as exc:
            return Quota(None, f"regions.get {region}: {exc.message}")
        quotas = _quotas(info)
        metric, how = _cpu_metric(quotas, type, spot=False)
        if metric is None:
            return Quota(None, f"regions.get {region} lists no CPU quota for {type}")
        limit, usage = quotas[metric]
        return Quota(limit, f"regions.get {metric}{how} ({usage:g} in use)")

    # -- launch ----------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> LaunchOutcome:
        """Create the missing seats (see the Provider protocol). A failure removes what this
        run created (the shared network stays) and says so."""
        run = _Run()
        try:
            result = self._launch(request, run)
        except ProviderError as exc:
            raise exc.with_outcome(self._outcome(run))
        except KeyboardInterrupt as exc:
            raise LaunchInterrupted(self._outcome(run), *exc.args) from exc
        return LaunchOutcome(result=result, attempts=tuple(run.attempts),
                             created_any=bool(result.created) or run.firewall is not None,
                             found_live=tuple(run.found_live))

    @staticmethod
    def _outcome(run: _Run) -> LaunchOutcome:
        return LaunchOutcome(attempts=tuple(run.attempts), created_any=run.created_any,
                             found_live=tuple(run.found_live))

    def _launch(self, request: LaunchRequest, run: _Run) -> LaunchResult:
        from nestcloud.models import LaunchResult

        plan = self.plan(request.spec, request.catalog, request.types)
        run.before = {r["name"] for r in plan.existing}
        base: dict[str, Any] = dict(provider=self.name, name=plan.name, region=plan.region,
                                    type=plan.spec.type)
        if request.dry_run:
            return LaunchResult(**base, dry_run=True, requests=self._requests(plan),
                                reused=[self._to_instance(r).id for r in plan.reused],
                                notes=plan.notes)
        launched_type = plan.spec.type
        try:
            self._shared(plan, run)
            if len(plan.missing) > self.fleet_threshold:
                launched_type = self._bulk(plan, run)
            elif plan.missing:
                self._singles(plan, run)
            instances = self._readback(plan, run)
        except BaseException as exc:
            self._rollback(plan, run, exc)
            raise
        new = {_plan.vm_name(plan.name, s) for s in plan.missing}
        created = [i for i in instances if i.id.rsplit("/", 1)[-1] in new
                   and i.id not in run.found_live]
        return LaunchResult(**{**base, "type": launched_type}, instances=instances,
                            created=[i.id for i in created],
                            reused=[i.id for i in instances if i not in created],
                            notes=plan.notes)

    def plan(self, spec: LaunchSpec, catalog: Catalog, types: Sequence[str] = ()) -> _Plan:
        """Every check and read a launch needs, and its decisions. Creates nothing."""
        from nestcloud.launcher import check_ssh_cidr, default_name
        from providers.gcp._guest import guest_for

        region = self._region(spec.region)
        name = spec.name or default_name(spec)
        check_name(name, "group name")
        if spec.instance_profile:
            raise InputError(f"instance profile {spec.instance_profile!r}: that is an AWS IAM "
                             "setting; GCP VMs get no service account from nestcloud")
        if spec.security_type != "Standard":
            raise InputError(f"security type {spec.security_type}: an Azure setting; GCP has "
                             "none to choose")
        if spec.image_generation is not None:
            raise InputError("--image-generation is an Azure setting (Hyper-V generation)")
        entry = catalog.get(self.name, spec.type)
        if entry is None:
            raise InputError(f"unknown gcp machine type {spec.type!r} (not in the catalog)",
                             hint="see `nestcloud catalog list --provider gcp --nested-only`")
        if entry.nesting != "nested":
            raise RefusedError(f"{spec.type}: the catalog says it cannot run a hypervisor on "
                               f"GCP (nesting {entry.nesting}); Compute Engine would accept "
                               "the nested flag and boot a VM without vmx",
                               hint="`nestcloud check --provider gcp --type ...` suggests a "
                                    "type that can")
        notes: list[str] = []
        all_types = [spec.type]
        for t in dict.fromkeys(types):
            other = catalog.get(self.name, t)
            if t == spec.type:
                continue
            if other is None or other.nesting != "nested":
                notes.append(f"equivalent type {t} left out: the catalog does not list it as "
                             "nested-capable on GCP")
                continue
            all_types.append(t)
        ssh_cidr = check_ssh_cidr(spec.ssh_cidr, spec.allow_world_ssh)
        _plan.check_user_labels(spec.tags)
        egress = _plan.egress_mode(spec.egress)
        if egress == "none" and spec.public_ip:
            raise InputError("--egress none with --public-ip: a VM with an external IP has a "
                             "way out; choose one", hint="drop --public-ip, or use --egress "
                                                         "public-ip")
        guest = guest_for(self.capabilities.user_data, spec.os, spec.hypervisor,
                          user_data=spec.user_data, l2_smoke=spec.l2_smoke)
        image = _image(spec)
        ssh_keys = _ssh_keys(spec.key_name)

        info = self._region_info(region)
        zones = sorted(_plan.last(z) for z in info.get("zones") or [])
        offered_mt = self._offered(all_types, zones)
        offered = {t: sorted(offered_mt[t]) for t in all_types}
        if not offered[spec.type]:
            raise UnsupportedError(f"{spec.type} is not offered in any zone of {region}",
                                   hint=f"run `nestcloud catalog verify --provider gcp "
                                        f"--region {region}`, or pick another region",
                                   provider=self.name, code="machineTypeNotOffered")
        existing = self._raw_instances(name, region)
        reused, missing, seat_notes = _reconcile(spec, name, all_types, existing)
        notes += seat_notes
        if missing:
            vcpus = next(iter(offered_mt[spec.type].values())).get("guestCpus") or entry.vcpus
            _check_quota(_quotas(info), spec.type, int(vcpus) * len(missing), len(missing),
                         spec.spot, region)

        api = self.api
        network = self._get_json("reading the nestcloud network", api.client("networks").get,
                                  network=_plan.NETWORK) is not None
        subnet_json = self._get_json("reading the nestcloud subnetwork",
                                     api.client("subnetworks").get, region=region,
                                     subnetwork=_plan.subnet_name(region)) if network else None
        cidr = subnet_json["ipCidrRange"] if subnet_json else (
            _plan.free_subnet(region, self._subnet_ranges()) if network else
            _plan.free_subnet(region, ()))
        router = True
        if egress == "nat":
            router = network and self._get_json(
                "reading the nestcloud Cloud NAT router", api.client("routers").get,
                region=region, router=_plan.router_name(region)) is not None
        firewall = None
        if network:
            firewall = self._get_json("reading the SSH firewall rule",
                                      api.client("firewalls").get,
                                      firewall=_plan.firewall_name(name))
        if firewall is not None:
            if not str(firewall.get("description", "")).startswith(
                    f"{_plan.FIREWALL_MARK}{name}:"):
                raise InputError(f"firewall rule {_plan.firewall_name(name)} exists and "
                                 "nestcloud did not create it for this name",
                                 hint="pick another --name")
            if ssh_cidr is None or firewall.get("sourceRanges") != [ssh_cidr]:
                raise InputError(f"{name!r} already allows SSH from "
                                 f"{', '.join(firewall.get('sourceRanges') or [])}; this launch "
                                 + (f"asks for {ssh_cidr}" if ssh_cidr else
                                    "asks for no SSH rule"),
                                 hint=f"launch with the same --ssh-cidr, or `nestcloud down "
                                      f"{name}` first")
        elif ssh_cidr is not None and existing:
            notes.append(f"SSH from {ssh_cidr} added for the seats already running too")

        now = self.clock()
        expires = (_plan.ceil_minute(now + dt.timedelta(seconds=spec.ttl_seconds))
                   if spec.ttl_seconds else None)
        host = _plan.HostSettings(
            machine_type=spec.type, image=image, disk_gib=spec.disk_gib,
            labels=_plan.labels(name, local_owner(), expires, spec.tags),
            network_tag=_plan.network_tag(name),
            subnet=f"regions/{region}/subnetworks/{_plan.subnet_name(region)}",
            external_ip=egress == "public-ip" or spec.public_ip, spot=spec.spot,
            termination_time=expires, guest=guest, ssh_keys=ssh_keys)
        if missing:
            notes += self._launch_notes(spec, host, egress, len(missing), network, ssh_cidr)
        return _Plan(spec=spec.model_copy(update={"region": region, "ssh_cidr": ssh_cidr}),
                     name=name, region=region, types=tuple(all_types), zones=zones,
                     offered=offered, existing=existing, reused=reused, missing=missing,
                     host=host, egress=egress, network=network,
                     subnet=subnet_json is not None, subnet_cidr=cidr, router=router,
                     firewall=firewall, notes=notes)

    def _subnet_ranges(self) -> list[str]:
        """The ranges of the nestcloud network's subnetworks (a new one must not overlap)."""
        api = self.api
        net = self._get_json("reading the nestcloud network", api.client("networks").get,
                             network=_plan.NETWORK) or {}
        out = []
        for link in net.get("subnetworks") or []:
            parts = link.rstrip("/").split("/")
            if "regions" in parts:
                reg = parts[parts.index("regions") + 1]
                got = self._get_json("reading a nestcloud subnetwork",
                                     api.client("subnetworks").get, region=reg,
                                     subnetwork=parts[-1])
                if got and got.get("ipCidrRange"):
                    out.append(str(got["ipCidrRange"]))
        return out

    def _launch_notes(self, spec: LaunchSpec, host: _plan.HostSettings, egress: str, n: int,
                      network: bool, ssh_cidr: str | None) -> list[str]:
        notes = [f"image {host.image}",
                 f"bootstrap: metadata {host.guest.key} ({host.guest.kind}, "
                 f"{len((host.guest.value or '').encode())} bytes); readiness: guest "
                 "attribute nestcloud/l1, serial console as fallback"]
        if _plan.family_of(spec.type) == "n1":
            notes.append(f"N1: minCpuPlatform {_plan.N1_MIN_CPU_PLATFORM} (nested "
                         "virtualization needs Haswell or later)")
        cost = _plan.egress_cost(egress, n)
        notes.append(cost.note)
        if spec.public_ip and egress != "public-ip":
            notes.append("--public-ip: each VM also gets an external IPv4 (no ingress rule "
                         "unless --ssh-cidr)")
        if ssh_cidr is not None and not host.external_ip:
            notes.append(f"--ssh-cidr {ssh_cidr}: the VMs have no external IP with --egress "
                         f"{egress}; SSH reaches them only from inside the network")
        if host.termination_time is not None:
            notes.append(f"TTL: Compute Engine deletes each VM itself at "
                         f"{_plan.iso_z(host.termination_time)} (scheduling.terminationTime, "
                         "instanceTerminationAction DELETE); the expiry label lets `nestcloud "
                         "reap` find strays")
        if not network:
            notes.append(f"creating the shared network {_plan.NETWORK} (no ingress rule; kept "
                         "after `down`, used by every nestcloud group of the project)")
        return notes

    def _requests(self, plan: _Plan) -> list[Any]:
        """The exact writes a launch of ``plan`` sends, in order (--dry-run)."""
        from nestcloud.models import PlannedRequest

        project = self.api.project
        out = []

        def req(operation: str, **params: Any) -> None:
            out.append(PlannedRequest(service="compute", operation=operation,
                                      params={"project": project, **params}))

        if not plan.network:
            req("networks.insert", body=_plan.network_body())
        if not plan.subnet:
            req("subnetworks.insert", region=plan.region,
                body=_plan.subnet_body(plan.region, plan.subnet_cidr))
        if not plan.router:
            req("routers.insert", region=plan.region, body=_plan.router_body(plan.region))
        if plan.spec.ssh_cidr and plan.firewall is None:
            req("firewalls.insert", body=_plan.firewall_body(plan.name, plan.spec.ssh_cidr))
        if len(plan.missing) > self.fleet_threshold:
            deny = [z for z in plan.zones if z not in plan.offered[plan.spec.type]]
            req("regionInstances.bulkInsert", region=plan.region,
                body=_plan.bulk_body(plan.host, plan.name, plan.missing, deny))
        else:
            zone = plan.offered[plan.spec.type][0]
            for seat in plan.missing:
                req("instances.insert", zone=zone,
                    body=_plan.instance_body(plan.host, plan.name, seat, zone))
        return out

    # -- writes ----------------------------------------------------------------------------

    def _insert(self, doing: str, kind: str, body: dict[str, Any], *, region: str | None = None,
                zone: str | None = None, type_name: str | None = None) -> bool:
        """Insert one resource and wait for it; False when it already existed (409)."""
        from google.cloud import compute_v1

        from providers.gcp._api import from_dict, request_id, status_of

        api = self.api
        msg = {"networks": (compute_v1.Network, "network_resource"),
               "subnetworks": (compute_v1.Subnetwork, "subnetwork_resource"),
               "routers": (compute_v1.Router, "router_resource"),
               "firewalls": (compute_v1.Firewall, "firewall_resource"),
               "instances": (compute_v1.Instance, "instance_resource")}[kind]
        req: dict[str, Any] = {"project": api.project, "request_id": request_id(),
                               msg[1]: from_dict(msg[0], body)}
        if region:
            req["region"] = region
        if zone:
            req["zone"] = zone
        where = {"region": region or (zone and _plan.region_of_zone(zone)), "zone": zone,
                 "type_name": type_name}
        try:
            op = api.call(doing, api.client(kind).insert_unary, request=req, where=where)
        except ProviderError as exc:
            if status_of(exc) == 409:
                return False
            raise
        api.wait(op, doing, zone=zone, region=region, type_name=type_name)
        return True

    def _shared(self, plan: _Plan, run: _Run) -> None:
        """The shared network pieces, then the name's SSH rule (each only when missing)."""
        ssh = plan.spec.ssh_cidr is not None and plan.firewall is None
        if not plan.missing and not ssh:
            return
        if not plan.network:
            self._insert(f"creating the network {_plan.NETWORK}", "networks",
                         _plan.network_body())
        if not plan.subnet:
            self._insert(f"creating the subnetwork {_plan.subnet_name(plan.region)}",
                         "subnetworks", _plan.subnet_body(plan.region, plan.subnet_cidr),
                         region=plan.region)
        if not plan.router:
            self._insert(f"creating the Cloud NAT router {_plan.router_name(plan.region)}",
                         "routers", _plan.router_body(plan.region), region=plan.region)
        if ssh and plan.spec.ssh_cidr:
            fw = _plan.firewall_name(plan.name)
            run.firewall = fw
            if not self._insert(f"creating the firewall rule {fw}", "firewalls",
                                _plan.firewall_body(plan.name, plan.spec.ssh_cidr)):
                run.firewall = None  # another run of the same launch made it meanwhile

    def _singles(self, plan: _Plan, run: _Run) -> None:
        """instances.insert per missing seat on a bounded pool; each seat tries the zones
        offering the type in order (a stockout moves every later seat on too). After a
        failure no further seat starts; the first failure is raised."""
        zones = plan.offered[plan.spec.type]
        exhausted: set[str] = set()
        stop = threading.Event()
        failures: list[tuple[int, BaseException]] = []

        def one(seat: int) -> None:
            try:
                self._insert_seat(plan, run, seat, zones, exhausted, stop)
            except BaseException as exc:
                stop.set()
                failures.append((seat, exc))

        workers = min(self.max_workers, len(plan.missing))
        if workers <= 1:
            for s in plan.missing:
                one(s)
                if stop.is_set():
                    break
        else:
            pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="nestcloud-gcp")
            try:
                for fut in [pool.submit(one, s) for s in plan.missing]:
                    fut.result()
            except BaseException:
                stop.set()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
        if failures:
            failures.sort(key=lambda f: f[0])
            seat, exc = failures[0]
            if isinstance(exc, NestcloudError) and len(failures) > 1:
                exc.message += (f" (and {len(failures) - 1} more seat(s) of "
                                f"{plan.spec.count} failed)")
            raise exc

    def _insert_seat(self, plan: _Plan, run: _Run, seat: int, zones: list[str],
                     exhausted: set[str], stop: threading.Event) -> None:
        from nestcloud.failover import Attempt
        from providers.gcp._api import from_dict, request_id, status_of

        from google.cloud import compute_v1

        api = self.api
        vm = _plan.vm_name(plan.name, seat)
        t = plan.spec.type
        for zone in zones:
            if stop.is_set():
                return
            if zone in exhausted:
                continue
            body = _plan.instance_body(plan.host, plan.name, seat, zone)
            doing = f"seat {seat}: creating {vm} in {zone}"
            where: dict[str, str | None] = {"region": plan.region, "zone": zone,
                                            "type_name": t}
            try:
                op = api.call(doing, api.client("instances").insert_unary, where=where,
                              request={"project": api.project, "zone": zone,
                                       "request_id": request_id(),
                                       "instance_resource": from_dict(compute_v1.Instance,
                                                                      body)})
            except ProviderError as exc:
                if status_of(exc) != 409:
                    raise
                self._already_there(plan, run, vm, zone, exc)
                return
            with run.lock:
                run.vms.add((zone, vm))
            try:
                api.wait(op, doing, zone=zone, type_name=t)
            except CapacityError as exc:
                with run.lock:
                    run.vms.discard((zone, vm))  # a failed insert leaves no VM
                    exhausted.add(zone)
                    run.attempts.append(Attempt(self.name, plan.region, t, zone, "failed",
                                                "zone", exc.code, exc.message))
                continue
            return
        raise CapacityError(f"seat {seat}: no zone of {plan.region} has capacity for {t} "
                            f"now (tried {', '.join(zones)})",
                            hint="another type or region may work, or retry later",
                            code="ZONE_RESOURCE_POOL_EXHAUSTED", provider=self.name)

    def _already_there(self, plan: _Plan, run: _Run, vm: str, zone: str,
                       exc: ProviderError) -> None:
        """An insert answered "already exists": another run of this launch made the seat
        (reuse it), or something else owns the name (refuse)."""
        got = self._get_json(f"reading {vm}", self.api.client("instances").get, zone=zone,
                             instance=vm)
        label = _plan.LABEL_OF[TAG_NAME]
        if got is None or (got.get("labels") or {}).get(label) != plan.name:
            raise InputError(f"an instance named {vm} exists in {zone} that nestcloud did not "
                             f"create for {plan.name!r}", hint="pick another --name") from exc
        with run.lock:
            run.found_live.append(_plan.instance_id(self.api.project, zone, vm))

    def _bulk(self, plan: _Plan, run: _Run) -> str:
        """One regionInstances.bulkInsert of every missing seat (minCount = count: all or
        nothing) over the region's zones offering the type; on a capacity failure the next
        equivalent type. Returns the type launched."""
        from google.cloud import compute_v1

        from nestcloud.failover import Attempt
        from providers.gcp._api import from_dict, request_id

        api = self.api
        names = {_plan.vm_name(plan.name, s) for s in plan.missing}
        for t in plan.types:
            zones = plan.offered.get(t) or []
            if not zones:
                run.attempts.append(Attempt(self.name, plan.region, t, None, "failed", "type",
                                            None, f"{t} is not offered in {plan.region}"))
                continue
            host = replace(plan.host, machine_type=t)
            deny = [z for z in plan.zones if z not in zones]
            body = _plan.bulk_body(host, plan.name, plan.missing, deny)
            doing = (f"creating {len(plan.missing)} seat(s) of {t} in {plan.region} "
                     "(bulkInsert, all or nothing)")
            where: dict[str, str | None] = {"region": plan.region, "type_name": t}
            with run.lock:
                run.bulk_names |= names
            op = api.call(doing, api.client("region_instances").bulk_insert_unary,
                          where=where, request={
                              "project": api.project, "region": plan.region,
                              "request_id": request_id(),
                              "bulk_insert_instance_resource_resource": from_dict(
                                  compute_v1.BulkInsertInstanceResource, body)})
            try:
                api.wait(op, doing, region=plan.region, type_name=t)
            except CapacityError as exc:
                run.attempts.append(Attempt(self.name, plan.region, t, None, "failed", "zone",
                                            exc.code, exc.message))
                continue
            if t != plan.spec.type:
                plan.notes.append(f"launched as {t}: {plan.spec.type} had no capacity for "
                                  f"all {len(plan.missing)} seat(s) in {plan.region}")
            return t
        raise CapacityError(f"no zone of {plan.region} could take all {len(plan.missing)} "
                            f"seat(s) of {' or '.join(plan.types)} (bulkInsert, all or "
                            "nothing)", hint="another region may work, or retry later",
                            code="ZONE_RESOURCE_POOL_EXHAUSTED", provider=self.name)

    def _readback(self, plan: _Plan, run: _Run) -> list[Instance]:
        """The group after the launch; every new VM must report the nested flag on, else it
        is deleted and the launch fails (rolled back by the caller)."""
        raws = self._raw_instances(plan.name, plan.region)
        new = {_plan.vm_name(plan.name, s) for s in plan.missing}
        off = [r for r in raws if r["name"] in new and r["name"] not in run.before
               and (r.get("advancedMachineFeatures") or {}).get(
                   "enableNestedVirtualization") is not True]
        if off:
            names = ", ".join(sorted(r["name"] for r in off))
            raise UnsupportedError(
                f"Compute Engine created {names} with "
                "advancedMachineFeatures.enableNestedVirtualization off although the request "
                "switched it on: nested virtualization is not available there",
                hint="check the organization policy constraints/compute."
                     "disableNestedVirtualization and `nestcloud catalog verify --provider "
                     "gcp`; pick another type or region", provider=self.name,
                code="nestedVirtualizationOff")
        live = [self._to_instance(r) for r in raws if r.get("status") in _plan.LIVE_STATUSES]
        return sorted(live, key=lambda i: (i.seat if i.seat is not None else 1 << 30, i.id))

    def _rollback(self, plan: _Plan, run: _Run, exc: BaseException) -> None:
        """Remove what this run created (its VMs and SSH rule); say what is left when that
        fails too. The shared network stays."""
        if not run.created_any:
            return
        try:
            raws = self._raw_instances(plan.name, plan.region)
        except NestcloudError:
            raws = []
        targets = set(run.vms)
        targets |= {(_plan.last(r["zone"]), r["name"]) for r in raws
                    if r["name"] in (run.bulk_names | {v for _, v in run.vms})
                    and r["name"] not in run.before}
        targets = {t for t in targets
                   if _plan.instance_id(self.api.project, *t) not in run.found_live}
        left = self._delete_instances(sorted(targets))
        removed = len(targets) - len(left)
        if run.firewall is not None:
            if self._delete_firewall(run.firewall):
                removed += 1
            else:
                left.append(f"projects/{self.api.project}/global/firewalls/{run.firewall}")
        if left:
            raise CleanupError("the launch failed and removing what it created failed too; "
                               "left: " + ", ".join(left), leftovers=left, provider=self.name,
                               hint=f"run `nestcloud down {plan.name} --provider gcp`") from exc
        run.vms.clear()
        run.bulk_names.clear()
        run.firewall = None
        note = (f"rolled back what this run created ({removed} resource(s))" if removed else
                "this run created nothing that is left")
        if isinstance(exc, NestcloudError):
            exc.message += f"; {note}"
        else:
            exc.args = (*exc.args, note)

    # -- deletes ---------------------------------------------------------------------------

    def _delete_instances(self, targets: list[tuple[str, str]]) -> list[str]:
        """Delete (zone, name) VMs in parallel and wait; the ids that could not be deleted.
        Already gone counts as deleted."""
        from providers.gcp._api import request_id, status_of

        api = self.api
        left: list[str] = []

        def one(t: tuple[str, str]) -> None:
            zone, vm = t
            doing = f"deleting {vm} in {zone}"
            try:
                op = api.call(doing, api.client("instances").delete_unary, request={
                    "project": api.project, "zone": zone, "instance": vm,
                    "request_id": request_id()})
                api.wait(op, doing, zone=zone)
            except ProviderError as exc:
                if status_of(exc) == 404:
                    return
                left.append(f"{_plan.instance_id(api.project, zone, vm)} ({exc.message})")

        if not targets:
            return left
        with ThreadPoolExecutor(max_workers=min(self.max_workers, len(targets)),
                                thread_name_prefix="nestcloud-gcp-del") as pool:
            list(pool.map(one, targets))
        return left

    def _delete_firewall(self, fw: str) -> bool:
        from providers.gcp._api import request_id, status_of

        api = self.api
        try:
            op = api.call(f"deleting firewall rule {fw}", api.client("firewalls").delete_unary,
                          request={"project": api.project, "firewall": fw,
                                   "request_id": request_id()})
            api.wait(op, f"deleting firewall rule {fw}")
        except ProviderError as exc:
            return status_of(exc) == 404
        return True

    def down(self, name: str) -> DownResult:
        """Delete the name's VMs (their disks go with them), its SSH rule and any address
        labelled with it, and wait. The shared network stays (see the module docstring)."""
        from nestcloud.models import DownResult
        from providers.gcp._api import request_id, status_of

        check_name(name, "group name")
        api = self.api
        result = DownResult(provider=self.name, name=name)
        raws = self._raw_instances(name, self.region)
        targets = sorted((_plan.last(r["zone"]), r["name"]) for r in raws)
        left = self._delete_instances(targets)
        failed = {x.split(" ", 1)[0] for x in left}
        result.terminated = [_plan.instance_id(api.project, z, v) for z, v in targets
                             if _plan.instance_id(api.project, z, v) not in failed]
        fw = _plan.firewall_name(name)
        got = self._get_json(f"reading firewall rule {fw}", api.client("firewalls").get,
                             firewall=fw)
        if got is not None and str(got.get("description", "")).startswith(
                f"{_plan.FIREWALL_MARK}{name}:"):
            if self._delete_firewall(fw):
                result.deleted.append(f"projects/{api.project}/global/firewalls/{fw}")
            else:
                left.append(f"projects/{api.project}/global/firewalls/{fw}")
        regions = {self.region} if self.region else set()
        regions |= {_plan.region_of_zone(z) for z, _ in targets}
        label = _plan.LABEL_OF[TAG_NAME]
        for region in sorted(r for r in regions if r):
            pager = api.call(f"listing addresses in {region}", api.client("addresses").list,
                             request={"project": api.project, "region": region,
                                      "filter": f'labels.{label} = "{name}"'})
            with _errors(f"listing addresses in {region}"):
                addrs = [a.name for a in pager]
            for a in addrs:
                doing = f"deleting address {a} in {region}"
                try:
                    op = api.call(doing, api.client("addresses").delete_unary, request={
                        "project": api.project, "region": region, "address": a,
                        "request_id": request_id()})
                    api.wait(op, doing, region=region)
                    result.deleted.append(f"projects/{api.project}/regions/{region}/"
                                          f"addresses/{a}")
                except ProviderError as exc:
                    if status_of(exc) != 404:
                        left.append(f"projects/{api.project}/regions/{region}/addresses/{a}")
        if left:
            raise CleanupError("could not delete: " + "; ".join(left), leftovers=left,
                               provider=self.name,
                               hint=f"run `nestcloud down {name} --provider gcp` again")
        if not result.terminated and not result.deleted:
            where = f" in {self.region}" if self.region else ""
            result.notes.append(f"nothing named {name!r}{where} in project {api.project}")
        else:
            result.notes.append(f"the shared network {_plan.NETWORK} (its subnetworks and "
                                "Cloud NAT routers) stays: other groups use it, and it costs "
                                "nothing without VMs")
        return result

    # -- list / leftovers / console --------------------------------------------------------

    def list(self, name: str | None = None) -> list[Instance]:
        if name is not None:
            check_name(name, "group name")
        raws = self._raw_instances(name, self.region)
        return sorted((self._to_instance(r) for r in raws),
                      key=lambda i: (i.name, i.seat if i.seat is not None else 1 << 30, i.id))

    def _to_instance(self, raw: dict[str, Any]) -> Instance:
        from nestcloud.models import Instance

        zone = _plan.last(raw.get("zone", ""))
        lbls = dict(raw.get("labels") or {})
        tags = _plan.tags_of(lbls)
        name = tags.get(TAG_NAME, "")
        seat_label = lbls.get(_plan.LABEL_OF[TAG_SEAT], "")
        seat = int(seat_label) if seat_label.isdigit() else _plan.seat_of(raw["name"], name)
        nics = raw.get("networkInterfaces") or [{}]
        access = (nics[0].get("accessConfigs") or [{}])[0]
        status = str(raw.get("status", ""))
        return Instance(
            provider=self.name, id=_plan.instance_id(self.api.project, zone, raw["name"]),
            name=name, region=_plan.region_of_zone(zone),
            type=_plan.last(raw.get("machineType", "")),
            state=_plan.STATES.get(status, status.lower() or "unknown"), zone=zone, seat=seat,
            nested=(raw.get("advancedMachineFeatures") or {}).get("enableNestedVirtualization"),
            private_ip=nics[0].get("networkIP"), public_ip=access.get("natIP"),
            launched_at=raw.get("creationTimestamp"), expires=tags.get(TAG_EXPIRES),
            tags=tags)

    def leftovers(self, name: str | None = None, instances: Iterable[Instance] | None = None
                  ) -> Rows:
        """SSH firewall rules of names without any instance (firewall rules carry no labels:
        found by their name and the nestcloud mark in their description)."""
        if name is not None:
            check_name(name, "group name")
        api = self.api
        flt = (f'name = "{_plan.firewall_name(name)}"' if name else
               'name eq "nestcloud-.*-ssh"')
        pager = api.call("listing firewall rules", api.client("firewalls").list,
                         request={"project": api.project, "filter": flt})
        have = {i.name for i in (instances if instances is not None else self.list(name))}
        out: list[dict[str, str]] = []
        with _errors("listing firewall rules"):
            for fw in pager:
                m = _plan.FIREWALL_RE.match(fw.name)
                if not m or not fw.description.startswith(
                        f"{_plan.FIREWALL_MARK}{m.group('name')}:"):
                    continue
                owner = m.group("name")
                if owner in have or (name is not None and owner != name):
                    continue
                out.append({"provider": self.name, "name": owner, "region": "global",
                            "kind": "firewall",
                            "id": f"projects/{api.project}/global/firewalls/{fw.name}"})
        return sorted(out, key=lambda r: (r["name"], r["id"]))

    def console(self, instance: Instance) -> str:
        """The readiness report the L1 published as the guest attribute nestcloud/l1 (as the
        marker line `nestcloud wait` reads), else the serial console (port 1)."""
        from nestcloud.bootstrap.l1check import MARKER
        from providers.gcp._api import status_of
        from providers.gcp._guest import GUEST_ATTRIBUTE

        api = self.api
        _, zone, vm = _plan.parse_instance_id(instance.id)
        try:
            got = api.call(f"reading the guest attributes of {vm}",
                           api.client("instances").get_guest_attributes,
                           request={"project": api.project, "zone": zone, "instance": vm,
                                    "variable_key": GUEST_ATTRIBUTE})
            value = str(got.variable_value or "").strip()
            if value:
                try:
                    doc = json.loads(value)
                except ValueError:
                    doc = None
                if isinstance(doc, dict):
                    return f"{MARKER} {json.dumps(doc, sort_keys=True)}\n"
        except ProviderError as exc:
            if status_of(exc) not in (404, 400, 403, 429):
                raise
            # Not there yet (404), or guest attributes unavailable: the serial console says.
        try:
            out = api.call(f"reading the serial console of {vm}",
                           api.client("instances").get_serial_port_output,
                           request={"project": api.project, "zone": zone, "instance": vm,
                                    "port": 1})
        except ProviderError as exc:
            if status_of(exc) == 404:
                return ""
            raise
        return str(out.contents or "")

    # -- catalog ---------------------------------------------------------------------------

    def verify_catalog(self, catalog: Catalog, region: str) -> VerifyResult:
        """The catalog's GCP types against machineTypes.aggregatedList in ``region``."""
        from nestcloud.models import CatalogDiff, VerifyResult
        from providers.gcp._api import to_dict

        region = self._region(region)
        api = self.api
        live: dict[str, dict[str, Any]] = {}
        pager = api.call("reading machine types", api.client("machine_types").aggregated_list,
                         request={"project": api.project})
        with _errors("reading machine types"):
            for scope, scoped in pager:
                if _plan.region_of_zone(_plan.last(scope)) != region:
                    continue
                for mt in scoped.machine_types:
                    live.setdefault(mt.name, to_dict(mt))
        mine = [t for t in catalog.of(self.name) if not t.regions or region in t.regions]
        diffs: list[CatalogDiff] = []
        missing: list[str] = []
        for t in mine:
            mt = live.get(t.name)
            if mt is None:
                missing.append(t.name)
                continue
            cpus = mt.get("guestCpus")
            if cpus is not None and int(cpus) != t.vcpus:
                diffs.append(CatalogDiff(type=t.name, field="vcpus", catalog=t.vcpus,
                                         live=int(cpus)))
            mb = mt.get("memoryMb")
            if mb is not None and abs(int(mb) / 1024 - t.memory_gib) > 0.01:
                diffs.append(CatalogDiff(type=t.name, field="memory_gib",
                                         catalog=t.memory_gib, live=round(int(mb) / 1024, 3)))
            arch = {"X86_64": "x86_64", "ARM64": "arm64"}.get(str(mt.get("architecture", "")))
            if arch is not None and arch != t.arch:
                diffs.append(CatalogDiff(type=t.name, field="arch", catalog=t.arch, live=arch))
        for t in catalog.of(self.name):
            if t.regions and region not in t.regions and t.name in live:
                diffs.append(CatalogDiff(type=t.name, field="regions", catalog=t.regions,
                                         live=f"also offered in {region}"))
        return VerifyResult(provider=self.name, region=region, checked=len(mine), diffs=diffs,
                            missing_live=missing)


# -- helpers ---------------------------------------------------------------------------------


@contextmanager
def _errors(doing: str) -> Iterator[None]:
    """Errors raised while iterating a pager (its later pages are calls too)."""
    try:
        yield
    except NestcloudError:
        raise
    except Exception as exc:
        from providers.gcp._api import translate

        raise translate(exc, doing) from exc


def _image(spec: LaunchSpec) -> str:
    if spec.image:
        if not re.fullmatch(r"(https://[^\s]+/)?projects/[a-z0-9.:-]+/global/images/"
                            r"(family/)?[a-z0-9-]+", spec.image):
            raise InputError(f"--image {spec.image!r}: on GCP give an image as "
                             "projects/PROJECT/global/images/NAME or .../images/family/FAMILY")
        return spec.image
    image = _plan.IMAGES.get(spec.os)
    if image is None:
        raise InputError(f"--os {spec.os}: Compute Engine has no public image nestcloud knows "
                         f"for it (GCP: {', '.join(_plan.IMAGES)})")
    return image


def _ssh_keys(key: str | None) -> str | None:
    """--key-name on GCP: an SSH public key file or the key text, for the user `nestcloud`
    (metadata ssh-keys)."""
    if not key:
        return None
    text = key.strip()
    if not re.match(r"^(ssh-(rsa|ed25519)|ecdsa-sha2-)", text):
        path = Path(text).expanduser()
        if not path.is_file():
            raise InputError(f"--key-name {key!r}: on GCP give an SSH public key file (e.g. "
                             "~/.ssh/id_ed25519.pub) or the key text itself")
        text = path.read_text(encoding="utf-8").strip()
    if "\n" in text or not re.match(r"^(ssh-(rsa|ed25519)|ecdsa-sha2-)", text):
        raise InputError(f"--key-name {key!r}: not one SSH public key")
    return f"nestcloud:{text}"


def _quotas(info: dict[str, Any]) -> dict[str, tuple[float, float]]:
    return {str(q["metric"]): (float(q.get("limit", 0)), float(q.get("usage", 0)))
            for q in info.get("quotas") or [] if q.get("metric")}


def _cpu_metric(quotas: dict[str, tuple[float, float]], type_name: str, spot: bool
                ) -> tuple[str | None, str]:
    """(the quota metric ``type_name``'s vCPUs count against in these quotas, a remark).

    FACTS names CPUS, N2_CPUS, C2_CPUS, C3_CPUS and PREEMPTIBLE_CPUS: a family's own
    FAMILY_CPUS when the region lists it, else the general CPUS (which N1 and E2 use)."""
    if spot and "PREEMPTIBLE_CPUS" in quotas:
        return "PREEMPTIBLE_CPUS", ""
    own = f"{_plan.family_of(type_name).upper()}_CPUS"
    if own in quotas:
        return own, ""
    if "CPUS" in quotas:
        return "CPUS", "" if own in ("N1_CPUS", "E2_CPUS") else f" (no {own} listed)"
    return None, ""


def _check_quota(quotas: dict[str, tuple[float, float]], type_name: str, vcpus: int,
                 count: int, spot: bool, region: str) -> None:
    """Refuse, before any write, a launch the region's quota cannot hold (regions.get)."""
    metric, how = _cpu_metric(quotas, type_name, spot)
    for m, need in ((metric, float(vcpus)), ("INSTANCES", float(count))):
        if m is None or m not in quotas:
            continue
        limit, usage = quotas[m]
        if usage + need > limit:
            raise QuotaError(f"{need:g} more {'vCPUs' if m != 'INSTANCES' else 'instances'} of "
                             f"{type_name} would exceed the {m}{how} quota in {region} "
                             f"({usage:g} of {limit:g} in use)",
                             hint=f"request more {m} quota in {region} (console: IAM & Admin > "
                                  "Quotas), lower --count, or pick another region or type",
                             code="QUOTA_EXCEEDED", provider=PROVIDER)


def _reconcile(spec: LaunchSpec, name: str, types: Sequence[str],
               existing: list[dict[str, Any]]
               ) -> tuple[list[dict[str, Any]], list[int], list[str]]:
    """(live seats to reuse, seats to create, notes) from the name's instances."""
    notes: list[str] = []
    live: dict[int, dict[str, Any]] = {}
    blocked: dict[int, dict[str, Any]] = {}
    for raw in existing:
        seat = _plan.seat_of(raw["name"], name)
        status = str(raw.get("status", ""))
        mt = _plan.last(raw.get("machineType", ""))
        if status in _plan.LIVE_STATUSES:
            if mt not in types:
                raise InputError(f"{name!r} already runs {mt} ({raw['name']}); this launch "
                                 f"asks for {spec.type}",
                                 hint=f"use another --name, or `nestcloud down {name}` first")
            if seat is not None:
                live[seat] = raw
        elif seat is not None:
            blocked[seat] = raw
    missing = [s for s in range(spec.count) if s not in live]
    stuck = [blocked[s] for s in missing if s in blocked]
    if stuck:
        raise InputError(", ".join(f"{r['name']} ({r.get('status', '?').lower()})"
                                   for r in stuck)
                         + f": seat(s) of {name!r} exist but do not run, and their names are "
                           "taken", hint=f"start them again, or `nestcloud down {name}` and "
                                         "launch again")
    extra = sorted(s for s in live if s >= spec.count)
    if extra:
        notes.append(f"seats {extra} of {name!r} run beyond --count {spec.count}; left as "
                     f"they are (`nestcloud down {name}` removes every seat)")
    reused = [live[s] for s in sorted(live)]
    return reused, missing, notes
