"""What a GCP L1 gets in its metadata: the bootstrap, and the readiness report channel.

Both come from the one Linux profile nestcloud renders for every cloud
(``nestcloud.bootstrap.render_user_data`` with the provider's envelope):

- Ubuntu images run cloud-init, which reads metadata ``user-data`` (FACTS): they get the
  rendered cloud-config (MIME when there is --user-data), byte for byte what
  `nestcloud userdata --provider gcp` prints.
- Debian and RHEL images have no cloud-init (FACTS): the same profile becomes a metadata
  ``startup-script``, which the guest agent runs at every boot, so every step may run again:
  files are rewritten, packages installed only when missing, the check reports afresh.

Readiness: the L1 check prints its marker on the serial console (which ``console()`` falls
back to) and saves the same JSON to ``L1_STATE_PATH``; the envelope's ``linux_report_script``
(``REPORT_COMMAND``), which the profile runs right after the check, PUTs that JSON to the
guest attribute ``nestcloud/l1`` (FACTS: guest attributes, ``enable-guest-attributes=TRUE``),
which ``console()`` reads first. Pure: no network, no SDK.
"""

from __future__ import annotations

import base64
import shlex
import textwrap
from typing import Any

import yaml

from nestcloud.bootstrap.profiles import L1_STATE_PATH
from nestcloud.errors import InputError, RefusedError
from nestcloud.oses import OSES
from nestcloud.provider import UserDataEnvelope
from providers.gcp._plan import CLOUD_INIT_OSES, IMAGES, METADATA_VALUE_MAX, PROVIDER, Guest

GUEST_NAMESPACE = "nestcloud"
GUEST_KEY = "l1"
GUEST_ATTRIBUTE = f"{GUEST_NAMESPACE}/{GUEST_KEY}"
METADATA_URL = ("http://metadata.google.internal/computeMetadata/v1/instance/"
                f"guest-attributes/{GUEST_ATTRIBUTE}")
USER_SCRIPT = "/var/lib/nestcloud/user-script"
# Debian family images install with apt, RHEL with dnf.
APT_OSES = frozenset({"ubuntu-24.04", "debian-12"})

# Run as `python3 -c` right after the check (python3 is there: the check is Python too).
# No proxy: the report goes to the metadata server only, whatever the environment says.
REPORT_SCRIPT = textwrap.dedent(f'''\
    # nestcloud: publish the result of the L1 check as the guest attribute {GUEST_ATTRIBUTE}
    # (`nestcloud wait` reads it; the serial console is the fallback).
    import json, sys, time, urllib.request
    try:
        with open("{L1_STATE_PATH}") as fh:
            payload = json.load(fh)
    except (OSError, ValueError) as exc:
        sys.exit("nestcloud: no readiness report to publish: %s" % exc)
    data = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    req = urllib.request.Request("{METADATA_URL}", data=data, method="PUT",
                                 headers={{"Metadata-Flavor": "Google"}})
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({{}}))
    for attempt in range(10):
        try:
            opener.open(req, timeout=10).read()
            break
        except OSError as exc:
            error = exc
            time.sleep(3)
    else:
        sys.exit("nestcloud: could not publish the readiness report: %s" % error)
    ''')
REPORT_COMMAND = "python3 -c " + shlex.quote(REPORT_SCRIPT)


def _fits(what: str, data: bytes) -> None:
    if len(data) > METADATA_VALUE_MAX:
        raise InputError(f"{what} is {len(data)} bytes; a Compute Engine metadata value holds "
                         f"at most {METADATA_VALUE_MAX} bytes",
                         hint="shorten --user-data, or fetch big files at boot")


def guest_for(envelope: UserDataEnvelope, os_alias: str, hypervisor: str, *,
              user_data: str | None, l2_smoke: bool) -> Guest:
    """The metadata key and text that bootstrap this L1 (see the module docstring)."""
    from nestcloud.bootstrap import check_user_data, render_user_data

    info = OSES.get(os_alias)
    if info is None:
        raise InputError(f"unknown OS {os_alias!r} (one of {', '.join(OSES)})")
    if info.family == "windows":
        raise RefusedError(f"{info.title} cannot be an L1 on GCP: Compute Engine supports only "
                           "Linux KVM as the L1 hypervisor (Hyper-V and Windows Server images "
                           "are not supported for nested virtualization)",
                           hint="use --os ubuntu-24.04 --hypervisor kvm, or another provider "
                                "for a Windows L1")
    if os_alias not in IMAGES:
        raise InputError(f"--os {os_alias}: Compute Engine has no public image nestcloud "
                         f"knows for it (GCP: {', '.join(IMAGES)})")
    extra = user_data if user_data and user_data.strip() else None
    if extra is not None:
        check_user_data(extra, "user data")
    if os_alias in CLOUD_INIT_OSES:
        # The envelope fits it in METADATA_VALUE_MAX (no gzip), as `nestcloud userdata` does.
        r = render_user_data(envelope, os_alias, hypervisor, provider_name=PROVIDER,
                             extra=extra, l2_smoke=l2_smoke)
        return Guest("user-data", r.body.decode("utf-8"), r.kind)
    if extra is not None and not extra.lstrip().startswith("#!"):
        raise InputError(f"--user-data: {info.title} images on GCP have no cloud-init, so "
                         "nestcloud bootstraps them with a startup-script; your user data "
                         "must be a script starting with #! (it runs once, after the "
                         "bootstrap)", hint="or use --os ubuntu-24.04 for cloud-config")
    r = render_user_data(envelope, os_alias, hypervisor, provider_name=PROVIDER, extra=None,
                         l2_smoke=l2_smoke)
    cfg = yaml.safe_load(r.body.decode("utf-8"))
    script = startup_script(cfg, os_alias, extra)
    _fits("the startup-script", script.encode("utf-8"))
    return Guest("startup-script", script, "startup-script")


def _q(text: str) -> str:
    return shlex.quote(text)


def _file_lines(path: str, content: bytes, mode: str, owner: str | None) -> list[str]:
    tmp = f"{path}.nestcloud-new"
    lines = [f"mkdir -p {_q(path.rsplit('/', 1)[0] or '/')}",
             f"base64 -d > {_q(tmp)} <<'NESTCLOUD_B64'",
             *textwrap.wrap(base64.b64encode(content).decode("ascii"), 76),
             "NESTCLOUD_B64",
             f"chmod {_q(mode)} {_q(tmp)} && mv -f {_q(tmp)} {_q(path)}"]
    if owner:
        lines.append(f"chown {_q(owner)} {_q(path)}")
    return lines


def startup_script(cfg: dict[str, Any], os_alias: str, user_script: str | None) -> str:
    """The profile's cloud-config as an idempotent bash startup-script, in cloud-init's order:
    files, packages, commands (the last: the check, then the readiness report); then the
    user's own script (until it succeeds). It exits with the check step's status, else the
    user script's."""
    lines = [
        "#!/bin/bash",
        "# nestcloud L1 bootstrap for Compute Engine: the same profile cloud-init gets on",
        "# other images, for an image without cloud-init. The guest agent runs this at every",
        "# boot, so every step may run again: files are rewritten, packages installed only",
        "# when missing, and the L1 check reports afresh.",
        "set -u",
        "mkdir -p /var/lib/nestcloud",
    ]
    for f in cfg.get("write_files") or []:
        lines += _file_lines(str(f["path"]), str(f.get("content", "")).encode("utf-8"),
                             str(f.get("permissions", "0644")), f.get("owner"))
    pkgs = [str(p) for p in cfg.get("packages") or []]
    if pkgs:
        joined = " ".join(_q(p) for p in pkgs)
        if os_alias in APT_OSES:
            lines += ["export DEBIAN_FRONTEND=noninteractive",
                      f"if ! dpkg -s {joined} >/dev/null 2>&1; then",
                      *(["  apt-get -o DPkg::Lock::Timeout=600 update -q"]
                        if cfg.get("package_update") else []),
                      f"  apt-get -o DPkg::Lock::Timeout=600 install -y -q {joined}",
                      "fi"]
        else:
            lines.append(f"rpm -q {joined} >/dev/null 2>&1 || dnf install -y -q {joined}")
    for cmd in cfg.get("runcmd") or []:
        lines.append(shlex.join(str(c) for c in cmd) if isinstance(cmd, list) else str(cmd))
    # runcmd ends with the check step (check, then report; the check's status), and a failed
    # check fails the bootstrap as it fails cloud-init's runcmd (docs/bootstrap.md); the
    # user's script still runs, and its failure counts when the check passed.
    lines.append("nestcloud_rc=$?")
    if user_script is not None:
        lines += _file_lines(USER_SCRIPT, user_script.encode("utf-8"), "0700", None)
        lines += [f"if [ ! -e {USER_SCRIPT}.done ]; then",
                  f"  {USER_SCRIPT} && touch {USER_SCRIPT}.done",
                  '  user_rc=$?',
                  '  [ "$nestcloud_rc" -ne 0 ] || nestcloud_rc=$user_rc',
                  "fi"]
    lines.append('exit "$nestcloud_rc"')
    return "\n".join(lines) + "\n"
