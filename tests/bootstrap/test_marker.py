"""Reading the marker back from real-looking console output."""

from __future__ import annotations

import json

import pytest

from nestcloud.bootstrap.l1check import format_marker
from nestcloud.bootstrap.marker import Marker, clean_console, parse_marker, parse_payload

READY = {"status": "ready", "profile": "kvm", "failed": [], "v": 1,
         "checks": {"cpu_flag": {"ok": True, "detail": "vmx"},
                    "virt_host_validate": {"ok": False, "optional": True, "detail": "FAIL: x"}}}
FAILED = {"status": "failed", "profile": "kvm", "failed": ["cpu_flag", "kvm_smoke"], "v": 1,
          "checks": {"cpu_flag": {"ok": False, "detail": "no vmx or svm flag"},
                     "kvm_smoke": {"ok": False, "detail": "not run: /dev/kvm is missing"}}}

BOOT = (
    "[    0.000000] Linux version 6.8.0-1015-aws (buildd@lcy02-amd64-064)\r\n"
    "[  OK  ] Started \x1b[0;1;39mcloud-final.service\x1b[0m - Execute cloud user/final "
    "scripts.\r\n"
    "[   41.201337] cloud-init[977]: Reading package lists...\r\n"
)


def test_plain_line():
    m = parse_marker(format_marker(READY) + "\n")
    assert m == Marker.model_validate(READY)
    assert m.ready and m.failed_checks() == []


def test_journal_prefix_crlf_and_ansi_around_the_marker():
    text = (BOOT + "[   52.118000] cloud-init[977]: \x1b[1m" + format_marker(FAILED)
            + "\x1b[0m\r\n" + "Cloud-init v. 24.1 finished at Sun, 29 Nov 2026\r\n")
    m = parse_marker(text)
    assert m is not None and m.status == "failed"
    assert m.failed_checks() == ["cpu_flag: no vmx or svm flag",
                                 "kvm_smoke: not run: /dev/kvm is missing"]


def test_the_last_marker_wins():
    text = format_marker(FAILED) + "\n" + BOOT + format_marker(READY) + "\n"
    assert parse_marker(text).status == "ready"
    text = format_marker(READY) + "\n" + format_marker(FAILED) + "\n"
    assert parse_marker(text).status == "failed"


def test_truncated_last_marker_falls_back_to_the_earlier_complete_one():
    last = format_marker(FAILED)
    text = format_marker(READY) + "\n" + BOOT + last[: len(last) // 2]
    assert parse_marker(text).status == "ready"


def test_only_a_truncated_marker_is_none():
    line = format_marker(READY)
    assert parse_marker(BOOT + line[:-3]) is None


def test_kernel_message_spliced_into_the_line_is_ignored():
    line = format_marker(READY)
    spliced = line[:40] + "[   53.1] random: crng init done\n" + line[40:]
    assert parse_marker(BOOT + spliced) is None
    assert parse_marker(format_marker(FAILED) + "\n" + spliced).status == "failed"


def test_trailing_garbage_after_the_json_is_tolerated():
    assert parse_marker(format_marker(READY) + " \x07\x00junk}}").status == "ready"


def test_bare_cr_line_endings_and_nul_bytes():
    text = "noise\r" + format_marker(READY).replace("NESTCLOUD", "\x00NESTCLOUD") + "\rmore"
    assert parse_marker(text).status == "ready"


@pytest.mark.parametrize("text", [
    "",
    BOOT,
    "NESTCLOUD-L1\n",
    'NESTCLOUD-L1 {"status": "booting"}\n',            # not a final status
    'NESTCLOUD-L1 ["ready"]\n',                          # not an object
    'MARKER = "NESTCLOUD-L1 "  # a traceback quoting the source\n',
    'NESTCLOUD-L1 {"status": "ready", "checks": "x"}\n',  # wrong shape
    "\x1b[31mNESTCLOUD-L1 {\x1b[0m\n",
])
def test_no_marker(text):
    assert parse_marker(text) is None


def test_windows_tag_payload():
    tag = json.dumps({"status": "failed", "profile": "hyperv", "v": 1,
                      "checks": {"hypervisor_present": True, "vmms": True, "probe_vm": False}},
                     separators=(",", ":"))
    m = parse_payload(tag)
    assert m is not None and m.profile == "hyperv"
    assert m.failed_checks() == ["probe_vm"]
    assert parse_payload("not json") is None
    assert parse_payload('{"status": "ready"') is None


def test_failed_without_reasons_says_so():
    assert Marker(status="failed").failed_checks() == ["failed (no reason given)"]
    m = parse_payload('{"status": "failed", "error": "RuntimeError: boom"}')
    assert m.failed_checks() == ["check_error: RuntimeError: boom"]


def test_clean_console_strips_escapes():
    assert clean_console("a\x1b[0;32mb\x1b[0m\r\nc\rd\x1b]0;title\x07e") == ["ab", "c", "de"]
