"""The Azure provider: nested-virtualization L1 hosts in one resource group per launch.

Layout of one launch named N in region R (``nestcloud-N-R`` unless ``resource_group`` is given):
an NSG (no inbound unless ``ssh_cidr``), the outbound path (``egress``: by default a NAT
gateway with its Standard public IP), a VNet whose private subnet carries the NSG and the NAT
gateway, then per seat an optional Standard public IP (``public_ip`` or ``egress=public-ip``),
a NIC and a VM (security type Standard, generation-matched image, an OS disk no smaller than
the image's, boot diagnostics on, OS disk/NIC/public IP deleted with the VM), the
CustomScriptExtension on Windows, and a DevTestLab auto-shutdown schedule when a TTL is set.
Everything is tagged; tags are the only state. Request bodies come from
``providers.azure.plan`` (pure).

Subnets of new VNets are private with the network API version the SDK sends (FACTS.md, Azure,
"Egress"): without the NAT gateway or a public IP a host cannot install its bootstrap's
packages and never becomes ready, so every launch chooses its way out explicitly.
A Windows L1 reports readiness in a file that ``console()`` reads with a read-only Run Command
script (the VM gets no identity and no permission to write its own tags).

Seats are separate VMs created on a bounded thread pool inside the one group rather than a
scale set: each seat keeps its own tags (seat number), NIC, bootstrap extension and exact
request body, a failed seat is identified and the run rolled back precisely, and re-running
converges on deterministic names (two concurrent launches PUT the same resources, never twice).

The Azure SDK is imported by ``providers.azure._sdk`` only, which the verbs import when they
reach Azure: the class, its capabilities and its class hooks (rules, prices, egress cost,
access policy) need no SDK.
"""

from __future__ import annotations

import builtins  # `list` is also a verb of the class below
import datetime as dt
import gzip
import json
import os
import re
import secrets
import string
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from nestcloud.catalog import Catalog, InstanceType
from nestcloud.errors import (CleanupError, CredentialsError, InputError, NestcloudError,
                              LaunchInterrupted, ProviderError, QuotaError)
from nestcloud.models import (CatalogDiff, DownResult, Instance, LaunchResult, PlannedRequest,
                              VerifyResult)
from nestcloud.oses import OSES
from nestcloud.provider import (AccessPolicy, Capabilities, EgressCost, LaunchOutcome,
                                LaunchRequest, PriceFetch, ProviderOption, UserDataEnvelope,
                                is_loopback_http, local_owner)
from nestcloud.spec import (TAG_EXPIRES, TAG_LAB, TAG_NAME, TAG_OWNER, TAG_SEAT, LaunchSpec,
                            TagLimits, check_name)
from providers.azure import plan, pricing
from providers.azure.auth import ENV_ENDPOINT, ENV_SUBSCRIPTION, resolve_subscription
from providers.azure.errors import TRANSIENT, code_message, code_of, translate
from providers.azure.errors import errors as _errors

if TYPE_CHECKING:  # annotations only: importing the provider must not load the SDK
    from azure.core.credentials import TokenCredential

    from nestcloud.checks import Finding

# ARM throttles with 429 + Retry-After; azure-core's RetryPolicy honours the header. Tuned for
# many concurrent creates so throttling never fails a lab: more attempts than the default
# (including retry_status, which otherwise caps error answers at 3), backoff capped at 60 s.
RETRY_DEFAULTS: dict[str, Any] = {"retry_total": 10, "retry_status": 10,
                                  "retry_backoff_factor": 1.0, "retry_backoff_max": 60}
# Run Command waits for the VM agent (busy while booting or running another command): a read
# that takes longer is given up for this poll and tried again on the next.
RUN_COMMAND_TIMEOUT_S = 90.0
# Dependency order for removing our resources from a group we do not own.
# A subnet holds its NAT gateway, and a NAT gateway its public IP: VNets go before NAT gateways,
# NAT gateways before public IPs (VM public IPs are free once their NICs are gone).
DELETE_ORDER = ("microsoft.devtestlab/schedules", "microsoft.compute/virtualmachines",
                "microsoft.network/networkinterfaces", "microsoft.compute/disks",
                "microsoft.network/virtualnetworks", "microsoft.network/natgateways",
                "microsoft.network/publicipaddresses", "microsoft.network/networksecuritygroups")
# How a Windows L1 writes its readiness tag on Azure (IMDS + managed identity, then a Merge
# PATCH of its own tags). nestcloud gives its VMs no identity, so on them the PATCH is refused
# and the L1 says so in its output; readiness is read through Run Command instead
# (windows_readiness="run-command"), which needs no identity on the VM.
SET_TAG_PS1 = files("providers.azure").joinpath("files", "set-tag.ps1").read_text(encoding="utf-8")


# -- the provider ------------------------------------------------------------------------------


@dataclass
class _Step:
    """One write of a launch: what it sends (for --dry-run) and how to send it."""

    service: str
    operation: str
    resource_id: str
    body: dict[str, Any]
    send: Callable[[], Any]
    # False for an update of something that existed before: a rollback must leave it.
    creates: bool = True

    def planned(self) -> PlannedRequest:
        return PlannedRequest(service=self.service, operation=self.operation,
                              params={"id": self.resource_id, "body": _redact(self.body)})


def _redact(body: dict[str, Any]) -> dict[str, Any]:
    text = json.dumps(body)
    out: dict[str, Any] = json.loads(text)
    os_profile = out.get("properties", {}).get("osProfile", {})
    if "adminPassword" in os_profile:
        os_profile["adminPassword"] = "<generated at launch, never shown>"
    return out


class AzureProvider:
    """Azure Resource Manager through the official SDK clients."""

    name: ClassVar[str] = "azure"
    capabilities: ClassVar[Capabilities] = Capabilities(
        # Spot VMs (priority Spot) and Windows L1s; no fleet call, no cross-machine launch
        # lock, no vcpu_quota verb (launch checks the family quota itself, before any write).
        spot=True,
        windows=True,
        # Custom data: at most 65535 bytes (CUSTOM_DATA_MAX); cloud-init gunzips it. Windows
        # does not run custom data: the CustomScriptExtension runs the script, and Windows
        # readiness is read through Run Command (console()).
        user_data=UserDataEnvelope(limit_bytes=plan.CUSTOM_DATA_MAX, gzip=True,
                                   windows="provider", readiness="console",
                                   windows_readiness="run-command",
                                   windows_tag_script=SET_TAG_PS1),
        # ARM tags: 50 per resource, names <= 512 and values <= 256 characters
        # (azure-mgmt-resource TagsOperations docstrings; Microsoft Learn "Use tags to organize
        # your Azure resources"); names without < > % & \ ? / (Microsoft's ARM API reference
        # for resource tags). Ours count towards the 50.
        tags=TagLimits(cloud="Azure", max_tags=50, key_max=512, value_max=256,
                       added=(TAG_NAME, TAG_OWNER, TAG_EXPIRES, TAG_SEAT, TAG_LAB),
                       key_forbidden="<>%&\\?/"),
        # The optional LaunchOptions fields it reads: security type (only Standard nests: its
        # rule refuses the others), the Hyper-V generation of the image, the outbound path.
        # Not instance_profile: Azure hosts get no identity from nestcloud.
        launch_options=frozenset({"security_type", "image_generation", "egress"}),
        egress=plan.EGRESS_MODES,
        rules=True,
        prices=pricing.SOURCE_TEXT,
        access_policy=True,
    )
    options: ClassVar[tuple[ProviderOption, ...]] = (
        ProviderOption("subscription_id", "--subscription", "Azure subscription id.",
                       envvar=ENV_SUBSCRIPTION),
        ProviderOption("arm_endpoint", "--arm-endpoint",
                       "Azure Resource Manager endpoint (sovereign clouds, Azure Stack Hub).",
                       envvar=ENV_ENDPOINT),
        ProviderOption("resource_group", "--resource-group",
                       "An existing resource group to launch into (default: one per group, "
                       "created and deleted by nestcloud)."),
    )

    # -- class hooks (no SDK, no object; see nestcloud.provider.Provider) ----------------------

    @classmethod
    def rules(cls, spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None
              ) -> list[Finding]:
        """Azure's own pre-launch checks (``providers.azure.rules``)."""
        from providers.azure.rules import rules

        return rules(spec, catalog, entry)

    @classmethod
    def egress_cost(cls, mode: str | None, instances: int) -> EgressCost | None:
        """What ``instances`` hosts' outbound path costs per hour (None: the default)."""
        return pricing.egress_cost(mode or cls.capabilities.egress[0], instances)

    @classmethod
    def fetch_prices(cls, regions: Sequence[str], catalog: Catalog | None = None
                     ) -> PriceFetch:
        """On-demand and spot prices from the Azure Retail Prices API (network; sizes are
        priced by name, so the catalog is not needed)."""
        return pricing.fetch_prices(regions)

    @classmethod
    def access_policy(cls, instance_role: str | None = None, l1: bool = False
                      ) -> AccessPolicy:
        """The custom role nestcloud needs (``providers.azure.iam``)."""
        from providers.azure.iam import access_policy

        return access_policy(instance_role, l1)

    @classmethod
    def configured(cls, subscription_id: str | None = None, **_: Any) -> bool:
        """Usable without --provider when a subscription is given or set in the environment."""
        return bool(subscription_id or os.environ.get(ENV_SUBSCRIPTION))

    def __init__(self, region: str | None = None, subscription_id: str | None = None,
                 arm_endpoint: str | None = None, resource_group: str | None = None,
                 credential: TokenCredential | None = None, *,
                 client_options: dict[str, Any] | None = None, max_workers: int = 8,
                 seat_attempts: int = 2) -> None:
        self.region = region
        self.subscription_id = resolve_subscription(subscription_id)
        endpoint = arm_endpoint or os.environ.get(ENV_ENDPOINT) or None
        self.arm_endpoint = endpoint.rstrip("/") if endpoint else None
        self.resource_group = resource_group
        self._credential = credential
        self._client_options = dict(client_options or {})
        self.max_workers = max(1, max_workers)
        self.seat_attempts = max(1, seat_attempts)
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        # VM id (lower case) -> Windows?, learned from list(): console() picks its way by it.
        self._windows_vms: dict[str, bool] = {}

    # -- clients -------------------------------------------------------------------------------

    def _client_kwargs(self) -> tuple[TokenCredential, dict[str, Any]]:
        from providers.azure import _sdk

        kw: dict[str, Any] = dict(RETRY_DEFAULTS)
        credential = self._credential
        if self.arm_endpoint:
            scope = f"{self.arm_endpoint}/.default"
            kw["base_url"] = self.arm_endpoint
            kw["credential_scopes"] = [scope]
            if is_loopback_http(self.arm_endpoint):
                credential = credential or _sdk.LoopbackCredential()
                kw["authentication_policy"] = _sdk.LoopbackAuthPolicy(credential, scope)
                kw["polling_interval"] = 0
        if credential is None:
            # Built lazily, only when a verb reaches Azure.
            credential = _sdk.default_credential()
            self._credential = credential
        kw.update(self._client_options)
        return credential, kw

    def _client(self, kind: str) -> Any:
        with self._lock:
            if kind not in self._clients:
                from providers.azure._sdk import CLIENTS

                credential, kw = self._client_kwargs()
                cls = CLIENTS[kind]
                self._clients[kind] = cls(credential, self.subscription_id, **kw)
            return self._clients[kind]

    @property
    def resources(self) -> Any:
        return self._client("resource")

    @property
    def network(self) -> Any:
        return self._client("network")

    @property
    def compute(self) -> Any:
        return self._client("compute")

    # -- reads ---------------------------------------------------------------------------------

    def _skus(self, region: str) -> dict[str, plan.SkuFacts]:
        with _errors(f"reading Resource SKUs for {region}"):
            raw = [s.as_dict() if hasattr(s, "as_dict") else dict(s)
                   for s in self.compute.resource_skus.list(filter=f"location eq '{region}'")]
        return plan.vm_skus_in([_camel_sku(s) for s in raw], region)

    def _group_exists(self, group: str) -> bool:
        with _errors(f"checking resource group {group}"):
            return bool(self.resources.resource_groups.check_existence(group))

    def _vms_in(self, group: str, name: str | None) -> list[Any]:
        from providers.azure._sdk import ResourceNotFoundError

        try:
            # The instance view comes with the list: one call per group, not one per VM.
            vms = list(self.compute.virtual_machines.list(group, expand="instanceView"))
        except ResourceNotFoundError:
            return []
        return [v for v in vms if (v.tags or {}).get(TAG_NAME) is not None
                and (name is None or (v.tags or {}).get(TAG_NAME) == name)]

    # -- launch --------------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> LaunchOutcome:
        """Create the missing seats (see the Provider protocol). A failure rolls back what
        this run created and says, in its outcome, whether it had created anything."""
        created: list[str] = []
        try:
            result = self._launch(request.spec, request.catalog, request.dry_run, created)
        except ProviderError as exc:
            raise exc.with_outcome(LaunchOutcome(created_any=bool(created)))
        except KeyboardInterrupt as exc:
            raise LaunchInterrupted(LaunchOutcome(created_any=bool(created)),
                                    *exc.args) from exc
        return LaunchOutcome(result=result, created_any=bool(result.created))

    def _launch(self, spec: LaunchSpec, catalog: Catalog, dry_run: bool, created: list[str]
                ) -> LaunchResult:
        region = spec.region or self.region
        if not region:
            raise InputError("Azure needs a region: pass --region (e.g. eastus)")
        if spec.instance_profile:
            raise InputError(f"instance profile {spec.instance_profile!r}: that is an AWS IAM "
                             "setting; Azure VMs get no identity from nestcloud (Windows "
                             "readiness is read through Run Command)")
        name = spec.name or _default_name(spec.type)
        info = OSES.get(spec.os)
        if info is None:
            raise InputError(f"unknown OS {spec.os!r}", hint="one of " + ", ".join(OSES))
        windows = info.family == "windows"
        rules = plan.ssh_rules(spec.ssh_cidr, spec.allow_world_ssh)
        egress = plan.egress_mode(spec.egress, spec.public_ip, self.capabilities.egress[0])
        notes: list[str] = []
        guest = self._guest(spec, windows, notes)
        ssh_key = None if windows else self._ssh_key(spec.key_name, notes, dry_run)

        skus = self._skus(region)
        facts = skus.get(spec.type.lower())
        plan.preflight(spec.type, region, facts, spot=spec.spot,
                       offered=sorted(f.name for f in skus.values()
                                      if not f.restricted and f.arch in (None, "x86_64")))
        assert facts is not None
        size = facts.name
        cat_type = catalog.get(self.name, spec.type) or next(iter(catalog.find(spec.type,
                                                                                self.name)), None)
        gens = facts.generations or (cat_type.hyperv_generations if cat_type else None)
        generation = plan.choose_generation(size, gens, spec.image_generation)
        image = plan.image_reference(spec.os, spec.image, generation)

        group = self.resource_group or plan.group_name(name, region)
        names = plan.Names(name=name, region=region, group=group)
        ids = plan.Ids(self.subscription_id, group)
        now = dt.datetime.now(dt.timezone.utc)
        expires = plan.expiry(now, spec.ttl_seconds)
        tags = plan.base_tags(name, local_owner(), expires, spec.tags)

        group_exists = self._group_exists(group)
        if self.resource_group and not group_exists:
            raise InputError(f"resource group {group!r} does not exist in subscription "
                             f"{self.subscription_id}",
                             hint="create it first, or leave out --resource-group and nestcloud "
                                  "creates (and later deletes) its own group")
        existing: dict[int, Any] = {}
        failed_seats: set[int] = set()
        if group_exists:
            with _errors(f"listing virtual machines in {group}"):
                all_vms = list(self.compute.virtual_machines.list(group))
            wanted = {names.vm(s).lower(): s for s in range(spec.count)}
            for vm in all_vms:
                vtags = vm.tags or {}
                seat = wanted.get(str(vm.name).lower())
                if seat is None:
                    continue
                if vtags.get(TAG_NAME) != name:
                    raise InputError(f"resource group {group!r} already has a VM named "
                                     f"{vm.name!r} that nestcloud did not create for {name!r}",
                                     hint="pick another --name")
                if str(vm.provisioning_state or "").lower() == "failed":
                    failed_seats.add(seat)
                else:
                    existing[seat] = vm
        missing = [s for s in range(spec.count) if s not in existing]
        if missing and facts.vcpus:
            self._check_quota(region, facts, facts.vcpus * len(missing), spec.spot, notes)
        if failed_seats:
            notes.append("re-creating seat(s) whose provisioning failed earlier: "
                         + ", ".join(str(s) for s in sorted(failed_seats)))
        disk_gib = self._os_disk_gib(region, image, spec.disk_gib, windows, notes) \
            if missing else spec.disk_gib

        shared: list[_Step] = []
        if not group_exists:
            shared.append(_Step("resource", "resource_groups.create_or_update", ids.group_id,
                                plan.group_body(region, tags),
                                lambda: self.resources.resource_groups.create_or_update(
                                    group, plan.group_body(region, tags))))
        nsg_id = ids.of("Microsoft.Network/networkSecurityGroups", names.nsg)
        vnet_id = ids.of("Microsoft.Network/virtualNetworks", names.vnet)
        old_vnet = self._get_json(lambda: self.network.virtual_networks.get(
            group, names.vnet)) if missing and group_exists else None
        need_net = bool(missing) and old_vnet is None
        # A network made without a NAT gateway (by `--egress public-ip|none`, or by a nestcloud
        # before the outbound path was explicit) gets one before new seats join it.
        need_nat = bool(missing) and egress == "nat" and (
            need_net or plan.subnet_nat_id(old_vnet or {}) is None)
        nat_id = ids.of("Microsoft.Network/natGateways", names.nat) if need_nat else None
        if need_net:
            nsg = plan.nsg_body(region, tags, rules)
            shared.append(_Step("network", "network_security_groups.begin_create_or_update",
                                nsg_id, nsg,
                                lambda: self.network.network_security_groups
                                .begin_create_or_update(group, names.nsg, nsg).result()))
        if need_nat:
            # Added to a network that stays: it stays too if this run fails (it serves the
            # seats already there), and the group's removal takes it.
            shared += self._nat_steps(region, group, names, ids, tags, creates=need_net)
            if existing:
                notes.append(f"added NAT gateway {names.nat} to the network of {name}, which "
                             "had none: seat(s) " + ", ".join(str(s) for s in sorted(existing))
                             + " booted before it, and any without a public IP had no outbound "
                             "path then (its bootstrap could not install packages); if one does "
                             f"not report ready, `nestcloud down {name}` and launch again")
        if need_net or need_nat:
            vnet = plan.vnet_body(region, tags, nsg_id, nat_id)
            shared.append(_Step("network", "virtual_networks.begin_create_or_update",
                                vnet_id, vnet,
                                lambda: self.network.virtual_networks
                                .begin_create_or_update(group, names.vnet, vnet).result(),
                                creates=need_net))
        if missing:
            notes.append(pricing.launch_note(egress, names.nat, names.nat_ip, spec.public_ip))

        seat_steps = {s: self._seat_steps(s, spec, region, size, image, names, ids, tags,
                                          guest, windows, ssh_key, expires, dry_run,
                                          egress=egress, disk_gib=disk_gib)
                      for s in missing}
        if expires is not None and spec.ttl_seconds and spec.ttl_seconds > 86400 and missing:
            notes.append(f"the auto-shutdown schedule runs daily at {expires:%H:%M} UTC: with a "
                         "TTL over 24 h it first deallocates before the expiry tag's time")
        if windows and guest.custom_data:
            notes.append("Windows bootstrap runs through the CustomScriptExtension; launch "
                         "waits for it to finish")

        if dry_run:
            steps = shared + [st for s in missing for st in seat_steps[s]]
            return LaunchResult(provider=self.name, name=name, region=region, type=size,
                                dry_run=True, requests=[st.planned() for st in steps],
                                reused=[v.id for v in existing.values()], notes=notes)

        created_lock = threading.Lock()
        made_group = not group_exists

        def run(step: _Step) -> None:
            if step.creates:
                with created_lock:
                    created.append(step.resource_id)
            step.send()

        try:
            for st in shared:
                with _errors(f"creating {st.resource_id.rsplit('/', 1)[-1]}"):
                    run(st)
            self._create_seats(missing, seat_steps, run, spec.count)
        except BaseException as exc:
            self._rollback(group if made_group else None, created, exc, name)
            raise

        instances = self._instances(group, name)
        new_ids = {ids.of("Microsoft.Compute/virtualMachines", names.vm(s)).lower()
                   for s in missing}
        return LaunchResult(
            provider=self.name, name=name, region=region, type=size, instances=instances,
            created=[i.id for i in instances if i.id.lower() in new_ids],
            reused=[i.id for i in instances if i.id.lower() not in new_ids], notes=notes)

    def _check_quota(self, region: str, facts: plan.SkuFacts, need: int, spot: bool,
                     notes: list[str]) -> None:
        """Refuse, before any write, a launch the region's vCPU quota cannot hold."""
        from providers.azure._sdk import HttpResponseError

        try:
            usages = [u.as_dict() if hasattr(u, "as_dict") else dict(u)
                      for u in self.compute.usage.list(region)]
        except HttpResponseError as exc:
            # Reading usage is a courtesy check: without it ARM still refuses at create time.
            notes.append(f"vCPU quota not checked in {region}: {code_message(exc)[1]}")
            return
        short = plan.quota_shortfall([_camel_usage(u) for u in usages], facts.family, need,
                                     spot)
        if short is not None:
            qname, current, limit = short
            raise QuotaError(
                f"{need} more vCPUs of {facts.name} would exceed the {qname} quota in {region} "
                f"({current} of {limit} in use)",
                hint=f"request more {qname} quota in {region} (portal: Quotas > Compute), "
                     "lower --count, or pick another region/size", code="QuotaExceeded",
                provider=self.name)

    def _get_json(self, get: Callable[[], Any]) -> dict[str, Any] | None:
        """The resource ``get`` reads, as ARM JSON, or None when it does not exist."""
        from providers.azure._sdk import ResourceNotFoundError

        try:
            with _errors("reading"):
                found = get()
        except NestcloudError as err:
            if isinstance(err.__cause__, ResourceNotFoundError):
                return None
            raise
        return dict(found.as_dict()) if hasattr(found, "as_dict") else dict(found)

    def _nat_steps(self, region: str, group: str, names: plan.Names, ids: plan.Ids,
                   tags: dict[str, str], *, creates: bool) -> list[_Step]:
        """The group's NAT gateway and its Standard public IP (before the VNet uses them)."""
        pip_id = ids.of("Microsoft.Network/publicIPAddresses", names.nat_ip)
        nat_id = ids.of("Microsoft.Network/natGateways", names.nat)
        pip = plan.pip_body(region, tags)
        nat = plan.nat_body(region, tags, pip_id)
        return [
            _Step("network", "public_ip_addresses.begin_create_or_update", pip_id, pip,
                  lambda: self.network.public_ip_addresses
                  .begin_create_or_update(group, names.nat_ip, pip).result(), creates),
            _Step("network", "nat_gateways.begin_create_or_update", nat_id, nat,
                  lambda: self.network.nat_gateways
                  .begin_create_or_update(group, names.nat, nat).result(), creates),
        ]

    def _os_disk_gib(self, region: str, image: dict[str, str], asked: int, windows: bool,
                     notes: list[str]) -> int:
        """--disk-gib, raised to the image's own OS disk: Azure refuses a smaller one
        (OperationNotAllowed, target osDisk.diskSizeGB). ``latest`` is listed first."""
        from providers.azure._sdk import ResourceNotFoundError

        urn = ":".join(image[k] for k in ("publisher", "offer", "sku"))
        want = max(asked, plan.WINDOWS_MIN_DISK_GIB) if windows else asked
        version = image["version"]
        where = dict(location=region, publisher_name=image["publisher"], offer=image["offer"],
                     skus=image["sku"])
        try:
            with _errors(f"reading image {urn}:{version} in {region}"):
                if version.lower() == "latest":
                    names = [str(v.name) for v in
                             self.compute.virtual_machine_images.list(**where) or []]
                    if not names:
                        raise ResourceNotFoundError(f"no versions of {urn}")
                    version = plan.newest_version(names)
                found = self.compute.virtual_machine_images.get(version=version, **where)
        except NestcloudError as err:
            if isinstance(err.__cause__, ResourceNotFoundError):
                # The VM create would fail on it too: refuse before anything is written.
                raise InputError(f"image {urn}:{image['version']}: not found in {region}",
                                 hint=f"check --image / --os (`az vm image list -l {region} "
                                      f"-p {image['publisher']} -f {image['offer']} -s "
                                      f"{image['sku']} --all`)") from None
            # Any other failure (a role without the image read, a hiccup) only costs the
            # check: the create still works when the size is big enough.
            notes.append(f"OS disk: could not read the image {urn}:{version} ({err.message}); "
                         f"asking for {want} GiB")
            return want
        raw = found.as_dict() if hasattr(found, "as_dict") else dict(found)
        size = plan.image_os_disk_gib(raw)
        if size is None:
            notes.append(f"OS disk: the image {urn}:{version} does not report its disk size; "
                         f"asking for {want} GiB (if Azure refuses it as smaller than the "
                         "image's disk, pass a larger --disk-gib)")
            return want
        if size > want:
            notes.append(f"OS disk: {size} GiB instead of the {want} GiB asked for: the image "
                         f"{urn}:{version} has a {size} GiB disk, and Azure refuses a smaller "
                         "one")
            return size
        return want

    def _seat_steps(self, seat: int, spec: LaunchSpec, region: str, size: str,
                    image: dict[str, str], names: plan.Names, ids: plan.Ids,
                    tags: dict[str, str], guest: plan.GuestData, windows: bool,
                    ssh_key: str | None, expires: dt.datetime | None, dry_run: bool, *,
                    egress: str, disk_gib: int) -> list[_Step]:
        group = names.group
        stags = plan.seat_tags(tags, seat)
        steps: list[_Step] = []
        pip_id = None
        if spec.public_ip or egress == "public-ip":
            pip_id = ids.of("Microsoft.Network/publicIPAddresses", names.pip(seat))
            pip = plan.pip_body(region, stags)
            steps.append(_Step("network", "public_ip_addresses.begin_create_or_update", pip_id,
                               pip, lambda: self.network.public_ip_addresses
                               .begin_create_or_update(group, names.pip(seat), pip).result()))
        nic_id = ids.of("Microsoft.Network/networkInterfaces", names.nic(seat))
        nic = plan.nic_body(region, stags, ids.subnet(names.vnet), pip_id)
        steps.append(_Step("network", "network_interfaces.begin_create_or_update", nic_id, nic,
                           lambda: self.network.network_interfaces
                           .begin_create_or_update(group, names.nic(seat), nic).result()))
        vm_id = ids.of("Microsoft.Compute/virtualMachines", names.vm(seat))
        password = None if (not windows or dry_run) else _windows_password()
        vm = plan.vm_body(region=region, tags=stags, size=size, image=image, nic_id=nic_id,
                          disk_name=names.disk(seat), disk_gib=disk_gib,
                          computer_name=names.computer_name(seat, windows), guest=guest,
                          ssh_public_key=ssh_key, admin_password=password, spot=spec.spot)
        steps.append(_Step("compute", "virtual_machines.begin_create_or_update", vm_id, vm,
                           lambda: self._create_vm(group, names.vm(seat), vm)))
        if windows and guest.custom_data:
            ext_id = f"{vm_id}/extensions/{plan.EXTENSION_NAME}"
            ext = plan.extension_body(region, stags)
            steps.append(_Step("compute", "virtual_machine_extensions.begin_create_or_update",
                               ext_id, ext, lambda: self.compute.virtual_machine_extensions
                               .begin_create_or_update(group, names.vm(seat),
                                                       plan.EXTENSION_NAME, ext).result()))
        if expires is not None:
            sched_id = ids.of("Microsoft.DevTestLab/schedules", names.schedule(seat))
            sched = plan.schedule_body(region, stags, vm_id, expires)
            steps.append(_Step("resource", "resources.begin_create_or_update_by_id", sched_id,
                               sched, lambda: self.resources.resources
                               .begin_create_or_update_by_id(
                                   sched_id, api_version=plan.SCHEDULE_API_VERSION,
                                   parameters=sched).result()))
        return steps

    def _create_vm(self, group: str, vm_name: str, body: dict[str, Any]) -> None:
        """PUT the VM; a provisioning failure with a transient code gets another PUT (the
        same idempotent request), capacity/quota/auth failures do not."""
        from providers.azure._sdk import HttpResponseError

        for attempt in range(1, self.seat_attempts + 1):
            try:
                self.compute.virtual_machines.begin_create_or_update(group, vm_name, body).result()
                return
            except HttpResponseError as exc:
                if code_of(exc) in TRANSIENT and attempt < self.seat_attempts:
                    continue
                raise

    def _create_seats(self, seats: list[int], steps: dict[int, list[_Step]],
                      run: Callable[[_Step], None], count: int) -> None:
        """Create the seats on a bounded pool; stop starting new steps once one seat failed
        or the caller was interrupted (Ctrl-C), then report the first failure."""
        if not seats:
            return
        failures: list[tuple[int, NestcloudError]] = []
        stop = threading.Event()

        def one(seat: int) -> None:
            for st in steps[seat]:
                if stop.is_set():
                    return
                try:
                    run(st)
                except Exception as exc:
                    what = st.resource_id.rsplit("/", 1)[-1]
                    err = translate(exc, f"seat {seat}: creating {what}")
                    err.__cause__ = exc
                    failures.append((seat, err))
                    stop.set()
                    return

        pool = ThreadPoolExecutor(max_workers=min(self.max_workers, len(seats)),
                                  thread_name_prefix="nestcloud-az")
        try:
            for fut in [pool.submit(one, s) for s in seats]:
                fut.result()
        except BaseException:
            stop.set()
            raise
        finally:
            # Wait for in-flight creates so the rollback sees everything this run made.
            pool.shutdown(wait=True, cancel_futures=True)
        if failures:
            failures.sort(key=lambda f: f[0])
            seat, err = failures[0]
            others = len(failures) - 1
            if others:
                err.message += f" (and {others} more seat(s) of {count} failed)"
            raise err from err.__cause__

    def _rollback(self, group: str | None, created: list[str], exc: BaseException,
                  name: str) -> None:
        """Remove what this run created; on failure of that, say exactly what is left."""
        if not created:
            return
        left: list[str] = []
        removed = 0
        if group is not None:
            try:
                removed = len(created) if self._delete_group(group) else 0
            except Exception:
                left = [plan.Ids(self.subscription_id, group).group_id]
        else:
            for rid in reversed(created):
                try:
                    removed += self._delete_id(rid)
                except Exception:
                    left.append(rid)
        if isinstance(exc, NestcloudError) and removed and not left:
            exc.message += f"; rolled back what this run created ({removed} resource(s))"
        if left:
            raise CleanupError(
                "the launch failed and removing what it created failed too; left: "
                + ", ".join(left), leftovers=left, provider=self.name,
                hint=f"run `nestcloud down {name} --provider azure`"
                     + (f" or `az group delete -n {group}`" if group else "")) from exc

    # -- deletes -------------------------------------------------------------------------------

    def _delete_group(self, group: str) -> bool:
        from providers.azure._sdk import ResourceNotFoundError

        try:
            self.resources.resource_groups.begin_delete(group).result()
            return True
        except ResourceNotFoundError:
            return False

    def _delete_id(self, rid: str) -> bool:
        """Delete one resource by id and wait; False when it was already gone."""
        from providers.azure._sdk import ResourceNotFoundError

        p = plan.parse_id(rid)
        group, rtype, rname = p["group"], p["type"].lower(), p["name"]
        c, n = self.compute, self.network
        tail = rid.rstrip("/").split("/")
        try:
            if rtype == "microsoft.compute/virtualmachines" and "extensions" in [
                    t.lower() for t in tail[-2:]]:
                return False  # an extension goes with its VM
            if rtype == "microsoft.compute/virtualmachines":
                c.virtual_machines.begin_delete(group, rname).result()
            elif rtype == "microsoft.compute/disks":
                c.disks.begin_delete(group, rname).result()
            elif rtype == "microsoft.network/networkinterfaces":
                n.network_interfaces.begin_delete(group, rname).result()
            elif rtype == "microsoft.network/publicipaddresses":
                n.public_ip_addresses.begin_delete(group, rname).result()
            elif rtype == "microsoft.network/virtualnetworks":
                n.virtual_networks.begin_delete(group, rname).result()
            elif rtype == "microsoft.network/natgateways":
                n.nat_gateways.begin_delete(group, rname).result()
            elif rtype == "microsoft.network/networksecuritygroups":
                n.network_security_groups.begin_delete(group, rname).result()
            elif rtype == "microsoft.devtestlab/schedules":
                self.resources.resources.begin_delete_by_id(
                    rid, api_version=plan.SCHEDULE_API_VERSION).result()
            elif rtype == "resourcegroups":
                return self._delete_group(group)
            else:
                raise ProviderError(f"nestcloud does not delete {p['type']} resources ({rid})",
                                    provider=self.name)
            return True
        except ResourceNotFoundError:
            return False

    def down(self, name: str) -> DownResult:
        check_name(name, "group name")  # it goes into OData filters: never a fragment of one
        result = DownResult(provider=self.name, name=name)
        if self.resource_group:
            return self._down_in_group(self.resource_group, name, result)
        with _errors(f"finding the resource groups of {name!r}"):
            groups = [g for g in self.resources.resource_groups.list(
                filter=f"tagName eq '{TAG_NAME}' and tagValue eq '{name}'")
                if (g.tags or {}).get(TAG_NAME) == name and self._in_region(g.location)]
        if not groups:
            where = f" in {self.region}" if self.region else ""
            result.notes.append(f"nothing named {name!r} is left{where} in subscription "
                                f"{self.subscription_id}")
            return result
        left: list[str] = []
        errors: list[str] = []
        for g in groups:
            with _errors(f"listing virtual machines in {g.name}"):
                vms = self._vms_in(g.name, name)
            try:
                gone = self._delete_group(g.name)
            except Exception as exc:
                left.append(g.id)
                errors.append(str(translate(exc, f"deleting resource group {g.name}")))
                continue
            result.terminated.extend(v.id for v in vms)
            if gone:
                result.deleted.append(g.id)
        if left:
            raise CleanupError("could not delete: " + ", ".join(left) + "\n" + "\n".join(errors),
                               leftovers=left, provider=self.name,
                               hint=f"run `nestcloud down {name} --provider azure` again, or "
                                    "`az group delete -n <group>`")
        return result

    def _down_in_group(self, group: str, name: str, result: DownResult) -> DownResult:
        if not self._group_exists(group):
            raise InputError(f"resource group {group!r} does not exist in subscription "
                             f"{self.subscription_id}")
        with _errors(f"listing nestcloud resources in {group}"):
            found = [r for r in self.resources.resources.list_by_resource_group(
                group, filter=f"tagName eq '{TAG_NAME}' and tagValue eq '{name}'")
                if (r.tags or {}).get(TAG_NAME) == name]
        if not found:
            result.notes.append(f"nothing named {name!r} is left in resource group {group}")
            return result
        rank = {t: i for i, t in enumerate(DELETE_ORDER)}
        found.sort(key=lambda r: rank.get(str(r.type).lower(), len(DELETE_ORDER)))
        left: list[str] = []
        vm_disks: list[str] = []
        for r in found:
            rtype = str(r.type).lower()
            try:
                self._delete_id(r.id)
            except Exception as exc:
                left.append(f"{r.id} ({translate(exc, 'deleting').message})")
                continue
            if rtype == "microsoft.compute/virtualmachines":
                result.terminated.append(r.id)
                # OS disks carry no tags of their own; ours are named after the VM.
                vm_disks.append(plan.Ids(self.subscription_id, group).of(
                    "Microsoft.Compute/disks", f"{r.name}-osdisk"))
            else:
                result.deleted.append(r.id)
        for disk in vm_disks:
            try:
                if self._delete_id(disk):
                    result.deleted.append(disk)
            except Exception:
                left.append(disk)
        if left:
            raise CleanupError("could not delete: " + "; ".join(left), leftovers=left,
                               provider=self.name,
                               hint=f"run `nestcloud down {name} --provider azure "
                                    f"--resource-group {group}` again")
        return result

    # -- list / console ------------------------------------------------------------------------

    def list(self, name: str | None = None) -> list[Instance]:
        if name is not None:
            check_name(name, "group name")
        with _errors("listing virtual machines"):
            if self.resource_group:
                vms = self._vms_in(self.resource_group, name)
            else:
                vms = [v for v in self.compute.virtual_machines.list_all(expand="instanceView")
                       if (v.tags or {}).get(TAG_NAME) is not None
                       and (name is None or (v.tags or {}).get(TAG_NAME) == name)]
            by_group: dict[str, list[Any]] = {}
            for v in (v for v in vms if self._in_region(v.location)):
                by_group.setdefault(plan.parse_id(v.id)["group"], []).append(v)
            out: list[Instance] = []
            for group, gvms in by_group.items():
                out.extend(self._describe(group, gvms))
        return sorted(out, key=lambda i: (i.name, i.seat if i.seat is not None else -1, i.id))

    def _in_region(self, location: str | None) -> bool:
        """A provider built with a region sees only that region; without one, all of them."""
        return self.region is None or str(location or "").lower() == self.region.lower()

    def _instances(self, group: str, name: str) -> builtins.list[Instance]:
        with _errors(f"reading virtual machines in {group}"):
            return sorted(self._describe(group, self._vms_in(group, name)),
                          key=lambda i: (i.seat if i.seat is not None else -1, i.id))

    def _describe(self, group: str, vms: builtins.list[Any]) -> builtins.list[Instance]:
        nics = {str(n.id).lower(): n for n in self.network.network_interfaces.list(group)}
        pips = {str(p.id).lower(): p for p in self.network.public_ip_addresses.list(group)}
        out = []
        for v in vms:
            tags = dict(v.tags or {})
            private_ip = public_ip = None
            for ref in (v.network_profile.network_interfaces if v.network_profile else []) or []:
                nic = nics.get(str(ref.id).lower())
                for conf in (nic.ip_configurations if nic else []) or []:
                    private_ip = private_ip or conf.private_ip_address
                    if conf.public_ip_address is not None:
                        pip = pips.get(str(conf.public_ip_address.id).lower())
                        public_ip = public_ip or (pip.ip_address if pip else None)
            seat = tags.get(TAG_SEAT)
            self._windows_vms[str(v.id).lower()] = _vm_is_windows(v)
            created = getattr(v, "time_created", None)
            out.append(Instance(
                provider=self.name, id=v.id, name=tags.get(TAG_NAME, ""), region=v.location,
                type=v.hardware_profile.vm_size if v.hardware_profile else "",
                state=self._state(group, v), zone=(v.zones or [None])[0],
                seat=int(seat) if seat and seat.isdigit() else None, private_ip=private_ip,
                public_ip=public_ip,
                launched_at=created.isoformat() if isinstance(created, dt.datetime) else None,
                expires=tags.get(TAG_EXPIRES), tags=tags))
        return out

    def _state(self, group: str, vm: Any) -> str:
        prov = str(vm.provisioning_state or "").lower()
        if prov == "failed":
            return "failed"
        if prov == "deleting":
            return "deleting"
        view = vm.instance_view
        for status in (view.statuses if view is not None else None) or []:
            code = str(status.code or "")
            if code.startswith("PowerState/"):
                return code.split("/", 1)[1]
        return "pending" if prov in ("creating", "updating", "") else prov

    def console(self, instance: Instance) -> str:
        """The serial log; for a running Windows VM first the readiness file through Run Command.

        A Windows L1 writes its marker JSON to %ProgramData%\\nestcloud\\l1.json; a tiny
        read-only Run Command script prints it after the marker word, so the waiter parses it
        like a Linux serial console, and the VM needs no identity to report. The serial log
        of Windows holds no marker (custom data is not run by cloud-init there).
        """
        from nestcloud.bootstrap.l1check import MARKER

        problem: NestcloudError | None = None
        if instance.state == "running" and self._is_windows(instance):
            try:
                out = self._read_marker_file(instance)
                if MARKER in out:
                    return out
            except CredentialsError:
                raise
            except NestcloudError as exc:
                problem = exc
        text = self._serial_log(instance)
        if problem is not None and MARKER not in text:
            raise problem  # the waiter notes it as the last problem and polls again
        return text

    def _is_windows(self, instance: Instance) -> bool:
        from providers.azure._sdk import ResourceNotFoundError

        known = self._windows_vms.get(instance.id.lower())
        if known is not None:
            return known
        p = plan.parse_id(instance.id)
        with _errors(f"reading virtual machine {p['name']}"):
            try:
                vm = self.compute.virtual_machines.get(p["group"], p["name"])
            except ResourceNotFoundError:
                return False
        self._windows_vms[instance.id.lower()] = found = _vm_is_windows(vm)
        return found

    def _read_marker_file(self, instance: Instance) -> str:
        """Run Command's stdout: ``NESTCLOUD-L1 {json}`` once the L1 reported, else ""."""
        from providers.azure._sdk import RunCommandInput
        from nestcloud.bootstrap.l1check import MARKER
        from nestcloud.bootstrap.profiles import WINDOWS_MARKER_FILE

        p = plan.parse_id(instance.id)
        body = plan.run_command_body(plan.read_marker_script(MARKER, WINDOWS_MARKER_FILE))
        doing = f"reading the readiness file of {p['name']} through Run Command"
        with _errors(doing):
            poller = self.compute.virtual_machines.begin_run_command(
                p["group"], p["name"],
                RunCommandInput(command_id=body["commandId"], script=body["script"]))
            result = poller.result(timeout=RUN_COMMAND_TIMEOUT_S)
            if not poller.done():
                raise ProviderError(f"{doing}: no answer within {RUN_COMMAND_TIMEOUT_S:g}s "
                                    "(the VM agent may still be starting)", provider=self.name)
        statuses = [{"code": s.code, "message": s.message}
                    for s in (getattr(result, "value", None) or [])]
        return plan.run_command_stdout({"value": statuses})

    def _serial_log(self, instance: Instance) -> str:
        import urllib.error
        import urllib.request

        from providers.azure._sdk import ResourceNotFoundError

        p = plan.parse_id(instance.id)
        with _errors(f"reading the boot diagnostics of {p['name']}"):
            try:
                data = self.compute.virtual_machines.retrieve_boot_diagnostics_data(
                    p["group"], p["name"])
            except ResourceNotFoundError:
                return ""
        uri = getattr(data, "serial_console_log_blob_uri", None)
        if not uri:
            return ""
        try:
            # The blob URI carries its own SAS token: no ARM credential goes with it.
            with urllib.request.urlopen(uri, timeout=30) as resp:  # noqa: S310 (https SAS URL)
                text: str = resp.read().decode("utf-8", errors="replace")
                return text
        except urllib.error.HTTPError as exc:
            if exc.code == 404:
                return ""  # the log blob appears only after the first boot output
            raise ProviderError(f"reading the serial log of {p['name']}: HTTP {exc.code}",
                                provider=self.name) from exc
        except OSError as exc:
            raise ProviderError(f"reading the serial log of {p['name']}: {exc}",
                                provider=self.name) from exc

    # -- catalog -------------------------------------------------------------------------------

    def verify_catalog(self, catalog: Catalog, region: str) -> VerifyResult:
        live = self._skus(region)
        types = catalog.of(self.name)
        diffs: list[CatalogDiff] = []
        missing: list[str] = []
        for t in types:
            f = live.get(t.name.lower())
            if f is None:
                if not t.regions or region in t.regions:
                    missing.append(t.name)
                continue
            diffs.extend(_diff_type(t, f, region))
        return VerifyResult(provider=self.name, region=region, checked=len(types), diffs=diffs,
                            missing_live=missing)

    # -- guest data ----------------------------------------------------------------------------

    def _guest(self, spec: LaunchSpec, windows: bool, notes: builtins.list[str]
               ) -> plan.GuestData:
        from nestcloud.bootstrap import render_user_data

        try:
            rendered = render_user_data(self.capabilities.user_data, spec.os, spec.hypervisor,
                                        provider_name=self.name, extra=spec.user_data,
                                        l2_smoke=spec.l2_smoke)
            body, kind, gzipped = rendered.body, rendered.kind, rendered.gzipped
        except NotImplementedError:
            notes.append("hypervisor bootstrap rendering is not available in this build: only "
                         "your --user-data is sent")
            body = spec.user_data.encode() if spec.user_data else b""
            kind, gzipped = ("powershell" if windows else "cloud-config"), False
        if kind == "none" or not body:
            return plan.GuestData(custom_data=None, windows=windows, kind="none")
        if windows and gzipped:
            # The script is run from disk by PowerShell, which does not gunzip.
            body = gzip.decompress(body)
        plan.custom_data_ok(body)
        return plan.GuestData(custom_data=body, windows=windows, kind=kind)

    def _ssh_key(self, key: str | None, notes: builtins.list[str], dry_run: bool) -> str:
        if key:
            text = key.strip()
            if re.match(r"^(ssh-(rsa|ed25519)|ecdsa-sha2-)", text):
                return text
            path = Path(text).expanduser()
            if path.is_file():
                return path.read_text(encoding="utf-8").strip()
            raise InputError(f"--key-name {key!r}: on Azure give an SSH public key file "
                             "(e.g. ~/.ssh/id_ed25519.pub) or the key text itself")
        for cand in ("id_ed25519.pub", "id_rsa.pub"):
            path = Path.home() / ".ssh" / cand
            if path.is_file():
                notes.append(f"SSH login: {path}")
                return path.read_text(encoding="utf-8").strip()
        notes.append("no SSH public key given or found in ~/.ssh: the VM gets a throwaway key "
                     "(no SSH login; readiness is read from the serial console)")
        if dry_run:
            return "<throwaway key generated at launch>"
        return _throwaway_ssh_key()


# -- helpers -----------------------------------------------------------------------------------


def _vm_is_windows(vm: Any) -> bool:
    """Our Windows VMs carry osProfile.windowsConfiguration; ARM also reports the disk's osType."""
    os_profile = getattr(vm, "os_profile", None)
    if os_profile is not None and getattr(os_profile, "windows_configuration", None) is not None:
        return True
    disk = getattr(getattr(vm, "storage_profile", None), "os_disk", None)
    return str(getattr(disk, "os_type", None) or "").lower() == "windows"


def _camel_sku(s: dict[str, Any]) -> dict[str, Any]:
    """Resource SKU as_dict() may use snake_case keys; the pure code reads ARM's camelCase."""
    out = dict(s)
    if "resource_type" in s and "resourceType" not in s:
        out["resourceType"] = s["resource_type"]
    rest = []
    for r in s.get("restrictions") or []:
        r = dict(r)
        if "reason_code" in r and "reasonCode" not in r:
            r["reasonCode"] = r["reason_code"]
        rest.append(r)
    out["restrictions"] = rest
    return out


def _camel_usage(u: dict[str, Any]) -> dict[str, Any]:
    out = dict(u)
    if "current_value" in u and "currentValue" not in u:
        out["currentValue"] = u["current_value"]
    return out


def _diff_type(t: InstanceType, f: plan.SkuFacts, region: str) -> list[CatalogDiff]:
    diffs = []
    if f.vcpus is not None and f.vcpus != t.vcpus:
        diffs.append(CatalogDiff(type=t.name, field="vcpus", catalog=t.vcpus, live=f.vcpus))
    if f.memory_gib is not None and abs(f.memory_gib - t.memory_gib) > 0.01:
        diffs.append(CatalogDiff(type=t.name, field="memory_gib", catalog=t.memory_gib,
                                 live=f.memory_gib))
    if f.arch is not None and f.arch != t.arch:
        diffs.append(CatalogDiff(type=t.name, field="arch", catalog=t.arch, live=f.arch))
    if f.generations and t.hyperv_generations is not None and \
            sorted(t.hyperv_generations) != f.generations:
        diffs.append(CatalogDiff(type=t.name, field="hyperv_generations",
                                 catalog=sorted(t.hyperv_generations), live=f.generations))
    if f.restricted:
        diffs.append(CatalogDiff(type=t.name, field="restrictions", catalog=None,
                                 live=f"{f.restricted} in {region}"))
    if t.regions and region not in t.regions:
        diffs.append(CatalogDiff(type=t.name, field="regions", catalog=t.regions,
                                 live=f"also offered in {region}"))
    return diffs


def _default_name(size: str) -> str:
    base = re.sub(r"[^a-z0-9]+", "-", size.lower().removeprefix("standard_")).strip("-")
    return ("nc-" + base)[:40].rstrip("-")


def _windows_password() -> str:
    # Azure wants 12-123 characters from at least three classes; never shown or stored.
    alphabet = string.ascii_letters + string.digits
    core = "".join(secrets.choice(alphabet) for _ in range(24))
    return core + secrets.choice("ABCDEFGHJKLMNPQRSTUVWXYZ") + secrets.choice("abcdefghijkmnpqrstuvwxyz") \
        + secrets.choice("23456789") + secrets.choice("!#%+-=?@")


def _throwaway_ssh_key() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    pub = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                        serialization.PublicFormat.OpenSSH)
    return pub.decode("ascii") + " nestcloud-throwaway"
