"""The secret scan looks at what cloud-init would run and write, and never echoes content.

Every encoding and container cloud-init accepts is decoded before the scan (YAML escapes,
folded and !!binary scalars, merge keys, write_files encodings, MIME transfer encodings, a
BOM, a jinja header, #cloud-config-archive), gzip is unpacked with a cap, and more kinds of
secret are recognised. A finding names file, line and kind, and nothing of the file.
"""

from __future__ import annotations

import base64
import gzip
import random
import re
import string
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nestcloud.errors import InputError
from nestcloud.security import KINDS, refuse_secrets, scan_user_data

_rng = random.Random(23)
UPPER = string.ascii_uppercase + string.digits
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


def _rand(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


# Fake secrets, assembled at run time from a fixed seed: never real, never literal here.
AKIA = "AKIA" + _rand(UPPER, 16)
AWS_SECRET = _rand(B64, 40)
SESSION_TOKEN = "IQoJb3JpZ2luX2Vj" + _rand(B64, 340) + "=="
GLPAT = "glpat-" + _rand(ALNUM + "_-", 20)
SLACK = "xoxb-" + _rand(string.digits, 12) + "-" + _rand(string.digits, 12) + "-" + _rand(
    ALNUM, 24)
PASSWORD = "Pw" + _rand(ALNUM, 14) + "!"
PEM_BODY = [_rand(B64, 64) for _ in range(5)]
PEM = "\n".join(["-----BEGIN OPENSSH PRIVATE KEY-----", *PEM_BODY,
                 "-----END OPENSSH PRIVATE KEY-----"]) + "\n"
CREDENTIALS = f"[default]\naws_access_key_id = {AKIA}\n"


def b64(data: str | bytes) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return base64.b64encode(raw).decode()


def gz(data: str) -> bytes:
    return gzip.compress(data.encode(), mtime=0)


def kinds_lines(text: str) -> list[tuple[str, int]]:
    return [(f.kind, f.line) for f in scan_user_data(text)]


def assert_refused_without_content(text: str, kind: str, line: int) -> str:
    """refuse_secrets names file:line and kind, and no line of the file appears in it."""
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "ud.yaml")
    shown = str(info.value)
    assert f"ud.yaml:{line}:" in shown and f"({kind})" in shown, shown
    for secret in (AKIA[4:], AWS_SECRET, SESSION_TOKEN[16:40], GLPAT[6:], SLACK[5:], PASSWORD,
                   PEM_BODY[0], b64(PEM)[:30]):
        assert secret not in shown
    for src_line in text.splitlines():
        bare = src_line.strip()
        # Structure ("write_files:", a "#cloud-config-archive" header) may be named; no
        # line of content may appear.
        if len(bare) > 12 and not bare.startswith(("#cloud-config", "## template")):
            assert bare not in shown, bare
    return shown


# -- YAML: escapes, folded and literal strings, !!binary, merge keys ------------------------

YAML_CASES = {
    # A double-quoted \x escape: the file never holds "AKIA", cloud-init's YAML does.
    "escape-x": (f'#cloud-config\nruncmd:\n  - "export K=\\x41{AKIA[1:]}"\n',
                 "aws-access-key-id", 3),
    "escape-u": (f'#cloud-config\nruncmd:\n  - "export K=\\u0041{AKIA[1:]}"\n',
                 "aws-access-key-id", 3),
    # An escaped line break joins the two halves of the key id.
    "escaped-line-break": (f'#cloud-config\nruncmd:\n  - "export K={AKIA[:10]}\\\n'
                           f'    {AKIA[10:]}"\n', "aws-access-key-id", 3),
    # Folded: cloud-init runs "aws configure set aws_secret_access_key SECRET".
    "folded-aws-configure": ("#cloud-config\nruncmd:\n  - >-\n    aws configure set\n"
                             f"    aws_secret_access_key\n    {AWS_SECRET}\n",
                             "aws-secret-access-key", 3),
    "binary-scalar": ("#cloud-config\nwrite_files:\n  - path: /root/.ssh/id_ed25519\n"
                      f"    content: !!binary |\n      {b64(PEM)}\n", "private-key", 4),
    "binary-gzip-encoding": ("#cloud-config\nwrite_files:\n  - path: /root/.aws/credentials\n"
                             f"    encoding: gzip\n    content: !!binary {b64(gz(CREDENTIALS))}\n",
                             "aws-access-key-id", 5),
    "merge-key-encoding": ("#cloud-config\nx-defaults: &secret {encoding: b64, owner: root}\n"
                           "write_files:\n  - <<: *secret\n    path: /root/.ssh/id\n"
                           f"    content: {b64(PEM)}\n", "private-key", 6),
    "anchored-content": ("#cloud-config\nx-key: &k " + b64(PEM) + "\nwrite_files:\n"
                         "  - {path: /root/.ssh/id, encoding: base64, content: *k}\n",
                         "private-key", 2),  # where the encoded text is written
}


@pytest.mark.parametrize("text,kind,line", list(YAML_CASES.values()), ids=list(YAML_CASES))
def test_yaml_forms_are_read_as_cloud_init_reads_them(text: str, kind: str, line: int) -> None:
    assert kinds_lines(text) == [(kind, line)]
    assert_refused_without_content(text, kind, line)


@pytest.mark.parametrize("encoding", ["b64", "base64", "gz+b64", "gz+base64", "gzip+base64",
                                      "gzip+b64", "GZ+B64"])
def test_every_write_files_encoding_is_decoded(encoding: str) -> None:
    payload = gz(CREDENTIALS) if "gz" in encoding.lower() else CREDENTIALS.encode()
    text = (f"#cloud-config\nwrite_files:\n  - path: /root/.aws/credentials\n"
            f"    encoding: {encoding}\n    content: {b64(payload)}\n")
    [f] = scan_user_data(text)
    assert (f.kind, f.line) == ("aws-access-key-id", 5)
    assert f.where == f"write_files[0] (encoding {encoding.lower()}), decoded line 2"


# -- containers: BOM, jinja, archive, MIME ---------------------------------------------------

WRITE_B64 = ("write_files:\n  - path: /root/.ssh/id\n    encoding: b64\n"
             f"    content: {b64(PEM)}\n")

CONTAINER_CASES = {
    "bom": ("\ufeff#cloud-config\n" + WRITE_B64, "private-key", 5),
    "jinja-header": ("## template: jinja\n#cloud-config\n" + WRITE_B64, "private-key", 6),
    "cloud-config-archive": (
        "#cloud-config-archive\n- type: text/cloud-config\n  content: |\n"
        "    #cloud-config\n    write_files:\n      - path: /root/.ssh/id\n"
        f"        encoding: b64\n        content: {b64(PEM)}\n", "private-key", 3),
    "cloud-config-archive-bare-string": (
        f"#cloud-config-archive\n- \"#!/bin/sh\\nexport K=\\x41{AKIA[1:]}\\n\"\n",
        "aws-access-key-id", 2),
}


@pytest.mark.parametrize("text,kind,line", list(CONTAINER_CASES.values()),
                         ids=list(CONTAINER_CASES))
def test_containers_are_opened(text: str, kind: str, line: int) -> None:
    assert kinds_lines(text) == [(kind, line)]
    assert_refused_without_content(text, kind, line)


def _mime(cte: str, body: str, ctype: str = "text/x-shellscript") -> str:
    return ("Content-Type: multipart/mixed; boundary=\"B\"\nMIME-Version: 1.0\n\n"
            f"--B\nContent-Type: {ctype}; charset=\"us-ascii\"\n"
            f"Content-Transfer-Encoding: {cte}\n\n{body}\n--B--\n")


def test_mime_quoted_printable_part_is_decoded() -> None:
    # A soft line break ("=" at the end of a line) splits the key id in the raw text.
    body = f"#!/bin/sh\nexport K=3D{AKIA[:9]}=\n{AKIA[9:]}\n"
    text = _mime("quoted-printable", body)
    assert kinds_lines(text) == [("aws-access-key-id", 8)]
    [f] = scan_user_data(text)
    assert f.where == "MIME part 1 (text/x-shellscript, quoted-printable), decoded line 2"
    assert_refused_without_content(text, "aws-access-key-id", 8)


def test_mime_7bit_part_is_scanned_at_its_own_line() -> None:
    text = _mime("7bit", f"#!/bin/sh\necho hi\nexport K={AKIA}\n")
    assert kinds_lines(text) == [("aws-access-key-id", 10)]


def test_mime_base64_gzip_part_is_decoded() -> None:
    text = _mime("base64", b64(gz(f"#!/bin/sh\nexport K={AKIA}\n")), "application/x-gzip")
    assert kinds_lines(text) == [("aws-access-key-id", 8)]


def test_mime_base64_cloud_config_part_with_encoded_write_files() -> None:
    inner = "#cloud-config\n" + WRITE_B64
    text = _mime("base64", b64(inner), "text/cloud-config")
    [f] = scan_user_data(text)
    assert (f.kind, f.line) == ("private-key", 8)
    assert f.where == ("MIME part 1 (text/cloud-config, base64) > write_files[0] "
                       "(encoding b64), decoded line 1")


# -- bounded work: gzip is unpacked with a cap ------------------------------------------------


def test_a_gzip_bomb_is_refused_quickly_not_unpacked() -> None:
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    assert len(bomb) < 100_000
    text = (f"#cloud-config\nwrite_files:\n  - path: /x\n    encoding: gz+b64\n"
            f"    content: {b64(bomb)}\n")
    start = time.perf_counter()
    findings = scan_user_data(text)
    assert time.perf_counter() - start < 5.0
    assert [(f.kind, f.line) for f in findings] == [("unscannable", 5)]
    with pytest.raises(InputError, match=r"ud\.yaml:5:1: .*\(unscannable\)"):
        refuse_secrets(text, "ud.yaml")


def test_gzipped_user_data_bomb_is_refused_quickly() -> None:
    bomb = gzip.compress(b"A" * (64 * 1024 * 1024), compresslevel=9)
    start = time.perf_counter()
    with pytest.raises(InputError, match=r"unscannable"):
        refuse_secrets(bomb, "ud.gz")
    assert time.perf_counter() - start < 5.0


def test_nested_encodings_stop_at_a_depth_limit() -> None:
    text = f"#!/bin/sh\nexport K={AKIA}\n"
    for _ in range(12):  # a cloud-config writing a b64 cloud-config writing a b64 ...
        text = ("#cloud-config\nwrite_files:\n  - path: /x\n    encoding: b64\n"
                f"    content: {b64(text)}\n")
    start = time.perf_counter()
    findings = scan_user_data(text)
    assert time.perf_counter() - start < 5.0
    assert [f.kind for f in findings] == ["unscannable"]


# -- more kinds of secret --------------------------------------------------------------------

KIND_CASES = {
    "session-token-credentials-file": (f"[default]\naws_session_token = {SESSION_TOKEN}\n",
                                       "aws-session-token", 2),
    "session-token-env": (f"#!/bin/sh\nexport AWS_SESSION_TOKEN={SESSION_TOKEN}\n",
                          "aws-session-token", 2),
    "session-token-json": (f'{{"Credentials": {{"SessionToken": "{SESSION_TOKEN}"}}}}',
                           "aws-session-token", 1),
    "session-token-powershell": (f"$env:AWS_SESSION_TOKEN = '{SESSION_TOKEN}'",
                                 "aws-session-token", 1),
    "aws-configure-set": (f"#!/bin/sh\naws configure set aws_secret_access_key {AWS_SECRET}\n",
                          "aws-secret-access-key", 2),
    "aws-configure-set-profile": ("#!/bin/sh\naws configure set "
                                  f"profile.lab.aws_secret_access_key {AWS_SECRET}\n",
                                  "aws-secret-access-key", 2),
    "aws-configure-set-session": (f"aws configure set aws_session_token {SESSION_TOKEN}\n",
                                  "aws-session-token", 1),
    "gitlab-pat": (f"git clone https://oauth2:{GLPAT}@gitlab.example.com/g/r.git\n",
                   "gitlab-token", 1),
    "gitlab-env": (f"#!/bin/sh\n\nexport GITLAB_TOKEN={GLPAT}\n", "gitlab-token", 3),
    "powershell-env-secret": (f"<powershell>\n$env:AWS_SECRET_ACCESS_KEY = \"{AWS_SECRET}\"\n"
                              "</powershell>", "aws-secret-access-key", 2),
    "powershell-setenvironmentvariable": (
        "[Environment]::SetEnvironmentVariable('AWS_SECRET_ACCESS_KEY', "
        f"'{AWS_SECRET}', 'Machine')", "aws-secret-access-key", 1),
    "powershell-set-awscredential": (f"Set-AWSCredential -SecretKey {AWS_SECRET} "
                                     "-StoreAs default", "aws-secret-access-key", 1),
    "powershell-securestring": (f"$p = ConvertTo-SecureString '{PASSWORD}' -AsPlainText "
                                "-Force", "plaintext-password", 1),
    "powershell-securestring-pipe": (f"$p = \"{PASSWORD}\" | ConvertTo-SecureString "
                                     "-AsPlainText -Force", "plaintext-password", 1),
    "powershell-securestring-named": ("New-LocalUser lab -Password (ConvertTo-SecureString "
                                      f"-AsPlainText -Force -String '{PASSWORD}')",
                                      "plaintext-password", 1),
    "slack-token-by-detect-secrets": (f"#!/bin/sh\nSLACK={SLACK}\n", "slack-token", 2),
}


@pytest.mark.parametrize("text,kind,line", list(KIND_CASES.values()), ids=list(KIND_CASES))
def test_more_kinds_are_recognised(text: str, kind: str, line: int) -> None:
    assert kinds_lines(text) == [(kind, line)]
    assert kind in KINDS
    assert_refused_without_content(text, kind, line)


def test_set_awscredential_reports_key_id_and_secret() -> None:
    text = f"Set-AWSCredential -AccessKey {AKIA} -SecretKey {AWS_SECRET} -StoreAs lab\n"
    assert [f.kind for f in scan_user_data(text)] == ["aws-access-key-id",
                                                      "aws-secret-access-key"]


PASSES = {
    "session-token-reference": "export AWS_SESSION_TOKEN=$(cat /run/token)\n"
                               "$env:AWS_SESSION_TOKEN = $token\n",
    "aws-configure-set-region": "aws configure set region us-east-1\n"
                                "aws configure set aws_secret_access_key $SECRET\n",
    "securestring-from-variable": "$p = ConvertTo-SecureString $plain -AsPlainText -Force\n"
                                  "$p = ConvertTo-SecureString \"$plain\" -AsPlainText -Force\n"
                                  "$s = Read-Host -AsSecureString\n",
    "securestring-encrypted": "$p = ConvertTo-SecureString $blob\n",
    "gitlab-prefix-alone": "see glpat- tokens in the docs\n",
    "jinja-template-references": "## template: jinja\n#cloud-config\n"
                                 "hostname: {{ v1.local_hostname }}\n",
}


@pytest.mark.parametrize("text", list(PASSES.values()), ids=list(PASSES))
def test_references_and_prose_pass(text: str) -> None:
    assert scan_user_data(text) == []


# -- messages never echo content -------------------------------------------------------------


def test_a_secret_next_to_a_key_id_is_never_printed() -> None:
    # Before: the excerpt redacted the key id and printed the rest of the line in full.
    other = "db-pass-" + _rand(ALNUM, 24)
    text = f"#!/bin/sh\nexport AWS_ACCESS_KEY_ID={AKIA} DB_PASSWORD={other}\n"
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "boot.sh")
    shown = str(info.value) + repr(info.value.to_dict())
    assert other not in shown and "DB_PASSWORD" not in shown and "export" not in shown
    assert "boot.sh:2:26: an AWS access key id (aws-access-key-id)" in shown


@settings(max_examples=60, deadline=None)
@given(before=st.lists(st.text(alphabet=string.ascii_letters + " =:#-_./", min_size=13,
                               max_size=40), max_size=5),
       neighbour=st.text(alphabet=ALNUM + "=_-", min_size=13, max_size=40),
       secret=st.sampled_from([AKIA, GLPAT, f"aws_secret_access_key={AWS_SECRET}"]))
def test_no_message_line_holds_file_content(before: list[str], neighbour: str,
                                            secret: str) -> None:
    text = "\n".join([*before, f"{neighbour} {secret} {neighbour[::-1]}"]) + "\n"
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "f.sh")
    shown = str(info.value)
    shape = re.compile(r"  f\.sh:\d+:\d+: [^()]+ \([a-z0-9-]+\)")
    for line in shown.splitlines()[1:]:
        assert shape.fullmatch(line) or line.startswith("  hint:"), line
    assert neighbour not in shown and neighbour[::-1] not in shown
