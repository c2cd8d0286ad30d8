"""Secret scanning for user data: refuse to ship credentials inside a VM's user data.

User data is not a secret store. On EC2 it is readable by every process on the instance
through the metadata service and by anyone allowed ``ec2:DescribeInstanceAttribute``; on
Azure custom data lands on the VM's disk. So before a launch sends the user's ``--user-data``
we look for the credentials people most often paste there by mistake and refuse, naming the
file, line and kind, and never echoing the secret itself.

The rules aim for few false positives: public material (``ssh-rsa AAAA...`` keys,
``BEGIN PUBLIC KEY``, ``BEGIN CERTIFICATE``), variable references (``$AZURE_CLIENT_SECRET``,
``${{ secrets.X }}``, ``<your-secret>``) and bare PEM headers without a key body pass.
"""

from __future__ import annotations

import gzip
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from nestcloud.errors import InputError

__all__ = ["KINDS", "SecretFinding", "refuse_secrets", "scan_user_data"]

#: Kind id -> what the user is told was found.
KINDS: dict[str, str] = {
    "aws-access-key-id": "an AWS access key id",
    "aws-secret-access-key": "an AWS secret access key",
    "azure-storage-key": "an Azure storage/connection-string account key",
    "azure-client-secret": "an Azure client secret",
    "gcp-service-account-key": "a GCP service-account private key",
    "private-key": "a PEM/OpenSSH private key",
    "github-token": "a GitHub token",
}

_REDACTED = "[REDACTED]"
_EXCERPT_MAX = 120


@dataclass(frozen=True)
class SecretFinding:
    """One secret found: its kind, 1-based line and column, and a redacted excerpt."""

    kind: str
    line: int
    column: int
    excerpt: str

    @property
    def description(self) -> str:
        return KINDS.get(self.kind, self.kind)


@dataclass(frozen=True)
class _Hit:
    kind: str
    start: int  # offset in the text of the secret value (what gets redacted)
    end: int
    report_at: int  # offset whose line/column the finding reports


# -- the rules ----------------------------------------------------------------------------

# Access key ids: 4-letter prefix + 16 upper-case letters/digits. AKIA = long-term user key,
# ASIA = temporary STS key. The prefix itself is not secret and stays visible.
_AWS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)([A-Z0-9]{16})(?![A-Za-z0-9])")

# aws_secret_access_key = <40 chars> in any of the spellings of the CLI config, env vars,
# and the JSON of `aws iam create-access-key` / `aws sts ...` ("SecretAccessKey").
_AWS_SECRET = re.compile(
    r"""(?ix)(?:aws[_-]?)?secret[_-]?access[_-]?key["']?\s*[:=]\s*["']?
        (?-i:([A-Za-z0-9/+]{40}))(?![A-Za-z0-9/+=])""")

# Storage (AccountKey=) and Service Bus / Event Hubs (SharedAccessKey=) connection strings.
_AZURE_CONN = re.compile(r"(?i)(?:AccountKey|SharedAccessKey)\s*=\s*([A-Za-z0-9+/]{30,}={0,2})")

# Microsoft Entra client secrets in an obvious assignment (env var, CLI flag, JSON, YAML).
# "--client-secret VALUE" counts; prose such as "store the client secret in Key Vault" does not.
_AZURE_SECRET_ASSIGN = re.compile(
    r"""(?ix)(?:--client-secret(?:\s+|=)["']?
              |(?:azure[_-]?)?client[_-]?secret["']?(?:\s*[:=]\s*|\s+(?=["']))["']?)
        (?=([A-Za-z0-9_~.+/=@?*:-]+))\1(?![(\[])""")  # lookahead = no backtracking
# Current client secrets have a recognisable shape (3 chars, a digit, "Q~", 31-34 chars: the
# gitleaks "azure-ad-client-secret" rule), so they are found outside assignments too.
_AZURE_SECRET_SHAPE = re.compile(r"(?<![A-Za-z0-9_~.-])([A-Za-z0-9_~.]{3}[0-9]Q~"
                                 r"[A-Za-z0-9_~.-]{31,34})(?![A-Za-z0-9_~.-])")

# GCP service-account key JSON: "private_key": "-----BEGIN PRIVATE KEY-----\nMII...".
_GCP_KEY = re.compile(r'"private_key"\s*:\s*"(-----BEGIN [A-Z ]*PRIVATE KEY-----[^"]*)')

# PEM / OpenSSH / PGP private key headers. Public keys and certificates never say PRIVATE.
_PEM_HEADER = re.compile(r"-----BEGIN ((?:[A-Z0-9]+ )*)PRIVATE KEY( BLOCK)?-----")
# Key body lines; and RFC 1421 headers (Proc-Type:, DEK-Info:, Comment:) that may precede them.
_B64_LINE = re.compile(r"[A-Za-z0-9+/]{20,}={0,2}")
_PEM_HEADER_LINE = re.compile(r"[A-Za-z-]+:")
_PEM_LOOKAHEAD = 2048  # chars after the header searched for a body: bounded work per header
_LINE_BREAK = re.compile(r"\r?\n|\\r\\n|\\n")  # real, or escaped inside a JSON string

# GitHub classic (ghp_/gho_/ghu_/ghs_/ghr_ + 36) and fine-grained (github_pat_ + 82) tokens.
_GITHUB = re.compile(r"(?<![A-Za-z0-9_])(?:gh[pousr]_([A-Za-z0-9]{36})|"
                     r"github_pat_([A-Za-z0-9_]{60,255}))(?![A-Za-z0-9_])")

# Values in an assignment that are references or placeholders, not secrets.
_PLACEHOLDER = re.compile(r"""(?x)^(?:
    \$.*                    # $VAR, ${VAR}, $(cmd), ${{ secrets.X }}
  | %[A-Za-z_][A-Za-z0-9_]*%  # %VAR% (cmd.exe)
  | \{\{.*                  # {{ template }}
  | <.*                     # <your-secret>
  | (?:x+|\*+|\.+|-+)       # xxxx, ****, ...
  | (?:none|null|nil|true|false|changeme|redacted|secret|password|your[_-].*|example.*)
)$""", re.IGNORECASE)


def _aws_key_ids(text: str) -> Iterator[_Hit]:
    for m in _AWS_KEY_ID.finditer(text):
        yield _Hit("aws-access-key-id", m.start(1), m.end(1), m.start())


def _aws_secrets(text: str) -> Iterator[_Hit]:
    for m in _AWS_SECRET.finditer(text):
        yield _Hit("aws-secret-access-key", m.start(1), m.end(1), m.start())


def _azure_conn(text: str) -> Iterator[_Hit]:
    for m in _AZURE_CONN.finditer(text):
        yield _Hit("azure-storage-key", m.start(1), m.end(1), m.start())


def _azure_secrets(text: str) -> Iterator[_Hit]:
    for m in _AZURE_SECRET_ASSIGN.finditer(text):
        value = m.group(1)
        # Real client secrets are long random strings; code (os.environ.get(...)) and
        # placeholders are not.
        if (len(value) < 16 or _PLACEHOLDER.match(value) or not re.search(r"[0-9]", value)
                or not re.search(r"[A-Za-z]", value)):
            continue
        yield _Hit("azure-client-secret", m.start(1), m.end(1), m.start())
    for m in _AZURE_SECRET_SHAPE.finditer(text):
        yield _Hit("azure-client-secret", m.start(1), m.end(1), m.start(1))


def _gcp_keys(text: str) -> Iterator[_Hit]:
    for m in _GCP_KEY.finditer(text):
        yield _Hit("gcp-service-account-key", m.start(1), m.end(1), m.start())


def _pem_keys(text: str) -> Iterator[_Hit]:
    for m in _PEM_HEADER.finditer(text):
        # A header alone (a grep pattern, documentation) is not a key: require a body.
        body_end = _pem_body_end(text, m.end())
        if body_end is None:
            continue
        end = text.find("-----END", m.end())
        yield _Hit("private-key", m.end(), end if end != -1 else body_end, m.start())


def _pem_body_end(text: str, start: int) -> int | None:
    """Where the first base64 body line after a PEM header ends, if there is one.

    Lines may be real newlines or the escaped ``\\n`` of a JSON string; blank lines and
    RFC 1421 header lines are skipped. Procedural on purpose: a regex with nested repeats
    here backtracks exponentially on crafted input.
    """
    window = text[start:start + _PEM_LOOKAHEAD]
    prev = 0
    for sep in [*_LINE_BREAK.finditer(window), None]:
        a, b = (sep.start(), sep.end()) if sep is not None else (len(window), len(window))
        line = window[prev:a].strip()
        prev = b
        if not line or _PEM_HEADER_LINE.match(line):
            continue
        return start + a if _B64_LINE.match(line) else None
    return None


def _github(text: str) -> Iterator[_Hit]:
    for m in _GITHUB.finditer(text):
        group = 1 if m.group(1) is not None else 2
        yield _Hit("github-token", m.start(group), m.end(group), m.start())


_RULES: tuple[Callable[[str], Iterator[_Hit]], ...] = (
    _gcp_keys, _pem_keys, _aws_key_ids, _aws_secrets, _azure_conn, _azure_secrets, _github)


# -- scanning -----------------------------------------------------------------------------


def scan_user_data(text: str) -> list[SecretFinding]:
    """Every secret found in ``text``, in order of line; each excerpt is redacted.

    Also looks inside what cloud-init would decode: base64/gzip ``write_files`` contents of a
    cloud-config and base64 parts of a MIME multipart document (a key written with
    ``encoding: b64`` is still a key). Those findings carry the outer line and say where.
    """
    findings = _scan_plain(text)
    seen = {(f.kind, f.line) for f in findings}
    for line, where, inner in _encoded_payloads(text):
        for f in _scan_plain(inner):
            if (f.kind, line) in seen:
                continue
            seen.add((f.kind, line))
            findings.append(SecretFinding(kind=f.kind, line=line, column=1,
                                          excerpt=f"{where}, decoded line {f.line}: "
                                                  f"{f.excerpt}"))
    findings.sort(key=lambda f: (f.line, f.column))
    return findings


_DEPTH_LIMIT = 3  # encoded inside encoded inside ...: enough for real documents, bounded


def _encoded_payloads(text: str, depth: int = 0) -> Iterator[tuple[int, str, str]]:
    """(outer line, description, decoded text) for each encoded payload cloud-init unpacks."""
    if depth >= _DEPTH_LIMIT:
        return
    head = text.lstrip()[:200].lower()
    if head.startswith("#cloud-config"):
        yield from _write_files_payloads(text)
    elif "content-type: multipart/" in head or "mime-version:" in head:
        yield from _mime_payloads(text)


def _decode(data: str, encoding: str) -> str | None:
    import base64
    import binascii

    enc = encoding.strip().lower()
    try:
        raw = base64.b64decode(data, validate=False) if "b64" in enc or "base64" in enc \
            else data.encode("utf-8", "surrogateescape")
        if enc.startswith(("gz", "gzip")) or raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
    except (binascii.Error, ValueError, OSError, EOFError):
        return None
    return raw.decode("utf-8", errors="replace")


def _write_files_payloads(text: str) -> Iterator[tuple[int, str, str]]:
    import yaml

    try:
        root = yaml.compose(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    except yaml.YAMLError:
        return
    if not isinstance(root, yaml.MappingNode):
        return
    for key, value in root.value:
        if getattr(key, "value", None) != "write_files" or not isinstance(value,
                                                                           yaml.SequenceNode):
            continue
        for i, entry in enumerate(value.value):
            if not isinstance(entry, yaml.MappingNode):
                continue
            fields = {getattr(k, "value", None): v for k, v in entry.value}
            enc, content = fields.get("encoding"), fields.get("content")
            if not isinstance(enc, yaml.ScalarNode) or not isinstance(content, yaml.ScalarNode):
                continue
            if enc.value.strip().lower() in ("", "text/plain"):
                continue
            decoded = _decode(str(content.value), str(enc.value))
            if decoded is None:
                continue
            path = fields.get("path")
            label = (f"write_files[{i}] ({getattr(path, 'value', '?')}, "
                     f"encoding {enc.value})")
            yield content.start_mark.line + 1, label, decoded


def _mime_payloads(text: str) -> Iterator[tuple[int, str, str]]:
    import email
    import email.policy

    try:
        msg = email.message_from_string(text, policy=email.policy.compat32)
    except Exception:  # noqa: BLE001 - a malformed MIME document is simply not scanned deeper
        return
    for n, part in enumerate(msg.walk()):
        if part.is_multipart():
            continue
        if str(part.get("Content-Transfer-Encoding", "")).strip().lower() != "base64":
            continue
        raw_payload = part.get_payload()
        if not isinstance(raw_payload, str):
            continue
        decoded = _decode(raw_payload, "gz+b64" if "gzip" in str(
            part.get_content_type()) else "b64")
        if decoded is None:
            continue
        first = raw_payload.strip().splitlines()[0] if raw_payload.strip() else ""
        at = text.find(first) if first else -1
        line = text.count("\n", 0, at) + 1 if at >= 0 else 1
        label = f"MIME part {n} ({part.get_content_type()}, base64)"
        yield line, label, decoded
        for inner in _encoded_payloads(decoded, 1):
            yield line, f"{label} > {inner[1]}", inner[2]


def _scan_plain(text: str) -> list[SecretFinding]:
    hits: list[_Hit] = []
    for rule in _RULES:
        for hit in rule(text):
            # One secret, one finding: the first (most specific) rule that covers it wins,
            # e.g. a GCP key JSON is not reported again as a bare PEM key.
            if any(h.start <= hit.start < h.end or hit.start <= h.start < hit.end
                   for h in hits):
                continue
            hits.append(hit)
    hits.sort(key=lambda h: h.report_at)
    line_starts = [0] + [i + 1 for i, ch in enumerate(text) if ch == "\n"]
    return [_finding(text, line_starts, hit, hits) for hit in hits]


def _line_of(line_starts: list[int], offset: int) -> int:
    lo, hi = 0, len(line_starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if line_starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo  # 0-based index


def _finding(text: str, line_starts: list[int], hit: _Hit, hits: list[_Hit]) -> SecretFinding:
    idx = _line_of(line_starts, hit.report_at)
    start = line_starts[idx]
    end = line_starts[idx + 1] - 1 if idx + 1 < len(line_starts) else len(text)
    # Redact every secret touching this line, not only this finding's, so an excerpt never
    # leaks a neighbour.
    pieces: list[str] = []
    pos = start
    for h in sorted(hits, key=lambda h: h.start):
        if h.end <= start or h.start > end:
            continue
        a, b = max(h.start, start), min(h.end, end)
        if a < pos:
            continue
        pieces.append(text[pos:a])
        # A key body that starts on the next line still gets a marker after its header.
        pieces.append(_REDACTED if a < end else " " + _REDACTED)
        pos = b
    pieces.append(text[pos:end])
    line = "".join(pieces).strip()
    column = hit.report_at - start + 1
    if len(line) > _EXCERPT_MAX:
        # Keep the redaction marker in view on long (e.g. one-line JSON) lines.
        mark = line.find(_REDACTED)
        lo = max(0, min(mark - 40, len(line) - _EXCERPT_MAX))
        line = ("..." if lo else "") + line[lo:lo + _EXCERPT_MAX] + "..."
    return SecretFinding(kind=hit.kind, line=idx + 1, column=column, excerpt=line)


def _as_text(data: str | bytes) -> str:
    if isinstance(data, str):
        return data
    if data[:2] == b"\x1f\x8b":  # gzip: cloud-init unpacks it, so the secret would ship
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError):
            pass
    return data.decode("utf-8", errors="replace")


HOW_TO_PASS_SECRETS = (
    "user data is not a secret store (anything on the instance, and anyone allowed to "
    "describe it, can read it back): give the VM its cloud access through an instance "
    "profile (AWS IAM role) or a managed identity (Azure), and fetch other secrets at boot "
    "from a secret store (AWS Secrets Manager or SSM Parameter Store SecureString, "
    "Azure Key Vault)")


def refuse_secrets(data: str | bytes, source: str) -> None:
    """Raise InputError (exit 2) naming ``source``, line and kind if ``data`` holds a secret."""
    findings = scan_user_data(_as_text(data))
    if not findings:
        return
    lines = [f"{source}:{f.line}:{f.column}: {f.description} ({f.kind}): {f.excerpt}"
             for f in findings]
    head = (f"{source}: user data contains {len(findings)} secret(s); refusing to send it"
            if len(findings) > 1 else
            f"{source}: user data contains {findings[0].description}; refusing to send it")
    raise InputError(head + "\n" + "\n".join(f"  {line}" for line in lines),
                     hint=HOW_TO_PASS_SECRETS)
