"""The user-data secret scanner: what it must catch, what it must let through, what it shows."""

from __future__ import annotations

import gzip
import random
import string

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestcloud.errors import InputError
from nestcloud.security import KINDS, refuse_secrets, scan_user_data

# Fake secrets are assembled at run time (never real, never literal in the repo) from a fixed
# seed so failures are reproducible.
_rng = random.Random(7)
UPPER = string.ascii_uppercase + string.digits
B64 = string.ascii_letters + string.digits + "+/"


def _rand(alphabet: str, n: int) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


AKIA = "AKIA" + _rand(UPPER, 16)
ASIA = "ASIA" + _rand(UPPER, 16)
AWS_SECRET = _rand(B64, 40)
STORAGE_KEY = _rand(B64, 86) + "=="
ENTRA_SECRET = _rand(string.ascii_letters, 3) + "8Q~" + _rand(string.ascii_letters + "_-.", 34)
LEGACY_SECRET = _rand(string.ascii_letters + string.digits, 32)
GHP = "ghp_" + _rand(string.ascii_letters + string.digits, 36)
GH_PAT = "github_pat_" + _rand(string.ascii_letters + string.digits, 22) + "_" + _rand(
    string.ascii_letters + string.digits, 59)


def _pem_body(lines: int = 5) -> list[str]:
    return [_rand(B64, 64) for _ in range(lines)] + [_rand(B64, 20) + "=="]


def _pem(label: str, body: list[str] | None = None, indent: str = "") -> str:
    body = body or _pem_body()
    return "\n".join([f"{indent}-----BEGIN {label}-----", *(indent + b for b in body),
                      f"{indent}-----END {label}-----"])


PEM_BODY = _pem_body()
SSH_PUB = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI" + _rand(B64, 43) + " alice@laptop"
RSA_PUB = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQ" + _rand(B64, 300) + " bob@ci"


# -- what must be caught ------------------------------------------------------------------

CAUGHT = [
    # (id, text, expected kind, expected line, the secret that must never be echoed)
    ("aws-key-id-env", f"#!/bin/sh\nexport AWS_ACCESS_KEY_ID={AKIA}\n", "aws-access-key-id",
     2, AKIA[4:]),
    ("aws-sts-key-id", f"#cloud-config\nruncmd:\n  - echo {ASIA} > /tmp/k\n",
     "aws-access-key-id", 3, ASIA[4:]),
    ("aws-secret-credentials-file",
     f"write_files:\n  - path: /root/.aws/credentials\n    content: |\n      [default]\n"
     f"      aws_secret_access_key = {AWS_SECRET}\n", "aws-secret-access-key", 5, AWS_SECRET),
    ("aws-secret-env-quoted", f'AWS_SECRET_ACCESS_KEY="{AWS_SECRET}"', "aws-secret-access-key",
     1, AWS_SECRET),
    ("aws-secret-json", f'{{"AccessKey": {{"SecretAccessKey": "{AWS_SECRET}"}}}}',
     "aws-secret-access-key", 1, AWS_SECRET),
    ("azure-storage-conn",
     "setx CONN \"DefaultEndpointsProtocol=https;AccountName=labdata;"
     f"AccountKey={STORAGE_KEY};EndpointSuffix=core.windows.net\"",
     "azure-storage-key", 1, STORAGE_KEY),
    ("azure-client-secret-env", f"line one\n$env:AZURE_CLIENT_SECRET='{LEGACY_SECRET}'",
     "azure-client-secret", 2, LEGACY_SECRET),
    ("azure-client-secret-json", f'{{\n  "clientSecret": "{LEGACY_SECRET}"\n}}',
     "azure-client-secret", 2, LEGACY_SECRET),
    ("azure-client-secret-flag", f"az login --service-principal --client-secret {LEGACY_SECRET}",
     "azure-client-secret", 1, LEGACY_SECRET),
    ("azure-entra-secret-shape", f"x\ny\n  PASS={ENTRA_SECRET}\n", "azure-client-secret", 3,
     ENTRA_SECRET),
    ("gcp-sa-json-one-line",
     '{"type": "service_account", "project_id": "p", "private_key_id": "abc", '
     '"private_key": "-----BEGIN PRIVATE KEY-----\\n' + "\\n".join(PEM_BODY)
     + '\\n-----END PRIVATE KEY-----\\n", "client_email": "x@p.iam.gserviceaccount.com"}',
     "gcp-service-account-key", 1, PEM_BODY[0]),
    ("pem-rsa", "#!/bin/bash\ncat > /root/id <<EOF\n" + _pem("RSA PRIVATE KEY", PEM_BODY)
     + "\nEOF\n", "private-key", 3, PEM_BODY[0]),
    ("pem-pkcs8-indented-cloud-config",
     "#cloud-config\nwrite_files:\n  - path: /etc/k.pem\n    content: |\n"
     + _pem("PRIVATE KEY", PEM_BODY, indent="      "), "private-key", 5, PEM_BODY[0]),
    ("pem-openssh", _pem("OPENSSH PRIVATE KEY", PEM_BODY), "private-key", 1, PEM_BODY[0]),
    ("pem-ec", "\n\n" + _pem("EC PRIVATE KEY", PEM_BODY), "private-key", 3, PEM_BODY[0]),
    ("pem-encrypted-legacy",
     "-----BEGIN RSA PRIVATE KEY-----\nProc-Type: 4,ENCRYPTED\nDEK-Info: AES-128-CBC,00FF\n\n"
     + "\n".join(PEM_BODY) + "\n-----END RSA PRIVATE KEY-----", "private-key", 1, PEM_BODY[0]),
    ("pgp-private", _pem("PGP PRIVATE KEY BLOCK", ["", *PEM_BODY]), "private-key", 1,
     PEM_BODY[0]),
    ("github-classic", f"git clone https://{GHP}@github.com/org/repo", "github-token", 1,
     GHP[4:]),
    ("github-fine-grained", f"\nGH_TOKEN={GH_PAT}", "github-token", 2, GH_PAT[11:]),
]


@pytest.mark.parametrize("text,kind,line,secret", [c[1:] for c in CAUGHT],
                         ids=[c[0] for c in CAUGHT])
def test_caught_with_kind_and_line_and_nothing_of_the_file(text: str, kind: str, line: int,
                                                           secret: str) -> None:
    findings = scan_user_data(text)
    assert [(f.kind, f.line) for f in findings] == [(kind, line)]
    f = findings[0]
    assert f.where == "" and secret not in repr(f)
    assert f.description == KINDS[kind]


@pytest.mark.parametrize("text,kind,line,secret", [c[1:] for c in CAUGHT],
                         ids=[c[0] for c in CAUGHT])
def test_refuse_names_source_line_kind_and_never_the_secret(text: str, kind: str, line: int,
                                                            secret: str) -> None:
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "boot.sh")
    err = info.value
    shown = str(err)
    assert err.exit_code == 2
    assert shown.startswith(f"boot.sh: user data contains {KINDS[kind]}; refusing to send it")
    assert f"boot.sh:{line}:" in shown and f"({kind})" in shown
    assert secret not in shown and secret not in repr(err.to_dict())
    for way in ("instance profile", "managed identity", "Key Vault", "Secrets Manager"):
        assert way in shown


def test_the_column_points_at_the_secret_and_the_line_is_not_quoted() -> None:
    text = f"  export AWS_ACCESS_KEY_ID={AKIA} # ci\n"
    [f] = scan_user_data(text)
    assert f.column == len("  export AWS_ACCESS_KEY_ID=") + 1
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "ci.sh")
    assert info.value.message == ("ci.sh: user data contains an AWS access key id; refusing "
                                  "to send it\n  ci.sh:1:28: an AWS access key id "
                                  "(aws-access-key-id)")


def test_two_secrets_on_one_line_are_both_found_and_neither_shown() -> None:
    text = f"aws_access_key_id={AKIA} aws_secret_access_key={AWS_SECRET}"
    findings = scan_user_data(text)
    assert [(f.kind, f.column) for f in findings] == [("aws-access-key-id", 19),
                                                      ("aws-secret-access-key", 40)]
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "x")
    assert AKIA[4:] not in str(info.value) and AWS_SECRET not in str(info.value)


def test_refuse_lists_every_finding() -> None:
    text = f"A={AKIA}\n" + _pem("OPENSSH PRIVATE KEY") + f"\nT={GHP}\n"
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "lab/user-data.yaml")
    shown = str(info.value)
    assert shown.splitlines()[0] == ("lab/user-data.yaml: user data contains 3 secret(s); "
                                     "refusing to send it")
    assert "lab/user-data.yaml:1:3: an AWS access key id (aws-access-key-id)" in shown
    assert "lab/user-data.yaml:2:1: a PEM/OpenSSH private key (private-key)" in shown
    assert "lab/user-data.yaml:10:3: a GitHub token (github-token)" in shown


def test_gzipped_bytes_are_scanned_like_text() -> None:
    raw = gzip.compress(f"#!/bin/sh\nexport K={AKIA}\n".encode())
    with pytest.raises(InputError, match=r"ud\.gz:2:"):
        refuse_secrets(raw, "ud.gz")
    refuse_secrets(gzip.compress(b"#!/bin/sh\necho hi\n"), "ok.gz")  # no error


def test_long_one_line_json_gives_a_short_message() -> None:
    text = '{"padding": "' + "p" * 500 + f'", "SecretAccessKey": "{AWS_SECRET}", "x": 1}}'
    [f] = scan_user_data(text)
    assert (f.kind, f.line, f.column) == ("aws-secret-access-key", 1, 13 + 500 + 4 + 1)
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "k.json")
    assert "ppp" not in str(info.value) and len(info.value.message) < 200


# -- what must pass -----------------------------------------------------------------------

PASSES = [
    ("ssh-authorized-keys",
     f"#cloud-config\nssh_authorized_keys:\n  - {SSH_PUB}\n  - {RSA_PUB}\n"),
    ("public-key-pem", _pem("PUBLIC KEY")),
    ("rsa-public-key-pem", _pem("RSA PUBLIC KEY")),
    ("certificate", "#cloud-config\nca_certs:\n  trusted:\n    - |\n"
     + _pem("CERTIFICATE", indent="      ")),
    ("pgp-public", _pem("PGP PUBLIC KEY BLOCK", ["", *_pem_body()])),
    ("header-only-grep", 'if grep -q -- "-----BEGIN OPENSSH PRIVATE KEY-----" "$f"; then\n'
     '  echo "refusing to copy a private key"\nfi\n'),
    ("env-references", "AWS_SECRET_ACCESS_KEY=$AWS_SECRET_ACCESS_KEY\n"
     "AZURE_CLIENT_SECRET=${AZURE_CLIENT_SECRET}\n"
     "client_secret: ${{ secrets.AZURE_CLIENT_SECRET }}\n"
     'clientSecret: "<your-client-secret>"\n'
     "client_secret=os.environ.get('AZURE_CLIENT_SECRET_VALUE_2')\n"
     "aws_secret_access_key = %AWS_SECRET%\n"),
    ("prose", "# Never put the client secret in user data; store the client secret in Key Vault.\n"
     "# Use AccountKey= only from Key Vault.\n"),
    ("hashes-and-ids", "sha1=da39a3ee5e6b4b0d3255bfef95601890afd80709\n"
     "sha256=e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855\n"
     "ami=ami-0abcdef1234567890 AKIAshort AKIA" + "a" * 16 + "\n"),
    ("key-id-inside-longer-token", "XAKIA" + _rand(UPPER, 16) + " AKIA" + _rand(UPPER, 17)),
    ("plain-cloud-config", "#cloud-config\npackages: [qemu-kvm, libvirt-daemon-system]\n"
     "runcmd:\n  - [sh, -c, 'echo NESTCLOUD-READY > /dev/console']\n"),
    ("powershell", "<powershell>\nInstall-WindowsFeature -Name Hyper-V -IncludeManagementTools"
     " -Restart\n</powershell>\n<persist>true</persist>"),
]


@pytest.mark.parametrize("text", [p[1] for p in PASSES], ids=[p[0] for p in PASSES])
def test_public_and_harmless_material_passes(text: str) -> None:
    assert scan_user_data(text) == []
    refuse_secrets(text, "user-data")  # does not raise


# -- properties ---------------------------------------------------------------------------

_benign_line = st.text(alphabet=string.ascii_lowercase + " =:#-_./", max_size=60)


@settings(max_examples=75, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(before=st.lists(_benign_line, max_size=8), after=st.lists(_benign_line, max_size=8),
       prefix=st.sampled_from(["AKIA", "ASIA"]),
       body=st.text(alphabet=UPPER, min_size=16, max_size=16),
       lead=st.sampled_from(["", "export K=", "  - ", "key: ", '"id": "']))
def test_any_key_id_anywhere_is_found_on_its_line_and_never_echoed(
        before: list[str], after: list[str], prefix: str, body: str, lead: str) -> None:
    text = "\n".join([*before, f"{lead}{prefix}{body}", *after])
    findings = scan_user_data(text)
    assert [(f.kind, f.line) for f in findings] == [("aws-access-key-id", len(before) + 1)]
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "f")
    assert body not in str(info.value)


@settings(max_examples=75, deadline=None)
@given(text=st.text(max_size=400))
def test_scanner_never_crashes_and_never_echoes_a_finding(text: str) -> None:
    for f in scan_user_data(text):
        assert f.kind in KINDS and f.line >= 1 and f.column >= 1
        assert f.line <= text.count("\n") + 1


# -- bounded work -------------------------------------------------------------------------

ADVERSARIAL = {
    # This one made the first PEM-body regex backtrack for minutes (64 KB: Azure's cap).
    "pem-header-then-header-lines": "-----BEGIN PRIVATE KEY-----\n" + "a: b \n" * 10000,
    # Near misses of every rule, repeated.
    "assignment-then-spaces": "client_secret" + " " * 60000 + "x",
    "pem-header-spaces": "-----BEGIN PRIVATE KEY-----" + " " * 60000 + "!",
    "pem-escaped-newlines": "-----BEGIN PRIVATE KEY-----" + "\\n" * 30000 + "!",
    "pem-headers-only": "-----BEGIN PRIVATE KEY-----\n" * 2000,
    "gcp-no-end": '"private_key": "-----BEGIN ' + "A " * 30000,
    "key-ids-glued": "AKIA" * 16000,
    "secrets-one-short": ("aws_secret_access_key=" + "A" * 39 + "\n") * 1000,
    "account-key-spaces": "AccountKey" + " " * 60000 + "=",
    "client-secret-flag-spaces": "--client-secret" + " " * 60000,
}


@pytest.mark.parametrize("text", list(ADVERSARIAL.values()), ids=list(ADVERSARIAL))
def test_scanning_64k_of_crafted_input_is_fast(text: str) -> None:
    import time

    start = time.perf_counter()
    scan_user_data(text)
    assert time.perf_counter() - start < 2.0


# -- what cloud-init decodes is scanned too -----------------------------------------------


def _b64(data: bytes) -> str:
    import base64

    return base64.b64encode(data).decode()


def test_base64_write_files_content_is_decoded_and_scanned() -> None:
    key = _pem("OPENSSH PRIVATE KEY", PEM_BODY).encode()
    text = ("#cloud-config\npackages: [qemu-kvm]\nwrite_files:\n"
            "  - path: /etc/motd\n    content: hello\n"
            f"  - path: /root/.ssh/id_ed25519\n    encoding: b64\n    content: {_b64(key)}\n")
    [f] = scan_user_data(text)
    assert (f.kind, f.line) == ("private-key", 8)
    assert f.where == "write_files[1] (encoding b64), decoded line 1"
    with pytest.raises(InputError) as info:
        refuse_secrets(text, "cloud.yaml")
    assert ("  cloud.yaml:8:1: a PEM/OpenSSH private key (private-key) in write_files[1] "
            "(encoding b64), decoded line 1\n") in str(info.value)
    assert PEM_BODY[0] not in str(info.value) and _b64(key)[:40] not in str(info.value)


def test_gzip_base64_write_files_content_is_decoded_and_scanned() -> None:
    payload = _b64(gzip.compress(f"[default]\naws_access_key_id = {AKIA}\n".encode()))
    text = ("#cloud-config\nwrite_files:\n  - path: /root/.aws/credentials\n"
            f"    encoding: gz+b64\n    content: |\n      {payload}\n")
    [f] = scan_user_data(text)
    assert (f.kind, f.line) == ("aws-access-key-id", 5)
    assert f.where == "write_files[0] (encoding gz+b64), decoded line 2"


def test_encoded_public_material_and_bad_base64_pass() -> None:
    text = ("#cloud-config\nwrite_files:\n"
            f"  - path: /root/.ssh/authorized_keys\n    encoding: b64\n    content: "
            f"{_b64(SSH_PUB.encode())}\n"
            "  - path: /x\n    encoding: base64\n    content: '%%% not base64 %%%'\n"
            "  - path: /y\n    encoding: gz+b64\n    content: aGVsbG8=\n"
            "  - {path: /z, encoding: b64}\n  - just a string\n")
    assert scan_user_data(text) == []


def test_mime_multipart_base64_parts_are_decoded_and_scanned() -> None:
    script = f"#!/bin/sh\necho ok\nexport GH_TOKEN={GHP}\n".encode()
    inner_config = ("#cloud-config\nwrite_files:\n  - path: /k\n    encoding: b64\n"
                    f"    content: {_b64(_pem('RSA PRIVATE KEY', PEM_BODY).encode())}\n")
    text = ("Content-Type: multipart/mixed; boundary=\"XYZ\"\nMIME-Version: 1.0\n\n"
            "--XYZ\nContent-Type: text/cloud-config; charset=\"us-ascii\"\n"
            "Content-Transfer-Encoding: base64\n\n"
            f"{_b64(inner_config.encode())}\n"
            "--XYZ\nContent-Type: text/x-shellscript; charset=\"us-ascii\"\n"
            "Content-Transfer-Encoding: base64\n\n"
            f"{_b64(script)}\n--XYZ--\n")
    findings = scan_user_data(text)
    assert [(f.kind, f.line) for f in findings] == [("private-key", 8), ("github-token", 13)]
    assert [f.where for f in findings] == [
        "MIME part 1 (text/cloud-config, base64) > write_files[0] (encoding b64), "
        "decoded line 1",
        "MIME part 2 (text/x-shellscript, base64), decoded line 3"]
