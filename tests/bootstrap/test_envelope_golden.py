"""Byte-identical user data for the built-in providers: any change to what an L1 receives
must be deliberate.

The golden file (fixtures/rendered_golden.json) was first written by the renderer as it was
when it still knew AWS and Azure by name (``LIMITS``, ``provider == "aws"``), to prove that
rendering from each provider's declared ``UserDataEnvelope`` sends exactly the same bytes,
gzip decision, limit, parts and readiness for every OS x hypervisor, with and without the
user's data. A deliberate change to the bootstrap (issue 14: the speed-bounded KVM smoke test,
the vendor-matched modprobe, the kvm profile without Recommends) regenerates it with

    python -m tests.bootstrap.test_envelope_golden --write

and the commit says what changed and why (which fields, which cases).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import pytest

from nestcloud.oses import HYPERVISORS, OSES

GOLDEN = Path(__file__).parent / "fixtures" / "rendered_golden.json"

_USER_CC = "#cloud-config\npackages: [htop]\nruncmd:\n  - echo mine\n"
_USER_SH = "#!/bin/sh\necho mine\n"
_USER_PS = "<powershell>\nWrite-Output mine\n</powershell>\n"
_BIG = "".join(f"#{i:05d} {'abcdefghij' * 4}\n" for i in range(600))  # gzips under 16 KiB


def _cases() -> dict[str, tuple[str, str, str, dict[str, Any]]]:
    cases: dict[str, tuple[str, str, str, dict[str, Any]]] = {}
    for prov in ("aws", "azure"):
        for o, info in OSES.items():
            for h in HYPERVISORS:
                if h not in info.hypervisors:
                    continue
                cases[f"{prov}/{o}/{h}"] = (prov, o, h, {})
                if info.family == "windows":
                    cases[f"{prov}/{o}/{h}/user-ps"] = (prov, o, h, {"extra": _USER_PS})
                    continue
                cases[f"{prov}/{o}/{h}/user-cc"] = (prov, o, h, {"extra": _USER_CC})
                cases[f"{prov}/{o}/{h}/user-sh"] = (prov, o, h, {"extra": _USER_SH})
                cases[f"{prov}/{o}/{h}/big"] = (prov, o, h, {"extra": "#!/bin/sh\n" + _BIG})
                if h == "kvm":
                    # over Azure's 65535 too: gzipped on both
                    cases[f"{prov}/{o}/{h}/huge"] = (prov, o, h,
                                                      {"extra": "#!/bin/sh\n" + _BIG * 3})
                    cases[f"{prov}/{o}/{h}/l2-hugepages"] = (
                        prov, o, h, {"l2_smoke": True, "hugepages": 64})
    return cases


CASES = _cases()


def _render(prov: str, o: str, h: str, kw: dict[str, Any]) -> Any:
    from nestcloud.bootstrap import render_user_data

    from nestcloud.provider import capabilities_of

    return render_user_data(capabilities_of(prov).user_data, o, h, provider_name=prov, **kw)


def test_the_golden_file_covers_every_case() -> None:
    assert sorted(json.loads(GOLDEN.read_text())) == sorted(CASES)


@pytest.mark.parametrize("key", sorted(CASES))
def test_rendering_is_byte_identical_to_before(key: str) -> None:
    prov, o, h, kw = CASES[key]
    r = _render(prov, o, h, kw)
    got = {"sha256": hashlib.sha256(r.body).hexdigest(), "kind": r.kind,
           "gzipped": r.gzipped, "raw_size": r.raw_size, "limit": r.limit,
           "parts": list(r.parts), "readiness": r.readiness, "provider": r.provider}
    assert got == json.loads(GOLDEN.read_text())[key]


def _current() -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key in sorted(CASES):
        prov, o, h, kw = CASES[key]
        r = _render(prov, o, h, kw)
        out[key] = {"sha256": hashlib.sha256(r.body).hexdigest(), "kind": r.kind,
                    "gzipped": r.gzipped, "raw_size": r.raw_size, "limit": r.limit,
                    "parts": list(r.parts), "readiness": r.readiness, "provider": r.provider}
    return out


if __name__ == "__main__":
    import sys

    if sys.argv[1:] != ["--write"]:
        sys.exit("usage: python -m tests.bootstrap.test_envelope_golden --write")
    GOLDEN.write_text(json.dumps(_current(), indent=1, sort_keys=True))
