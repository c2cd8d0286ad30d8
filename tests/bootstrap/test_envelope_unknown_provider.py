"""A provider the core has never heard of gets correct user data from its declared envelope.

``Mycloud`` below is registered in-process like a plugin would be through its entry point;
nothing in ``nestcloud.bootstrap`` knows its name. What it gets is decided only by its
``capabilities.user_data``: the limit, whether gzip may be used, how a Windows L1 gets its
script, and where readiness is read.
"""

from __future__ import annotations

import gzip
import subprocess
from typing import Any, ClassVar

import pytest
import yaml
from typer.testing import CliRunner

from nestcloud import provider as registry
from nestcloud.bootstrap import profiles, render_user_data
from nestcloud.cli import app
from nestcloud.errors import InputError, ProviderError, RefusedError
from nestcloud.provider import Capabilities, UserDataEnvelope

NAME = "mycloud"
# Linux user data for the "none" profile, as any provider gets it (l1check.py is shipped
# verbatim, so it is tens of KB raw and several KB gzipped).
PLAIN = render_user_data(UserDataEnvelope(limit_bytes=1 << 20, gzip=False), "ubuntu-24.04",
                         "none", provider_name=NAME)


def envelope(**kw: Any) -> UserDataEnvelope:
    return UserDataEnvelope(**{"limit_bytes": 4096, "gzip": False, **kw})


def render(env: UserDataEnvelope, os_alias: str = "ubuntu-24.04", hypervisor: str = "none",
           **kw: Any):
    return render_user_data(env, os_alias, hypervisor, provider_name=NAME, **kw)


def test_premise_plain_body_is_over_4096_and_gzips_under_12k():
    packed = gzip.compress(PLAIN.body, compresslevel=9, mtime=0)
    assert PLAIN.raw_size > 4096 and 4096 < len(packed) <= 12 * 1024


def test_over_its_limit_without_gzip_is_refused_naming_it():
    with pytest.raises(InputError) as exc:
        render(envelope())
    assert exc.value.exit_code == 2
    assert exc.value.message == (
        f"the user data is {PLAIN.raw_size} bytes, over the mycloud user-data limit of 4096 "
        "bytes (it cannot be gzipped: mycloud does not accept gzipped user data)")


def test_gzip_is_used_only_when_the_envelope_accepts_it():
    limit = 12 * 1024
    r = render(envelope(limit_bytes=limit, gzip=True))
    assert r.gzipped and r.size <= limit and r.limit == limit
    assert gzip.decompress(r.body) == PLAIN.body
    with pytest.raises(InputError, match="over the mycloud user-data limit of 12288 bytes "
                                         r"\(it cannot be gzipped"):
        render(envelope(limit_bytes=limit, gzip=False))


def test_too_big_even_gzipped():
    with pytest.raises(InputError, match="over the mycloud user-data limit of 4096 bytes even "
                                         "gzipped"):
        render(envelope(gzip=True))


def test_within_its_limit_it_gets_the_same_cloud_config_as_everyone():
    r = render(envelope(limit_bytes=PLAIN.raw_size))
    assert (r.kind, r.gzipped, r.limit, r.provider) == ("cloud-config", False,
                                                        PLAIN.raw_size, NAME)
    assert r.body == PLAIN.body and r.readiness == "console"
    assert r.body.startswith(b"#cloud-config\n")


def test_windows_is_refused_when_the_envelope_says_unsupported():
    with pytest.raises(RefusedError) as exc:
        render(envelope(limit_bytes=1 << 20), "windows-2022", "hyperv")
    assert exc.value.exit_code == 3
    assert exc.value.message == ("provider 'mycloud' cannot bootstrap a Windows L1 "
                                 "(windows-2022): its user-data envelope declares Windows "
                                 "delivery 'unsupported'")


@pytest.mark.parametrize("delivery, channel, head, readiness", [
    ("user-data", "tag", "<powershell>\n", f"tag:{profiles.TAG_L1}"),
    ("provider", "run-command", "# nestcloud: run by",
     "run-command:%ProgramData%\\" + profiles.WINDOWS_MARKER_FILE),
])
def test_windows_follows_the_declared_delivery_and_readiness(delivery, channel, head,
                                                             readiness):
    tagger = "function Set-NcTag([string]$Value) { Write-Output \"mycloud tag: $Value\" }"
    env = envelope(limit_bytes=1 << 20, windows=delivery, windows_readiness=channel,
                   windows_tag_script=tagger)
    r = render(env, "windows-2025", "wsl2")
    text = r.body.decode()
    assert r.kind == "powershell" and not r.gzipped and r.readiness == readiness
    assert text.startswith(head)
    assert f"$NcDelivery = '{delivery}'" in text
    assert tagger in text  # the provider's way of tagging, nothing of any cloud's own
    assert "169.254.169.254" not in text and "NcCloud" not in text
    assert text == profiles.WINDOWS_WRAPPERS[delivery](profiles.windows_script(env, "wsl2"))


def test_windows_without_a_tag_script_defines_a_harmless_set_nctag():
    env = envelope(limit_bytes=1 << 20, windows="provider", windows_readiness="run-command")
    text = render(env, "windows-2022", "hyperv").body.decode()
    assert "function Set-NcTag([string]$Value) { }" in text


def test_a_linux_report_script_runs_after_the_check_and_opens_its_channel():
    report = "curl -s -X PUT --data-binary @/var/lib/nestcloud/l1.json http://md/x"
    with pytest.raises(ProviderError, match="guest-attribute"):
        render(envelope(readiness="guest-attribute"), "ubuntu-24.04", "none")
    r = render(envelope(limit_bytes=1 << 20, readiness="guest-attribute",
                        linux_report_script=report),
               "ubuntu-24.04", "none")
    cfg = yaml.safe_load(r.body.decode())
    last = cfg["runcmd"][-1]
    assert last[:2] == ["sh", "-c"] and last[2].startswith("python3 ")
    assert "--profile none; rc=$?; (\n" + report + "\n); exit $rc" in last[2]
    assert r.readiness == "console"  # console() returns the marker it published
    # The step keeps the check's exit status, and the report runs either way.
    for check_rc in (0, 1):
        script = last[2].replace(last[2].split(";")[0], f"sh -c 'exit {check_rc}'", 1)
        script = script.replace(report, "echo reported # a comment")
        out = subprocess.run(["sh", "-c", script], capture_output=True, text=True)
        assert (out.returncode, out.stdout) == (check_rc, "reported\n")


def test_a_windows_script_over_the_limit_is_never_gzipped():
    with pytest.raises(InputError, match="cannot be gzipped: Windows does not unpack it"):
        render(envelope(windows="user-data", windows_readiness="tag", gzip=True),
               "windows-2022", "hyperv")


@pytest.mark.parametrize("os_alias, hypervisor, field, channel", [
    ("ubuntu-24.04", "none", "readiness", "guest-attribute"),
    ("ubuntu-24.04", "none", "readiness", "tag"),
    ("windows-2022", "hyperv", "windows_readiness", "console"),
])
def test_a_readiness_channel_the_l1_does_not_write_is_a_provider_error(os_alias, hypervisor,
                                                                       field, channel):
    env = envelope(**{"limit_bytes": 1 << 20, "windows": "user-data",
                      "windows_readiness": "tag", field: channel})
    with pytest.raises(ProviderError) as exc:
        render(env, os_alias, hypervisor)
    assert exc.value.exit_code == 1
    assert "provider 'mycloud' declares" in exc.value.message
    assert repr(channel) in exc.value.message


# --- through the CLI, found in the registry ------------------------------------------------

class Mycloud:
    """Only what `userdata` reads: the class attributes (nothing is made)."""

    name: ClassVar[str] = NAME
    capabilities: ClassVar[Capabilities] = Capabilities(
        user_data=UserDataEnvelope(limit_bytes=12 * 1024, gzip=False))
    options: ClassVar[tuple[()]] = ()


@pytest.fixture
def mycloud(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(registry._extra, NAME, Mycloud)


def invoke(*args: str):
    return CliRunner().invoke(app, ["userdata", "-p", NAME, *args])


def test_cli_renders_from_the_registered_envelope(mycloud: None, tmp_path):
    out = tmp_path / "ud"
    # The "none" profile is over 12 KiB raw, and this provider takes no gzip: refused, exit 2.
    r = invoke("--os", "debian-12", "--hypervisor", "none")
    assert r.exit_code == 2 and r.stdout == ""
    assert "over the mycloud user-data limit of 12288 bytes (it cannot be gzipped" in r.stderr
    # Windows: the envelope declares no Windows delivery: refused, exit 3.
    r = invoke("--os", "windows-2022", "--hypervisor", "hyperv")
    assert r.exit_code == 3
    assert r.stderr.startswith("error: provider 'mycloud' cannot bootstrap a Windows L1")
    # A roomier envelope: the bytes a launch would send, with its limit.
    Roomy = type("Roomy", (Mycloud,), {"capabilities": Capabilities(
        user_data=UserDataEnvelope(limit_bytes=1 << 20, gzip=False))})
    registry._extra[NAME] = Roomy  # the fixture's monkeypatch restores the registry
    r = invoke("--os", "debian-12", "--hypervisor", "none", "--out", str(out))
    assert r.exit_code == 0, r.stderr
    expected = render_user_data(Roomy.capabilities.user_data, "debian-12", "none",
                                provider_name=NAME)
    assert out.read_bytes() == expected.body
    assert r.stderr == (f"wrote {out} (cloud-config, {expected.size} bytes; mycloud limit "
                        f"{1 << 20})\n")
