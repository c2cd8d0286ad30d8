"""LocalProvider: L1 seats as QEMU processes on this machine, state in nestcloud's state dir.

Where a cloud keeps tags, this provider keeps one private directory per group name under
``<state dir>/local/<name>/``, one subdirectory per seat::

    <seat>/seat.json    the seat's metadata: id, type, tags (nestcloud:name, owner, expires,
                        seat and the user's), accelerator, SSH forward, the QEMU command line
    <seat>/disk.qcow2   copy-on-write overlay over the base image (never written)
    <seat>/seed.iso     NoCloud seed: the user data a cloud would get, and meta-data
    <seat>/serial.log   the serial console (``console()``; ``wait`` reads the marker there)
    <seat>/qemu.pid     written by QEMU itself (-pidfile)

``down`` stops a seat's QEMU only when /proc/PID/cmdline is a qemu-system binary started with
that seat's own ``-pidfile`` (qemu.stop_vm), then removes the directory. Raw QEMU, not
libvirt: docs/local-boot.md says why.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import socket
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from nestcloud.errors import InputError, ProviderError, RefusedError
from nestcloud.models import (DownResult, Instance, LaunchResult, PlannedRequest,
                              VerifyResult)
from nestcloud.provider import (Capabilities, LaunchOutcome, LaunchRequest, ProviderOption,
                                UserDataEnvelope, local_owner)
from nestcloud.spec import (NAME_RE, TAG_EXPIRES, TAG_NAME, TAG_OWNER, TAG_SEAT, LaunchSpec,
                            check_name)
from providers.local import host as hostmod
from providers.local import images, qemu

if TYPE_CHECKING:
    from nestcloud.catalog import Catalog, InstanceType
    from nestcloud.checks import Finding

NAME = "local"
REGION = "local"
SEAT_FILE = "seat.json"
MAX_SEAT_FILE = 1 << 20
# The console is read from its end: the marker is among the last lines cloud-init prints.
MAX_CONSOLE = 8 << 20
# QEMU's user-mode network hands the guest its first DHCP address, 10.0.2.15 (QEMU docs,
# "Network emulation", user networking).
GUEST_ADDRESS = "10.0.2.15"
# Seat-level metadata tag: which accelerator the seat runs under (ls shows it as the zone).
TAG_ACCEL = "nestcloud:accel"
ZONE = {"kvm": "kvm", "tcg": "tcg (emulated)"}
# A real KVM boots the probe kernel to its root-mount panic in about a second, TCG in about
# four (docs/local-boot.md): 15 s is ample, and a KVM that hangs guests costs it once per boot.
PROBE_TIMEOUT = 15.0
CpuMode = Literal["default", "novirt"]
AccelMode = Literal["auto", "kvm", "tcg"]
CPU_MODES: tuple[str, ...] = ("default", "novirt")
ACCEL_MODES: tuple[str, ...] = ("auto", "kvm", "tcg")
# The LaunchOptions fields a cloud-only feature sets: no local meaning, refused (exit 2).
_CLOUD_ONLY: tuple[tuple[str, str], ...] = (
    ("spot", "--spot: there is no spot capacity on your own machine"),
    ("public_ip", "--public-ip: seats use QEMU's user-mode network; --ssh-cidr gives a "
                  "loopback SSH forward"),
    ("egress", "--egress: seats reach the internet through QEMU's user-mode NAT"),
    ("instance_profile", "--instance-profile is an AWS IAM setting"),
    ("image_generation", "--image-generation is an Azure setting"),
)


@dataclass(frozen=True)
class AccelChoice:
    accel: qemu.Accel
    reason: str


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def _stamp(when: dt.datetime) -> str:
    return when.astimezone(dt.timezone.utc).replace(microsecond=0).isoformat().replace(
        "+00:00", "Z")


def _owner() -> str:
    """Who launches here, on which machine (NESTCLOUD_OWNER overrides the login name)."""
    return f"{local_owner()}@{socket.gethostname()}"


def seats_root() -> Path:
    """Where every local group lives (``<state dir>/local``)."""
    from nestcloud.localstate import state_dir

    return state_dir() / NAME


def _size_text(t: InstanceType) -> str:
    return f"{t.name} ({t.vcpus} vCPU, {t.memory_gib:g} GiB)"


def _largest_fitting(catalog: Catalog, cpus: int, memory_mib: int) -> InstanceType | None:
    fits = [t for t in catalog.of(NAME)
            if t.vcpus <= cpus and t.memory_gib * 1024 <= memory_mib]
    return max(fits, key=lambda t: (t.vcpus, t.memory_gib), default=None)


class LocalProvider:
    """L1 hosts as QEMU processes on this Linux machine (KVM when it really works, else TCG)."""

    name: ClassVar[str] = NAME
    capabilities: ClassVar[Capabilities] = Capabilities(
        rules=True,     # rules(): what this host cannot give is refused before a launch
        # This machine is no place a plan should pick unasked, however cheap: only when named.
        planned_unnamed=False,
        # NoCloud reads user-data from a file on the seed: no cloud API limit sits in between,
        # so this bound is only a sanity limit; gzip stays possible as on the clouds.
        user_data=UserDataEnvelope(limit_bytes=16 << 20, gzip=True, readiness="console"),
    )
    # Declared once: the CLI offers them as `-o cpu=novirt`, `-o accel=tcg`.
    options: ClassVar[tuple[ProviderOption, ...]] = (
        ProviderOption(name="cpu", flag="--local-cpu",
                       help="default, or novirt: a seat CPU without vmx/svm (QEMU "
                            "-cpu ...,-svm,-vmx): an L1 that cannot run a hypervisor"),
        ProviderOption(name="accel", flag="--local-accel",
                       help="auto (KVM when a probe boot proves it runs a guest and nests, "
                            "else TCG emulation), kvm, or tcg"),
    )

    def __init__(self, region: str | None = None, cpu: str | None = None,
                 accel: str | None = None, *, host_root: str | os.PathLike[str] = "/",
                 clock: Callable[[], dt.datetime] = _utcnow,
                 probe_timeout: float = PROBE_TIMEOUT) -> None:
        if region is not None and region != REGION:
            raise InputError(f"--region {region!r}: the local provider has one region, "
                             f"{REGION!r}")
        if cpu is not None and cpu not in CPU_MODES:
            raise InputError(f"-o cpu={cpu}: one of {', '.join(CPU_MODES)}")
        if accel is not None and accel not in ACCEL_MODES:
            raise InputError(f"-o accel={accel}: one of {', '.join(ACCEL_MODES)}")
        self.region = REGION
        self.cpu: CpuMode = cpu or "default"  # type: ignore[assignment]
        self.accel: AccelMode = accel or "auto"  # type: ignore[assignment]
        self.host_root = host_root
        self.clock = clock
        self.probe_timeout = probe_timeout

    @classmethod
    def configured(cls, **_: Any) -> bool:
        """Usable without --provider once it has launched something here (a group directory
        exists): `ls`/`down` then include local seats."""
        try:
            root = seats_root()
            return root.is_dir() and any(NAME_RE.fullmatch(p.name) for p in root.iterdir())
        except OSError:
            return False

    # -- rules (class level: check, plan, every launch) ------------------------------------

    @classmethod
    def rules(cls, spec: LaunchSpec, catalog: Catalog, entry: InstanceType | None
              ) -> list[Finding]:
        """What this machine cannot give, refused before anything starts; how seats will run
        (emulated, nested), as warnings. Reads /proc and /sys only (no probe boot)."""
        from nestcloud.checks import Finding
        from nestcloud.oses import OSES

        out: list[Finding] = []
        host = hostmod.read_host()
        info = OSES.get(spec.os)
        if host.platform != "linux":
            out.append(Finding(rule="local-host", severity="error",
                               message=f"the local provider runs QEMU on Linux; this machine "
                                       f"is {host.platform}",
                               suggestion="use a cloud provider"))
        if spec.hypervisor in ("hyperv", "wsl2") or (info is not None
                                                     and info.family == "windows"):
            out.append(Finding(rule="local-windows", severity="error",
                               message=f"local seats boot Linux cloud images; {spec.hypervisor} "
                                       f"on {spec.os} needs a Windows L1, which the local "
                                       "provider does not run",
                               suggestion="use --hypervisor kvm, firecracker or none on "
                                          "--os debian-12 or ubuntu-24.04"))
        elif spec.image is None and spec.os not in images.OFFICIAL:
            out.append(Finding(rule="local-image", severity="error",
                               message=f"no official cloud image is known for {spec.os} "
                                       "locally",
                               suggestion=f"use --os {' or --os '.join(images.OFFICIAL)}, or "
                                          "pass --image with a disk image of that OS"))
        if entry is not None:
            fit = _largest_fitting(catalog, host.cpus, host.memory_mib)
            hint = (f"use {_size_text(fit)}, the largest local size this machine can give"
                    if fit is not None else "this machine is smaller than every local size")
            if entry.vcpus > host.cpus:
                out.append(Finding(rule="local-vcpus", severity="error",
                                   message=f"{entry.name} has {entry.vcpus} vCPUs; this "
                                           f"machine has {host.cpus} CPUs",
                                   suggestion=hint))
            if entry.memory_gib * 1024 > host.memory_mib:
                out.append(Finding(rule="local-memory", severity="error",
                                   message=f"{entry.name} has {entry.memory_gib:g} GiB of "
                                           f"memory; this machine has "
                                           f"{host.memory_mib / 1024:.1f} GiB",
                                   suggestion=hint))
        if spec.depth >= 2 and not out:
            out += cls._depth_findings(host)
        return out

    @staticmethod
    def _depth_findings(host: hostmod.HostFacts) -> list[Finding]:
        """How a seat gets the vmx/svm its guests need, from the cheap host facts."""
        from nestcloud.checks import Finding

        if not host.dev_kvm or host.kvm_nesting is False:
            why = ("no /dev/kvm" if not host.dev_kvm else
                   "KVM's nesting is off (" + ", ".join(
                       f"{m} nested=N" for m, on in host.nested.items() if not on) + ")")
            return [Finding(rule="local-emulated", severity="warning",
                            message=f"{why}: seats run under TCG emulation, whose CPU carries "
                                    "AMD-V, so their L2 guests run inside an emulated L1: "
                                    "correct, but slow",
                            suggestion=None if not host.dev_kvm else
                            "enable nesting (e.g. modprobe kvm_intel nested=1) for KVM seats")]
        if host.kvm_nesting is None:
            return [Finding(rule="local-kvm-probe", severity="info",
                            message=f"KVM here is {', '.join(host.kvm_modules) or 'unknown'} "
                                    "without kvm_intel/kvm_amd: a launch boots a probe kernel "
                                    "under it and falls back to TCG emulation unless it runs",
                            suggestion=None)]
        return []

    # -- launch -----------------------------------------------------------------------------

    def launch(self, request: LaunchRequest) -> LaunchOutcome:
        spec = request.spec
        name = check_name(spec.name, "name") if spec.name is not None else None
        if name is None:
            raise InputError("local: a launch needs a group name")
        for fld, why in _CLOUD_ONLY:
            if getattr(spec, fld):
                raise InputError(f"{why} (not for --provider local)")
        if spec.security_type != "Standard":
            raise InputError("--security-type is an Azure setting (not for --provider local)")
        entry = request.catalog.get(NAME, spec.type)
        if entry is None:
            raise InputError(f"unknown local size {spec.type!r}",
                             hint="`nestcloud catalog list --provider local` lists them")
        from nestcloud.localstate import file_lock

        created: list[Instance] = []
        try:
            if request.dry_run:
                return LaunchOutcome(result=self._launch(spec, entry, name, True, created),
                                     created_any=False)
            with file_lock(seats_root() / f".{name}.lock"):
                result = self._launch(spec, entry, name, False, created)
        except ProviderError as exc:
            raise exc.with_outcome(LaunchOutcome(created_any=bool(created)))
        return LaunchOutcome(result=result, created_any=bool(created))

    def _launch(self, spec: LaunchSpec, entry: InstanceType, name: str, dry_run: bool,
                created: list[Instance]) -> LaunchResult:
        notes: list[str] = []
        seats = self._seats(name)
        live = [s for s in seats if s.running]
        for s in seats:  # a stopped seat is started again as it was: its size too
            if s.meta.get("type") != spec.type and (s.running or s.seat < spec.count):
                raise InputError(f"{name!r} already runs {s.meta.get('type')} ({s.id}); this "
                                 f"launch asks for {spec.type}",
                                 hint=f"use another --name, or `nestcloud down {name}` first")
        have = {s.seat for s in seats}
        restart = [s for s in seats if not s.running and s.seat < spec.count]
        missing = [n for n in range(spec.count) if n not in have]
        extra = sorted(s.seat for s in live if s.seat >= spec.count)
        if extra:
            notes.append(f"seats {extra} of {name!r} run beyond --count {spec.count}; left as "
                         f"they are (`nestcloud down {name}` removes every seat)")
        base = dict(provider=NAME, name=name, region=REGION, type=spec.type)
        reused = [s.instance() for s in live]
        if not missing and not restart:
            return LaunchResult(**base, instances=reused, reused=[i.id for i in reused],
                                notes=notes, dry_run=dry_run)
        memory_mib = int(round(entry.memory_gib * 1024))
        self._check_room(entry, memory_mib, len(missing) + len(restart))
        key = _public_key(spec.key_name) if spec.key_name else None
        plan = images.plan_image(spec.image, spec.os)
        rendered = self._user_data(spec)
        notes.append(f"user data: {len(rendered.body)} bytes ({rendered.kind}"
                     f"{', gzip' if rendered.gzipped else ''}); image: {plan.describe()}")
        cache = self._image_cache()
        if dry_run:
            boot = self._dry_image(plan)
            choice = self._choose_accel(boot)
            notes.append(self._accel_note(choice))
            reqs: list[PlannedRequest] = []
            if boot is None:
                reqs.append(PlannedRequest(service="local", operation="download", params={
                    "url": plan.official.url if plan.official else plan.source,
                    "checksums": plan.official.checksums_url if plan.official else
                    "SHA512SUMS or SHA256SUMS beside it", "into": str(cache)}))
            for s in restart:
                reqs.append(PlannedRequest(service="qemu", operation="restart",
                                           params={"seat": s.seat, "argv": s.meta["argv"]}))
            for n in missing:
                d = seats_root() / name / str(n)
                cfg = self._config(d, name, n, entry, memory_mib, choice, boot, spec,
                                   ssh_port=0 if spec.ssh_cidr else None)
                reqs.append(PlannedRequest(service="qemu", operation="qemu-img create",
                                           params={"base": str(boot.disk) if boot else
                                                   "<the downloaded image>",
                                                   "overlay": str(d / "disk.qcow2"),
                                                   "size": f"{spec.disk_gib}G"}))
                reqs.append(PlannedRequest(service="qemu", operation="start", params={
                    "argv": qemu.qemu_command(cfg),
                    "seed": {"user-data bytes": len(rendered.body),
                             "meta-data": {"instance-id": "<new>",
                                           "local-hostname": f"{name}-{n}"}},
                    "tags": self._tags(spec, name, n, choice)}))
            notes.append("dry run: nothing was created")
            return LaunchResult(**base, instances=reused, reused=[i.id for i in reused],
                                notes=notes, dry_run=True, requests=reqs)
        missing_tools = qemu.missing_tools()
        if missing_tools:
            raise ProviderError(f"the local provider needs {', '.join(missing_tools)}",
                                hint="apt-get install qemu-system-x86 qemu-utils "
                                     "(docs/local-boot.md)", provider=NAME, scope="provider")
        try:
            boot = images.resolve(plan, cache)
        except ProviderError:
            raise
        choice = self._choose_accel(boot)
        notes.append(self._accel_note(choice))
        if spec.ssh_cidr:
            notes.append(f"SSH: --ssh-cidr {spec.ssh_cidr} becomes a forward from 127.0.0.1 "
                         "only (ls shows the port): nothing outside this machine can reach "
                         "it")
        restarted: list[Instance] = []
        for s in restart:
            restarted.append(self._restart(s))
            notes.append(f"seat {s.seat} ({s.id}): its QEMU had exited; started it again on "
                         "its own disk")
        for n in missing:
            created.append(self._create(spec, entry, memory_mib, name, n, boot, choice,
                                        rendered.body, key))
        if choice.accel == "tcg":
            notes.append("seats are EMULATED (TCG): a boot takes minutes and guests run slowly")
        instances = sorted([*reused, *restarted, *created], key=lambda i: i.seat or 0)
        return LaunchResult(**base, instances=instances,
                            created=[i.id for i in [*restarted, *created]],
                            reused=[i.id for i in reused], notes=notes)

    def _user_data(self, spec: LaunchSpec) -> Any:
        from nestcloud.bootstrap import render_user_data

        return render_user_data(self.capabilities.user_data, spec.os, spec.hypervisor,
                                provider_name=NAME, extra=spec.user_data,
                                l2_smoke=spec.l2_smoke)

    def _image_cache(self) -> Path:
        from nestcloud.cache import cache_dir

        base = cache_dir()
        return (base / "images") if base is not None else seats_root() / ".images"

    def _dry_image(self, plan: images.ImagePlan) -> images.BootImage | None:
        """The image a dry run can name without downloading (None: it would be fetched)."""
        if plan.kind in ("direct", "file") or images.find_cached(plan, self._image_cache()):
            return images.resolve(plan, self._image_cache())  # no download: it is here
        return None

    def _check_room(self, entry: InstanceType, memory_mib: int, count: int) -> None:
        """Refuse (exit 3) before anything starts when this machine lacks the CPUs or memory
        for ``count`` more seats, saying how many fit now."""
        host = hostmod.read_host(self.host_root)
        running = [s for s in self._all_seats() if s.running]
        used = sum(int(s.meta.get("vcpus", 0)) for s in running)
        free_cpus = max(0, host.cpus - used)
        need_cpus = entry.vcpus * count
        need_mib = memory_mib * count
        if need_cpus <= free_cpus and need_mib <= host.available_mib:
            return
        fits = min(free_cpus // entry.vcpus, host.available_mib // max(1, memory_mib))
        raise RefusedError(
            f"{count} seat(s) of {_size_text(entry)} need {need_cpus} vCPUs and "
            f"{need_mib / 1024:g} GiB; this machine has {host.cpus} CPUs, {used} of them "
            f"given to {len(running)} running local seat(s), and "
            f"{host.available_mib / 1024:.1f} GiB of memory available: {fits} seat(s) of "
            f"{entry.name} fit now (nothing was started)",
            hint="lower --count, pick a smaller local size, or `nestcloud down` other local "
                 "seats")

    # -- accelerator -------------------------------------------------------------------------

    def _probe_kernel(self, boot: images.BootImage | None) -> Path | None:
        candidates: list[Path] = []
        if boot is not None and boot.kernel is not None:
            candidates.append(boot.kernel)
        release = os.uname().release if hasattr(os, "uname") else ""
        candidates += [Path(f"/boot/vmlinuz-{release}"), Path("/boot/vmlinuz")]
        return next((k for k in candidates if k.is_file() and os.access(k, os.R_OK)), None)

    def _choose_accel(self, boot: images.BootImage | None) -> AccelChoice:
        if self.accel == "tcg":
            return AccelChoice("tcg", "asked for (-o accel=tcg)")
        host = hostmod.read_host(self.host_root)
        why: str
        device = str(Path(self.host_root) / "dev/kvm")
        if not host.dev_kvm:
            why = "no /dev/kvm (no KVM module loaded)"
        elif not os.access(device, os.R_OK | os.W_OK):
            why = "/dev/kvm is not readable and writable by you (add yourself to group kvm)"
        elif (kernel := self._probe_kernel(boot)) is None:
            why = "no kernel to probe KVM with (this image has none, /boot has none readable)"
        else:
            probe = self._probe(kernel, device)
            if probe.usable and host.kvm_nesting is False and self.accel == "auto":
                why = (f"KVM works ({probe.reason}) but its nesting is off, so a KVM seat "
                       "could not run a hypervisor")
            elif probe.usable:
                return AccelChoice("kvm", probe.reason)
            else:
                why = probe.reason
        if self.accel == "kvm":
            raise ProviderError(f"-o accel=kvm: KVM cannot run seats here: {why}",
                                provider=NAME, scope="provider",
                                hint="`nestcloud doctor` explains; -o accel=auto falls back "
                                     "to emulation")
        return AccelChoice("tcg", why)

    def _probe(self, kernel: Path, device: str) -> qemu.KvmProbe:
        """qemu.probe_kvm, remembered until the machine reboots: a probe of a KVM that hangs
        guests costs its whole timeout, and the answer only changes with the kernel, the
        KVM module, QEMU or the probe kernel (all in the key)."""
        from nestcloud.cache import cache_dir, read_cache_entry, write_cache_entry

        def ident(path: str | Path | None) -> str:
            try:
                st = os.stat(path) if path else None
            except OSError:
                return "-"
            return f"{path}:{st.st_size}:{st.st_mtime_ns}:{st.st_rdev}" if st else "-"

        boot_id = (Path(self.host_root) / "proc/sys/kernel/random/boot_id")
        try:
            boot = boot_id.read_text().strip()
        except OSError:
            boot = ""
        key = hashlib.sha256("|".join([
            "probe-v1", boot, ident(device), ident(kernel), ident(shutil.which(qemu.QEMU)),
            f"{self.probe_timeout:g}"]).encode()).hexdigest()[:32]
        base = cache_dir()
        file = base / "local-kvm-probe" if base is not None and boot else None
        hit = read_cache_entry(file, key)
        if hit is not None:
            with contextlib.suppress(ValueError, KeyError, TypeError):
                doc = json.loads(hit)
                return qemu.KvmProbe(bool(doc["usable"]),
                                     f"{doc['reason']} (probed earlier since this boot)", 0.0)
        probe = qemu.probe_kvm(kernel, timeout=self.probe_timeout, device=device)
        write_cache_entry(file, key, json.dumps({"usable": probe.usable,
                                                 "reason": probe.reason}).encode())
        return probe

    @staticmethod
    def _accel_note(choice: AccelChoice) -> str:
        if choice.accel == "kvm":
            return f"accelerator: KVM ({choice.reason})"
        return f"accelerator: TCG emulation, slow ({choice.reason})"

    # -- seats -------------------------------------------------------------------------------

    def _config(self, d: Path, name: str, n: int, entry: InstanceType, memory_mib: int,
                choice: AccelChoice, boot: images.BootImage | None, spec: LaunchSpec,
                ssh_port: int | None) -> qemu.VmConfig:
        direct = (qemu.DirectBoot(boot.kernel, boot.initrd, boot.cmdline)
                  if boot is not None and boot.kernel is not None else None)
        return qemu.VmConfig(disk=d / "disk.qcow2", seed=d / "seed.iso",
                             serial_log=d / "serial.log", pidfile=d / "qemu.pid",
                             name=f"nestcloud-{name}-{n}", memory_mib=memory_mib,
                             vcpus=entry.vcpus, accel=choice.accel,
                             virtualization=self.cpu != "novirt", ssh_port=ssh_port,
                             boot=direct)

    def _tags(self, spec: LaunchSpec, name: str, n: int, choice: AccelChoice
              ) -> dict[str, str]:
        tags = dict(spec.tags)
        tags.update({TAG_NAME: name, TAG_OWNER: _owner(), TAG_SEAT: str(n),
                     TAG_ACCEL: choice.accel})
        if spec.ttl_seconds:
            tags[TAG_EXPIRES] = _stamp(self.clock() + dt.timedelta(seconds=spec.ttl_seconds))
        return tags

    @staticmethod
    def _meta_data(seat_id: str, hostname: str, key: str | None) -> str:
        doc: dict[str, Any] = {"instance-id": seat_id, "local-hostname": hostname}
        if key:
            doc["public-keys"] = [key]
        return json.dumps(doc, indent=1) + "\n"

    def _create(self, spec: LaunchSpec, entry: InstanceType, memory_mib: int, name: str,
                n: int, boot: images.BootImage, choice: AccelChoice, user_data: bytes,
                key: str | None) -> Instance:
        from nestcloud.localstate import private_dir, write_private

        d = seats_root() / name / str(n)
        if d.exists():  # a half-made seat a crashed launch left: nothing of it runs
            shutil.rmtree(d)
        private_dir(d)
        seat_id = f"{name}-{n}-{os.urandom(3).hex()}"
        try:
            qemu.write_seed_iso(d / "seed.iso", user_data,
                                self._meta_data(seat_id, f"{name}-{n}", key))
            size = max(spec.disk_gib << 30, boot.virtual_size)
            qemu.create_overlay(boot.disk, d / "disk.qcow2", size=str(size),
                                base_format=boot.format)
            port = qemu.free_loopback_port() if spec.ssh_cidr else None
            cfg = self._config(d, name, n, entry, memory_mib, choice, boot, spec, port)
            now = self.clock()
            tags = self._tags(spec, name, n, choice)
            meta = {"v": 1, "id": seat_id, "name": name, "seat": n, "type": spec.type,
                    "vcpus": entry.vcpus, "memory_mib": memory_mib, "accel": choice.accel,
                    "accel_reason": choice.reason, "cpu": self.cpu, "ssh_port": port,
                    "os": spec.os, "hypervisor": spec.hypervisor, "image": boot.source,
                    "launched_at": _stamp(now), "expires": tags.get(TAG_EXPIRES),
                    "tags": tags, "argv": qemu.qemu_command(cfg)}
            # The tags exist before the process does (as a cloud writes them with the create).
            write_private(d / SEAT_FILE, json.dumps(meta, indent=1).encode())
            qemu.start_vm(cfg)
        except qemu.QemuError as exc:
            _remove_seat_dir(d)
            raise ProviderError(f"local seat {n} of {name!r}: {exc}", provider=NAME,
                                scope="provider") from exc
        except BaseException:
            _remove_seat_dir(d)
            raise
        return Seat(d, meta).instance()

    def _restart(self, s: Seat) -> Instance:
        argv = list(s.meta.get("argv") or [])
        if not argv or not os.path.basename(argv[0]).startswith("qemu-system"):
            raise ProviderError(f"seat {s.seat} of {s.name!r} ({s.id}) cannot be restarted: its "
                                "metadata holds no QEMU command line", provider=NAME,
                                scope="request",
                                hint=f"`nestcloud down {s.name}` removes it")
        (s.dir / "qemu.pid").unlink(missing_ok=True)
        try:
            qemu._run(argv, what="qemu")
        except qemu.QemuError as exc:
            raise ProviderError(f"restarting seat {s.seat} of {s.name!r}: {exc}", provider=NAME,
                                scope="provider") from exc
        return s.instance()

    def _seats(self, name: str) -> list[Seat]:
        d = seats_root() / name
        out: list[Seat] = []
        try:
            entries = sorted(d.iterdir())
        except OSError:
            return []
        for sd in entries:
            if not sd.name.isdigit():
                continue
            seat = Seat.read(sd)
            if seat is not None:
                out.append(seat)
        return sorted(out, key=lambda s: s.seat)

    def _all_seats(self) -> list[Seat]:
        try:
            names = sorted(p.name for p in seats_root().iterdir() if NAME_RE.fullmatch(p.name))
        except OSError:
            return []
        return [s for n in names for s in self._seats(n)]

    # -- the other verbs ---------------------------------------------------------------------

    def list(self, name: str | None = None) -> list[Instance]:
        seats = self._seats(check_name(name)) if name is not None else self._all_seats()
        return [s.instance() for s in seats]

    def down(self, name: str) -> DownResult:
        from nestcloud.localstate import file_lock

        check_name(name, "NAME")
        d = seats_root() / name
        if not d.is_dir():
            return DownResult(provider=NAME, name=name)
        gone: list[str] = []
        notes: list[str] = []
        with file_lock(seats_root() / f".{name}.lock"):
            for sd in sorted(p for p in d.iterdir() if p.is_dir()):
                seat = Seat.read(sd)
                try:
                    stopped = qemu.stop_vm(sd / "qemu.pid")
                except qemu.QemuError as exc:
                    raise ProviderError(f"down {name}: {exc}; its files were kept",
                                        provider=NAME, scope="provider") from exc
                if seat is not None:
                    gone.append(seat.id)
                elif stopped or any(sd.iterdir()):
                    gone.append(f"{name}-{sd.name}")
            shutil.rmtree(d)
        with contextlib.suppress(OSError):
            (seats_root() / f".{name}.lock").unlink()
        if gone:
            notes.append(f"removed {d}")
        return DownResult(provider=NAME, name=name, terminated=sorted(gone), notes=notes)

    def console(self, instance: Instance) -> str:
        seat = self._find(instance)
        if seat is None:
            return ""
        try:
            with open(seat.dir / "serial.log", "rb") as fh:
                fh.seek(0, os.SEEK_END)
                size = fh.tell()
                fh.seek(max(0, size - MAX_CONSOLE))
                return fh.read().decode("utf-8", "replace")
        except OSError:
            return ""

    def _find(self, instance: Instance) -> Seat | None:
        if not NAME_RE.fullmatch(instance.name):
            return None
        return next((s for s in self._seats(instance.name) if s.id == instance.id), None)

    def verify_catalog(self, catalog: Catalog, region: str) -> VerifyResult:
        """The local sizes against this machine: a size it cannot give is "missing"."""
        if region != REGION:
            raise InputError(f"--region {region!r}: the local provider has one region, "
                             f"{REGION!r}")
        host = hostmod.read_host(self.host_root)
        mine = catalog.of(NAME)
        missing = [t.name for t in mine
                   if t.vcpus > host.cpus or t.memory_gib * 1024 > host.memory_mib]
        return VerifyResult(provider=NAME, region=REGION, checked=len(mine),
                            missing_live=missing)


def _remove_seat_dir(d: Path) -> None:
    """A seat that did not start: its files go, and its name's directory when now empty."""
    with contextlib.suppress(OSError):
        shutil.rmtree(d)
    with contextlib.suppress(OSError):
        d.parent.rmdir()


def _public_key(key: str) -> str:
    """An SSH public key from a file or the key text (like Azure's --key-name)."""
    text = key
    path = Path(key).expanduser()
    if not key.startswith(("ssh-", "ecdsa-", "sk-")):
        try:
            if path.stat().st_size > 64 << 10:
                raise InputError(f"--key-name {key!r}: larger than 64 KiB: not a public key")
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            raise InputError(f"--key-name {key!r}: neither a public key nor a readable file "
                             f"({exc.strerror})") from None
    line = text.strip().splitlines()[0] if text.strip() else ""
    if not line.startswith(("ssh-", "ecdsa-", "sk-")) or "PRIVATE KEY" in text:
        raise InputError(f"--key-name {key!r}: not an SSH public key (ssh-ed25519 AAAA...)")
    return line


class Seat:
    """One seat's directory and metadata."""

    def __init__(self, d: Path, meta: dict[str, Any]) -> None:
        self.dir = d
        self.meta = meta
        self.id = str(meta.get("id") or f"{d.parent.name}-{d.name}")
        self.name = d.parent.name
        self.seat = int(d.name)

    @classmethod
    def read(cls, d: Path) -> Seat | None:
        from nestcloud.localstate import LocalFileError, read_private

        try:
            data, _ = read_private(d / SEAT_FILE, MAX_SEAT_FILE)
            meta = json.loads(data)
        except (OSError, LocalFileError, ValueError):
            return None
        return cls(d, meta) if isinstance(meta, dict) else None

    @property
    def running(self) -> bool:
        pid = qemu.read_pid(self.dir / "qemu.pid")
        return pid is not None and qemu.is_our_qemu(pid, self.dir / "qemu.pid") \
            and qemu._alive(pid)

    def instance(self) -> Instance:
        m = self.meta
        tags = {str(k): str(v) for k, v in (m.get("tags") or {}).items()}
        accel = str(m.get("accel", ""))
        port = m.get("ssh_port")
        return Instance(provider=NAME, id=self.id, name=self.name, region=REGION,
                        type=str(m.get("type", "?")),
                        state="running" if self.running else "stopped",
                        zone=ZONE.get(accel, accel or None), seat=self.seat,
                        nested=m.get("cpu") != "novirt", private_ip=GUEST_ADDRESS,
                        public_ip=f"127.0.0.1:{port}" if port else None,
                        launched_at=m.get("launched_at"), expires=m.get("expires"),
                        tags=tags)
