"""L1 hypervisor bootstrap: profiles -> user data, and the in-guest readiness check.

``render_user_data`` is what providers call, with the ``UserDataEnvelope`` they declare
(``capabilities.user_data``): the size limit, gzip, how Windows gets its script and where
readiness is read all come from that declaration, so a provider the core has never heard of
gets correct user data; ``wait.wait_for_ready`` reads the readiness marker
back; ``l1check`` is the in-guest check (shipped verbatim in the user data, and run locally by
``nestcloud doctor``).
"""

from __future__ import annotations

import email.parser
import email.policy
import gzip
import hashlib
from dataclasses import dataclass, field
from email.message import EmailMessage
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml

from nestcloud._yamlio import MAX_USER_DATA_BYTES, FileRefused, load_yaml, read_text_bounded
from nestcloud.bootstrap.profiles import TAG_L1
from nestcloud.errors import InputError, ProviderError, RefusedError
from nestcloud.oses import HYPERVISORS, OSES

if TYPE_CHECKING:  # annotations only: rendering needs no provider module
    from nestcloud.provider import UserDataEnvelope

# User cloud-config lists (runcmd, packages, write_files...) append to ours instead of
# replacing them; the user's scalar settings win (cloud-init merge syntax).
USER_MERGE_TYPE = "list(append)+dict(recurse_array)+str()"

# How cloud-init recognises a user-data part by its first line (longest prefix first).
_PART_TYPES: tuple[tuple[str, str], ...] = (
    ("#cloud-config-archive", "cloud-config-archive"),
    ("#cloud-config", "cloud-config"),
    ("#cloud-boothook", "cloud-boothook"),
    ("#include", "x-include-url"),
    ("#part-handler", "part-handler"),
    ("## template: jinja", "jinja2"),
    ("#!", "x-shellscript"),
)

Kind = Literal["cloud-config", "mime", "powershell", "none"]


@dataclass(frozen=True)
class RenderedUserData:
    """What a provider sends: ``body`` as bytes (possibly gzipped), and how to describe it."""

    kind: Kind
    body: bytes
    gzipped: bool
    provider: str = ""
    os_alias: str = ""
    hypervisor: str = ""
    raw_size: int = 0             # bytes before gzip
    limit: int = 0                # the provider's raw limit
    parts: tuple[str, ...] = field(default_factory=tuple)  # MIME content types, in order
    # Where the L1's readiness is read (from the envelope): "console", "tag:<name>" (an
    # instance tag the L1 writes) or "run-command:<file>" (a file the provider reads back).
    readiness: str = "console"

    @property
    def size(self) -> int:
        return len(self.body)


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """Multi-line strings (file contents) as YAML literal blocks: readable and smaller.

    libyaml's emitter where PyYAML has it (its wheels do): ~5x faster on our scripts (bench
    /bench_fleet.py renders one per launch). Both emit valid YAML for the same data; for
    nestcloud's own profiles they emit the same bytes (tests/bootstrap)."""


def _str_representer(dumper: yaml.SafeDumper, data: str) -> yaml.Node:
    if "\n" in data:
        return dumper.represent_scalar("tag:yaml.org,2002:str", data, style="|")
    return dumper.represent_scalar("tag:yaml.org,2002:str", data)


_Dumper.add_representer(str, _str_representer)


def dump_cloud_config(cfg: dict[str, Any]) -> str:
    """cloud-config data -> the text cloud-init reads."""
    return "#cloud-config\n" + yaml.dump(cfg, Dumper=_Dumper, sort_keys=False,
                                         default_flow_style=False, width=100,
                                         allow_unicode=True)


def _refuse_pair(provider: str, os_alias: str, hypervisor: str) -> None:
    from nestcloud.checks import rule_os_hypervisor
    from nestcloud.spec import LaunchSpec

    if os_alias not in OSES:
        raise InputError(f"unknown OS {os_alias!r} (one of {', '.join(OSES)})")
    if hypervisor not in HYPERVISORS:
        raise InputError(f"unknown hypervisor {hypervisor!r} (one of {', '.join(HYPERVISORS)})")
    spec = LaunchSpec(provider=provider, type="-", os=os_alias,
                      hypervisor=hypervisor)  # type: ignore[arg-type]
    # The same rule (and message) as the pre-launch checks; it does not read the catalog.
    findings = rule_os_hypervisor(spec, None, None)  # type: ignore[arg-type]
    if findings:
        f = findings[0]
        raise RefusedError(f.message, hint=f.suggestion, findings=findings)


def _part_subtype(text: str) -> str | None:
    head = text.lstrip("\ufeff")
    for prefix, subtype in _PART_TYPES:
        if head.startswith(prefix):
            return subtype
    return None


def _is_mime(text: str) -> bool:
    head = text.lstrip()[:200].lower()
    return head.startswith("content-type: multipart") or head.startswith("mime-version:")


def _text_part(text: str, subtype: str, filename: str, merge_type: str | None) -> EmailMessage:
    part = EmailMessage()
    cte = "7bit" if text.isascii() else "8bit"
    part.set_content(text, subtype=subtype, charset="utf-8" if cte == "8bit" else "us-ascii",
                     cte=cte)
    part.add_header("Content-Disposition", "attachment", filename=filename)
    if merge_type:
        part["Merge-Type"] = merge_type
    return part


def _user_parts(extra: str) -> list[EmailMessage]:
    """The user's --user-data as MIME parts, each checked the way cloud-init will read it."""
    if _is_mime(extra):
        msg = email.parser.Parser(policy=email.policy.default).parsestr(extra)
        if not msg.is_multipart():
            raise InputError("--user-data: a MIME document must be multipart")
        parts: list[EmailMessage] = []
        for i, sub in enumerate(msg.walk()):
            if sub.is_multipart():
                continue
            assert isinstance(sub, EmailMessage)
            if sub.get_content_type() == "text/cloud-config" and "Merge-Type" not in sub:
                sub["Merge-Type"] = USER_MERGE_TYPE
            parts.append(sub)
        if not parts:
            raise InputError("--user-data: the MIME document has no parts")
        _check_mime_yaml(msg, "--user-data")
        return parts
    subtype = _part_subtype(extra)
    if subtype is None:
        first = extra.strip().splitlines()[0][:60] if extra.strip() else "(empty)"
        raise InputError(f"--user-data: cloud-init would not know what {first!r} is; start "
                         "the file with #cloud-config, #! (a script), #include or "
                         "#cloud-boothook, or give a MIME multipart document")
    _check_yaml(extra, subtype, "--user-data")
    if subtype == "cloud-config":
        return [_text_part(extra, subtype, "user-cloud-config.yaml", USER_MERGE_TYPE)]
    return [_text_part(extra, subtype, "user-data-part", None)]


# The part types cloud-init parses as YAML, and the top level each must have.
_YAML_TOP = {"cloud-config": (dict, "a #cloud-config must be a YAML mapping"),
             "cloud-config-archive": (list, "a #cloud-config-archive must be a YAML list")}


def _check_yaml(text: str, subtype: str | None, source: str) -> None:
    """Refuse a YAML part cloud-init would read that we cannot bound or that is ambiguous:
    alias bombs, deep nesting, duplicate keys (cloud-init would keep the last silently)."""
    if subtype not in _YAML_TOP:
        return
    data, err = load_yaml(text.lstrip("\ufeff"), source)
    if err:
        raise InputError(err)
    kind, must = _YAML_TOP[subtype]
    if data is not None and not isinstance(data, kind):
        raise InputError(f"{source}: {must} (got {type(data).__name__})")


def _check_mime_yaml(msg: Any, source: str) -> None:
    for n, part in enumerate(msg.walk()):
        if part.is_multipart() or part.get_content_maintype() != "text":
            continue
        sub = part.get_content_subtype()
        if sub in _YAML_TOP:
            try:
                body = part.get_content()  # undoes base64 / quoted-printable
            except (LookupError, ValueError):  # an unknown charset: not ours to judge
                continue
            if isinstance(body, str):
                _check_yaml(body, sub, f"{source} (MIME part {n})")


def check_user_data(text: str, source: str) -> None:
    """Refuse (InputError, exit 2) user data cloud-init could not read safely, or that holds a
    secret. Every launch path and `nestcloud userdata` call this, dry runs included.

    ``source`` names the file in messages (with its line); nothing of its content is quoted.
    """
    if _is_mime(text):
        _check_mime_yaml(email.parser.Parser(policy=email.policy.default).parsestr(text),
                         source)
    else:
        _check_yaml(text, _part_subtype(text), source)
    from nestcloud.security import refuse_secrets

    refuse_secrets(text, source)


def read_user_data(path: Path) -> str:
    """A ``--user-data`` file, read with bounds and checked like every launch checks it."""
    try:
        text = read_text_bounded(path, "a user-data file", MAX_USER_DATA_BYTES)
    except FileRefused as exc:
        raise InputError(f"--user-data {str(path)!r}: cannot read it ({exc.reason})") from None
    check_user_data(text, str(path))
    return text


def _mime(ours: str, extra: str) -> tuple[bytes, tuple[str, ...]]:
    parts = [_text_part(ours, "cloud-config", "nestcloud-cloud-config.yaml", None)]
    parts += _user_parts(extra)
    root = EmailMessage()
    root["MIME-Version"] = "1.0"
    root.make_mixed()
    for part in parts:
        root.attach(part)
    body = b"".join(p.as_bytes() for p in parts)
    # A boundary derived from the content: the same input renders the same bytes.
    root.set_boundary("nestcloud-" + hashlib.sha256(body).hexdigest()[:32])
    data = root.as_bytes(policy=email.policy.SMTP.clone(linesep="\n"))
    return data, tuple(p.get_content_type() for p in parts)


def _strip_ec2_tags(script: str) -> str:
    for tag in ("<powershell>", "</powershell>", "<persist>true</persist>",
                "<persist>false</persist>"):
        script = script.replace(tag, "")
    return script.strip("\n") + "\n"


def _fit(provider: str, limit: int, raw: bytes, *, can_gzip: bool, why_not: str,
         what: str) -> tuple[bytes, bool]:
    if len(raw) <= limit:
        return raw, False
    if not can_gzip:
        raise InputError(f"{what} is {len(raw)} bytes, over the {provider} user-data limit of "
                         f"{limit} bytes (it cannot be gzipped: {why_not})",
                         hint="shorten the --user-data script")
    packed = gzip.compress(raw, compresslevel=9, mtime=0)
    if len(packed) <= limit:
        return packed, True
    raise InputError(f"{what} is {len(raw)} bytes ({len(packed)} gzipped), over the {provider} "
                     f"user-data limit of {limit} bytes even gzipped",
                     hint="shorten the --user-data file, or fetch big files at boot with "
                          "#include or a script")


def _readiness(provider: str, channel: str, family: str, reported: bool = False) -> str:
    """RenderedUserData.readiness for the channel the provider declares, as far as the L1
    bootstrap for this OS family writes to it (wait.py reads these forms)."""
    from nestcloud.bootstrap.profiles import WINDOWS_MARKER_FILE

    # The Linux L1 prints its marker on the serial console; the Windows L1 writes the tag
    # and the marker file (files/l1-windows.ps1). Nothing else is written anywhere.
    # A provider's own Linux report script publishes it wherever it declares (its console()
    # returns that marker).
    written = ({"console": "console"} if family == "linux" and not reported else
               {channel: "console"} if family == "linux" else
               {"tag": f"tag:{TAG_L1}",
                "run-command": "run-command:%ProgramData%\\" + WINDOWS_MARKER_FILE})
    if channel not in written:
        raise ProviderError(f"provider {provider!r} declares {family} readiness through "
                            f"{channel!r}, but the {family} L1 bootstrap reports through "
                            f"{' or '.join(map(repr, written))} only",
                            hint="declare one of those in capabilities.user_data",
                            provider=provider)
    return written[channel]


def render_user_data(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
                     provider_name: str, extra: str | None = None,
                     l2_smoke: bool = False, hugepages: int = 0) -> RenderedUserData:
    """User data for OS/hypervisor in the provider's ``envelope``, merged with ``extra``.

    ``envelope`` is the provider's ``capabilities.user_data``: ``limit_bytes`` bounds the
    raw body, gzip is used (over the limit) only when ``gzip`` says the guest unpacks it,
    ``windows`` says how a Windows L1 gets its script and ``readiness`` /
    ``windows_readiness`` where readiness is read. ``provider_name`` names the provider in
    messages.

    Raises InputError (bad names, unreadable ``extra``, too big even gzipped, ``l2_smoke``
    outside the kvm profile), RefusedError (an OS that cannot host that hypervisor, or a
    Windows L1 on a provider whose envelope says ``windows="unsupported"``) or ProviderError
    (the envelope declares a readiness channel the L1 bootstrap does not write).
    ``hugepages`` reserves that many 2 MiB pages for L2 guests (kvm profile).
    """
    provider = provider_name
    _refuse_pair(provider, os_alias, hypervisor)
    if l2_smoke and hypervisor != "kvm":
        raise InputError(f"--l2-smoke boots a tiny L2 guest with QEMU: it exists for the kvm "
                         f"profile only, not {hypervisor}"
                         + (" (hyperv always starts a probe VM)" if hypervisor == "hyperv"
                            else ""))
    if hugepages < 0 or (hugepages and hypervisor != "kvm"):
        raise InputError("--hugepages takes a positive number of 2 MiB pages, for the kvm "
                         "profile only")
    family = OSES[os_alias].family
    limit = envelope.limit_bytes
    if extra is not None and not extra.strip():
        extra = None
    if family == "windows":
        from nestcloud.bootstrap.profiles import WINDOWS_WRAPPERS, windows_script

        wrap = WINDOWS_WRAPPERS.get(envelope.windows)
        if wrap is None:
            raise RefusedError(f"provider {provider!r} cannot bootstrap a Windows L1 "
                               f"({os_alias}): its user-data envelope declares Windows "
                               f"delivery {envelope.windows!r}",
                               hint="choose a Linux OS, or a provider that hosts Windows L1s")
        readiness = _readiness(provider, envelope.windows_readiness, family)
        user = None
        if extra is not None:
            if _part_subtype(extra) == "cloud-config" or _is_mime(extra):
                raise InputError("--user-data: Windows L1s take a PowerShell script, not "
                                 "cloud-config or MIME")
            user = _strip_ec2_tags(extra)
        body = windows_script(envelope, hypervisor, user_script=user)
        raw = wrap(body).encode("utf-8")
        data, gz = _fit(provider, limit, raw, can_gzip=False,
                        why_not="Windows does not unpack it", what="the PowerShell user data")
        return RenderedUserData(kind="powershell", body=data, gzipped=gz, provider=provider_name,
                                os_alias=os_alias, hypervisor=hypervisor, raw_size=len(raw),
                                limit=limit, parts=("text/x-powershell",), readiness=readiness)

    from nestcloud.bootstrap.profiles import linux_cloud_config

    readiness = _readiness(provider, envelope.readiness, family,
                           reported=bool(envelope.linux_report_script.strip()))
    ours = dump_cloud_config(linux_cloud_config(os_alias, hypervisor, l2_smoke=l2_smoke,
                                                hugepages=hugepages,
                                                report=envelope.linux_report_script))
    kind: Kind
    if extra is None:
        kind, raw, parts = "cloud-config", ours.encode("utf-8"), ("text/cloud-config",)
    else:
        kind = "mime"
        raw, parts = _mime(ours, extra)
    data, gz = _fit(provider, limit, raw, can_gzip=envelope.gzip,
                    why_not=f"{provider} does not accept gzipped user data",
                    what="the user data")
    return RenderedUserData(kind=kind, body=data, gzipped=gz, provider=provider_name,
                            os_alias=os_alias, hypervisor=hypervisor, raw_size=len(raw),
                            limit=limit, parts=parts, readiness=readiness)


__all__ = ["RenderedUserData", "TAG_L1", "USER_MERGE_TYPE", "check_user_data",
           "dump_cloud_config", "read_user_data", "render_user_data"]
