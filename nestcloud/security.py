"""Secret scanning for user data: refuse to ship credentials inside a VM's user data.

User data is not a secret store. On EC2 it is readable by every process on the instance
through the metadata service and by anyone allowed ``ec2:DescribeInstanceAttribute``; on
Azure custom data lands on the VM's disk. So before a launch sends the user's ``--user-data``
we look for the credentials people most often paste there by mistake and refuse, naming the
file, line and kind, and never quoting the file.

The scan looks at what cloud-init would actually run and write, not only at the bytes of the
file: YAML as cloud-init's YAML reads it (escapes, folded and literal strings, ``!!binary``,
anchors and merge keys), ``write_files`` contents in every encoding cloud-init decodes (b64,
gzip, gz+b64), MIME parts in every transfer encoding (base64, quoted-printable, 7bit/8bit),
gzip wherever it appears, a leading BOM, a ``## template: jinja`` header and
``#cloud-config-archive`` items. Decompression and nesting are capped: what cannot be
unpacked within the caps is refused as "unscannable" rather than sent unchecked.

Kinds are recognised by our own rules where they need context (assignments in shell,
PowerShell, the AWS CLI, JSON and INI files; PEM bodies; GCP key files) and by the
token-shape plugins of detect-secrets (imported only when a scan runs). Public material
(``ssh-rsa AAAA...`` keys, ``BEGIN PUBLIC KEY``, certificates), variable references
(``$AZURE_CLIENT_SECRET``, ``${{ secrets.X }}``, ``<your-secret>``) and bare PEM headers
without a key body pass.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import itertools
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from nestcloud.errors import InputError

__all__ = ["KINDS", "SecretFinding", "refuse_secrets", "scan_user_data"]

#: Kind id -> what the user is told was found.
KINDS: dict[str, str] = {
    "aws-access-key-id": "an AWS access key id",
    "aws-secret-access-key": "an AWS secret access key",
    "aws-session-token": "an AWS session token",
    "azure-storage-key": "an Azure storage/connection-string account key",
    "azure-client-secret": "an Azure client secret",
    "gcp-service-account-key": "a GCP service-account private key",
    "private-key": "a PEM/OpenSSH private key",
    "github-token": "a GitHub token",
    "gitlab-token": "a GitLab token",
    "plaintext-password": "a password in plain text (ConvertTo-SecureString -AsPlainText)",
    "slack-token": "a Slack token or webhook URL",
    "stripe-key": "a Stripe live secret key",
    "openai-key": "an OpenAI API key",
    "pypi-token": "a PyPI API token",
    "sendgrid-key": "a SendGrid API key",
    "mailchimp-key": "a Mailchimp API key",
    "square-oauth-secret": "a Square OAuth secret",
    "telegram-bot-token": "a Telegram bot token",
    "discord-bot-token": "a Discord bot token",
    "url-password": "a password in a URL (scheme://user:password@host)",
    "unscannable": "content the scan cannot unpack (compressed or nested past its limits)",
}

# What one payload may decompress to, what all decoding in one scan may produce, and how deep
# encodings may nest (a b64 cloud-config inside a MIME part inside ...). User data itself is at
# most 16 KB (EC2) or 64 KB (Azure) once sent, so real documents stay far below these.
MAX_DECODED_BYTES = 2 * 1024 * 1024
MAX_TOTAL_DECODED_BYTES = 8 * 1024 * 1024
MAX_LAYERS = 4


@dataclass(frozen=True)
class SecretFinding:
    """One secret found: its kind, 1-based line and column in the file, and where inside that
    line's content it was once decoded (e.g. "write_files[0] (encoding b64), decoded line 2").

    Nothing here quotes the file: ``where`` is built from structure and recognised names only.
    """

    kind: str
    line: int
    column: int
    where: str = ""

    @property
    def description(self) -> str:
        return KINDS.get(self.kind, self.kind)


@dataclass(frozen=True)
class _Hit:
    kind: str
    start: int  # offset of the secret value in the scanned text
    end: int
    report_at: int  # offset whose line/column the finding reports


# -- our own rules ----------------------------------------------------------------------------

# Access key ids: 4-letter prefix + 16 upper-case letters/digits. AKIA = long-term user key,
# ASIA = temporary STS key. Bounded on both sides: inside a longer token it is something else.
_AWS_KEY_ID = re.compile(r"(?<![A-Za-z0-9])(?:AKIA|ASIA)([A-Z0-9]{16})(?![A-Za-z0-9])")

# How a value follows its name: `=`/`:` (env, INI, YAML, JSON), spaces (`aws configure set
# NAME VALUE`, PowerShell `-SecretKey VALUE`, a shell line continuation), or a comma between
# quoted arguments ([Environment]::SetEnvironmentVariable('NAME', 'VALUE', ...)). No nested
# repeats: every alternative is linear on long runs of spaces.
_SEP = r"""["']?(?:\s*[:=]\s*|[ \t]+|[ \t]*\\\r?\n[ \t]*|\s*,\s*)["']?"""

# aws_secret_access_key / AWS_SECRET_ACCESS_KEY / SecretAccessKey / -SecretKey / secret_key
# followed by 40 characters of the secret's alphabet.
_AWS_SECRET = re.compile(r"(?i)(?:aws[_-]?)?secret[_-]?(?:access[_-]?)?key" + _SEP
                         + r"(?-i:([A-Za-z0-9/+]{40}))(?![A-Za-z0-9/+=])")

# Session tokens of temporary credentials: aws_session_token (credentials file, `aws configure
# set`), AWS_SESSION_TOKEN / AWS_SECURITY_TOKEN (env), "SessionToken" (STS JSON),
# -SessionToken (AWS Tools for PowerShell). Long base64 strings.
_AWS_SESSION = re.compile(r"(?i)(?:aws[_-]?)?(?:session|security)[_-]?token" + _SEP
                          + r"(?-i:([A-Za-z0-9/+=]{64,}))")

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

# PowerShell turns a literal into a SecureString with -AsPlainText: the literal is the
# password. Both `ConvertTo-SecureString 'pw' -AsPlainText` and `'pw' | ConvertTo-...`.
_SECURESTRING = re.compile(r"(?i)\bConvertTo-SecureString\b([^\n;|]{0,300})")
_PIPED_SECURESTRING = re.compile(r"""(?i)(?:"([^"\n]{1,200})"|'([^'\n]{1,200})')[ \t]*\|[ \t]*"""
                                 r"ConvertTo-SecureString\b([^\n;|]{0,300})")
_QUOTED = re.compile(r"""(?:"([^"\n]{1,200})"|'([^'\n]{1,200})')""")
_AS_PLAIN_TEXT = re.compile(r"(?i)-AsPlainText\b")

# Values in an assignment that are references or placeholders, not secrets.
_PLACEHOLDER = re.compile(r"""(?x)^(?:
    \$.*                    # $VAR, ${VAR}, $(cmd), ${{ secrets.X }}
  | %[A-Za-z_][A-Za-z0-9_]*%  # %VAR% (cmd.exe)
  | \{\{.*                  # {{ template }}
  | <.*                     # <your-secret>
  | (?:x+|\*+|\.+|-+)       # xxxx, ****, ...
  | (?:none|null|nil|true|false|changeme|redacted|secret|pass|password|your[_-].*
     |example.*)
)$""", re.IGNORECASE)


def _aws_key_ids(text: str) -> Iterator[_Hit]:
    for m in _AWS_KEY_ID.finditer(text):
        yield _Hit("aws-access-key-id", m.start(1), m.end(1), m.start())


def _aws_secrets(text: str) -> Iterator[_Hit]:
    for m in _AWS_SECRET.finditer(text):
        yield _Hit("aws-secret-access-key", m.start(1), m.end(1), m.start())


def _aws_sessions(text: str) -> Iterator[_Hit]:
    for m in _AWS_SESSION.finditer(text):
        yield _Hit("aws-session-token", m.start(1), m.end(1), m.start())


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
    # Lazily: most headers are decided on their first line (thousands of headers in a row
    # must not each cost a whole window).
    for sep in itertools.chain(_LINE_BREAK.finditer(window), (None,)):
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


def _plaintext_passwords(text: str) -> Iterator[_Hit]:
    for m in _SECURESTRING.finditer(text):
        args = m.group(1)
        if not _AS_PLAIN_TEXT.search(args):
            continue
        q = _QUOTED.search(args)
        if q is not None:
            g = 1 if q.group(1) is not None else 2
            if not _PLACEHOLDER.match(q.group(g)):
                yield _Hit("plaintext-password", m.start(1) + q.start(g), m.start(1) + q.end(g),
                           m.start())
    for m in _PIPED_SECURESTRING.finditer(text):
        g = 1 if m.group(1) is not None else 2
        if _AS_PLAIN_TEXT.search(m.group(3)) and not _PLACEHOLDER.match(m.group(g)):
            yield _Hit("plaintext-password", m.start(g), m.end(g), m.start())


_RULES: tuple[Callable[[str], Iterator[_Hit]], ...] = (
    _gcp_keys, _pem_keys, _aws_key_ids, _aws_secrets, _aws_sessions, _azure_conn,
    _azure_secrets, _github, _plaintext_passwords)


# -- detect-secrets: token shapes ---------------------------------------------------------------

# Plugins that recognise a token by its shape, with the kind each reports. Left out: the
# keyword and entropy plugins (too many false positives on scripts: hashes, ids, prose), those
# whose patterns backtrack for minutes on one crafted line (IBM Cloud IAM; JWT and npm are
# quadratic), and ones that match public identifiers (Twilio SIDs, Artifactory, public IPs).
# Order matters where two overlap: a GitLab token in a URL is a GitLab token, not a URL password.
_DS_PLUGINS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("aws.AWSKeyDetector", "AWSKeyDetector", ("aws-access-key-id", "aws-secret-access-key")),
    ("azure_storage_key", "AzureStorageKeyDetector", ("azure-storage-key",)),
    ("github_token", "GitHubTokenDetector", ("github-token",)),
    ("gitlab_token", "GitLabTokenDetector", ("gitlab-token",)),
    ("slack", "SlackDetector", ("slack-token",)),
    ("stripe", "StripeDetector", ("stripe-key",)),
    ("openai", "OpenAIDetector", ("openai-key",)),
    ("pypi_token", "PypiTokenDetector", ("pypi-token",)),
    ("sendgrid", "SendGridDetector", ("sendgrid-key",)),
    ("mailchimp", "MailchimpDetector", ("mailchimp-key",)),
    ("square_oauth", "SquareOAuthDetector", ("square-oauth-secret",)),
    ("telegram_token", "TelegramBotTokenDetector", ("telegram-bot-token",)),
    ("discord", "DiscordBotTokenDetector", ("discord-bot-token",)),
    ("basic_auth", "BasicAuthDetector", ("url-password",)),
)
_DS_VALUE_GROUP = ("url-password", "aws-secret-access-key")
_ds_cache: list[tuple[str, re.Pattern[str]]] = []


def _ds_patterns() -> list[tuple[str, re.Pattern[str]]]:
    """(kind, pattern) from detect-secrets' plugins, loaded on the first scan (~0.1 s)."""
    if not _ds_cache:
        import importlib

        for module, cls, kinds in _DS_PLUGINS:
            # "module.Class" where the module shares its name with a cloud (the name is data).
            module = module.removesuffix(f".{cls}")
            plugin = getattr(importlib.import_module(f"detect_secrets.plugins.{module}"), cls)()
            for i, pattern in enumerate(plugin.denylist):
                _ds_cache.append((kinds[min(i, len(kinds) - 1)], pattern))
    return _ds_cache


def _detect_secrets(text: str) -> Iterator[_Hit]:
    for kind, pattern in _ds_patterns():
        for m in pattern.finditer(text):
            start, end = m.span()
            # A token glued to the end of a longer word is not that token ("XAKIA...").
            if start and text[start].isalnum() and text[start - 1].isalnum():
                continue
            if kind == "aws-access-key-id" and end < len(text) and text[end].isalnum():
                continue
            if kind in _DS_VALUE_GROUP and pattern.groups:
                # The pattern's group is the secret itself (a URL's password, an AWS secret
                # key after its name); elsewhere a group is only a prefix (glpat).
                if not m.group(1) or _PLACEHOLDER.match(m.group(1)):
                    continue
                start, end = m.span(1)
            yield _Hit(kind, start, end, m.start())


# -- decoding what cloud-init decodes -------------------------------------------------------------


class _TooBig(Exception):
    pass


_GZIP_MAGIC = b"\x1f\x8b"
_WS = re.compile(r"\s+")
_JINJA = re.compile(r"##[ \t]*template:[ \t]*jinja[^\n]*\n", re.IGNORECASE)
_BINARY_TAG = "tag:yaml.org,2002:binary"
# write_files `encoding` -> the steps cloud-init applies (cloudinit.config.cc_write_files):
# base64 first, then gunzip. Anything else is written as given.
_WRITE_FILES_ENCODINGS: dict[str, tuple[str, ...]] = {
    "b64": ("b64",), "base64": ("b64",), "gz": ("gz",), "gzip": ("gz",),
    "gz+b64": ("b64", "gz"), "gz+base64": ("b64", "gz"), "gzip+b64": ("b64", "gz"),
    "gzip+base64": ("b64", "gz")}
_CTES = ("7bit", "8bit", "binary", "base64", "quoted-printable", "x-uuencode", "uuencode")
_CTYPE = re.compile(r"[a-z0-9.+-]{1,40}/[a-z0-9.+-]{1,60}")


@dataclass(frozen=True)
class _Item:
    """Something inside a text that cloud-init reads out of it.

    ``nested``: a decoded payload, scanned as user data of its own (one layer deeper);
    otherwise a YAML scalar as cloud-init's YAML reads it, scanned in place."""

    line: int  # in the text it came from
    label: str
    data: str | bytes
    nested: bool
    literal_block: bool = False  # a `|` scalar: its lines follow its first line one to one


def _gunzip(data: bytes, limit: int) -> bytes | None:
    """Every gzip member of ``data``, at most ``limit`` bytes (else _TooBig); None if broken."""
    out: list[bytes] = []
    size = 0
    rest = data
    try:
        while rest[:2] == _GZIP_MAGIC:
            d = zlib.decompressobj(wbits=31)
            chunk = d.decompress(rest, limit + 1 - size)
            size += len(chunk)
            if size > limit or d.unconsumed_tail:
                raise _TooBig
            out.append(chunk)
            if not d.eof:
                return None
            rest = d.unused_data
    except zlib.error:
        return None
    return b"".join(out)


def _b64(data: str | bytes) -> bytes | None:
    try:
        return base64.b64decode(data, validate=False)
    except (binascii.Error, ValueError):
        return None


def _mime_items(text: str) -> Iterator[_Item]:
    import email
    import email.policy

    try:
        msg = email.message_from_string(text, policy=email.policy.compat32)
        parts = list(msg.walk())
    except Exception:  # noqa: BLE001 - a malformed MIME document is simply not scanned deeper
        return
    for n, part in enumerate(parts):
        if part.is_multipart():
            continue
        raw = part.get_payload()
        if not isinstance(raw, str):
            continue
        cte = str(part.get("Content-Transfer-Encoding", "7bit")).strip().lower()
        try:
            payload = part.get_payload(decode=True)  # base64, quoted-printable, uuencode...
        except Exception:  # noqa: BLE001
            continue
        if not isinstance(payload, bytes):
            continue
        first = raw.strip().splitlines()[0] if raw.strip() else ""
        at = text.find(first) if first else -1
        line = text.count("\n", 0, at) + 1 if at >= 0 else 1
        ctype = part.get_content_type()
        label = (f"MIME part {n} ({ctype if _CTYPE.fullmatch(ctype) else '?'}, "
                 f"{cte if cte in _CTES else '?'})")
        yield _Item(line, label, payload, nested=True)


def _mapping_get(node: Any, key: str, depth: int = 0) -> Any:
    """The value node of ``key`` in a mapping node, following merge keys as PyYAML does."""
    import yaml

    if not isinstance(node, yaml.MappingNode) or depth > 8:
        return None
    merged = []
    for k, v in node.value:
        if getattr(k, "tag", "") == "tag:yaml.org,2002:merge":
            merged += v.value if isinstance(v, yaml.SequenceNode) else [v]
        elif isinstance(k, yaml.ScalarNode) and k.value == key:
            return v
    for source in merged:
        found = _mapping_get(source, key, depth + 1)
        if found is not None:
            return found
    return None


def _yaml_items(text: str, archive: bool) -> Iterator[_Item]:
    import yaml

    from nestcloud._yamlio import load_yaml_nodes

    got = load_yaml_nodes(text)
    if got is None:
        return
    root, data = got
    # 1. Every scalar as cloud-init's YAML reads it: escapes undone, folded lines joined,
    #    !!binary decoded. Each distinct node once (an alias is its anchor's node).
    seen: set[int] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            stack.extend(n for pair in node.value for n in pair)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)
        elif isinstance(node, yaml.ScalarNode):
            line = node.start_mark.line + 1
            if node.tag == _BINARY_TAG:
                raw = _b64(node.value)
                if raw is not None:
                    yield _Item(line, "!!binary value", raw, nested=True)
            elif node.value != text[node.start_mark.index:node.end_mark.index]:
                yield _Item(line, "", node.value, nested=False,
                            literal_block=node.style == "|")
    # 2. write_files contents in the encoding cloud-init decodes. The data (merge keys
    #    applied) says what is written; the nodes say on which line.
    files = data.get("write_files") if isinstance(data, dict) else None
    if isinstance(files, list):
        files_node = _mapping_get(root, "write_files")
        for i, entry in enumerate(files):
            if not isinstance(entry, dict) or entry.get("content") is None:
                continue
            enc = str(entry.get("encoding") or "").strip().lower()
            steps = _WRITE_FILES_ENCODINGS.get(enc, ())
            content = entry["content"]
            if not steps or not isinstance(content, (str, bytes)):
                continue  # text as written: the file and its scalars are scanned already
            entry_node = (files_node.value[i] if isinstance(files_node, yaml.SequenceNode)
                          and i < len(files_node.value) else None)
            at = _mapping_get(entry_node, "content") or entry_node or files_node or root
            payload: bytes | None = content if isinstance(content, bytes) else None
            if "b64" in steps:
                payload = _b64(content)
            elif payload is None:
                payload = content.encode("utf-8", "surrogateescape")
            if payload is not None:
                yield _Item(at.start_mark.line + 1, f"write_files[{i}] (encoding {enc})",
                            payload, nested=True)
    # 3. #cloud-config-archive: each item's content is user data of its own.
    if archive and isinstance(data, list):
        for i, ent in enumerate(data):
            content = ent.get("content") if isinstance(ent, dict) else ent
            if isinstance(content, (str, bytes)):
                item_node = root.value[i] if isinstance(root, yaml.SequenceNode) else root
                at = _mapping_get(item_node, "content") or item_node
                yield _Item(at.start_mark.line + 1, f"#cloud-config-archive[{i}]", content,
                            nested=True)


def _items(text: str) -> Iterator[_Item]:
    """What cloud-init reads out of ``text`` beyond its plain bytes."""
    head = text.lstrip("\ufeff \t\r\n")
    jinja = _JINJA.match(head)
    if jinja:  # rendered first; what follows is read by its own header
        head = head[jinja.end():]
    skipped = text.count("\n", 0, len(text) - len(head))  # lines before `head` starts
    low = head[:200].lower()
    if low.startswith("content-type:") or low.startswith("mime-version:"):
        items: Iterator[_Item] = _mime_items(head)
    elif low.startswith("#cloud-config-archive"):
        items = _yaml_items(head, archive=True)
    elif low.startswith("#cloud-config"):
        items = _yaml_items(head, archive=False)
    else:
        return
    for item in items:
        yield _Item(item.line + skipped, item.label, item.data, item.nested, item.literal_block)


# -- scanning ---------------------------------------------------------------------------------


def _hits(text: str) -> list[_Hit]:
    hits: list[_Hit] = []
    for rule in (*_RULES, _detect_secrets):
        for hit in rule(text):
            # One secret, one finding: the first (most specific) rule that covers it wins,
            # e.g. a GCP key JSON is not reported again as a bare PEM key.
            if any(h.start <= hit.start < h.end or hit.start <= h.start < hit.end
                   for h in hits):
                continue
            hits.append(hit)
    hits.sort(key=lambda h: h.report_at)
    return hits


class _Scan:
    def __init__(self) -> None:
        self.findings: list[SecretFinding] = []
        self.seen: set[tuple[str, str]] = set()
        self.budget = MAX_TOTAL_DECODED_BYTES

    def add(self, kind: str, line: int, column: int, where: str, key: str) -> None:
        if (kind, key) in self.seen:
            return
        self.seen.add((kind, key))
        self.findings.append(SecretFinding(kind=kind, line=line, column=column, where=where))

    def unscannable(self, line: int, where: str) -> None:
        self.add("unscannable", line, 1, where, f"{line}:{where}")

    def text(self, text: str, at: int | None, where: str, *, line_map: str = "decoded",
             top: bool = False) -> None:
        """Findings of the rules in ``text``; ``at`` None means ``text`` is the file itself."""
        line_starts = [0] + [m.end() for m in re.finditer("\n", text)]
        for hit in _hits(text):
            idx = _line_index(line_starts, hit.report_at)
            # The same secret found again once decoded is one finding; whitespace aside (a
            # PEM body indented in a YAML block is the same key without its indentation).
            digest = hashlib.sha256(_WS.sub("", text[hit.start:hit.end]).encode(
                "utf-8", "surrogatepass")).hexdigest()
            if top:
                self.seen.add((hit.kind, digest))  # every occurrence in the file is reported
                self.findings.append(SecretFinding(hit.kind, idx + 1,
                                                   hit.report_at - line_starts[idx] + 1))
            elif line_map == "block" and at is not None:
                self.add(hit.kind, at + idx + 1, 1, where, digest)
            elif line_map == "value" and at is not None:
                inner = "" if len(line_starts) == 1 else f"YAML value line {idx + 1}"
                self.add(hit.kind, at, 1, ", ".join(x for x in (where, inner) if x), digest)
            else:
                self.add(hit.kind, at or 1, 1, f"{where}, decoded line {idx + 1}", digest)

    def layer(self, text: str, at: int | None, where: str, depth: int) -> None:
        self.text(text, at, where, top=at is None)
        for item in _items(text):
            line = at if at is not None else item.line
            label = f"{where} > {item.label}" if where and item.label else where or item.label
            if not item.nested:
                assert isinstance(item.data, str)
                self.text(item.data, line, label,
                          line_map="block" if item.literal_block and at is None else "value")
                continue
            if depth + 1 > MAX_LAYERS:
                self.unscannable(line, label)
                continue
            decoded = self.decode(item.data)
            if decoded is None:
                self.unscannable(line, label)
            elif decoded:
                self.layer(decoded, line, label, depth + 1)

    def decode(self, data: str | bytes) -> str | None:
        """Payload bytes as text, gunzipped within the limits; None when past them."""
        if isinstance(data, str):
            return data
        if data[:2] == _GZIP_MAGIC:
            try:
                unpacked = _gunzip(data, min(MAX_DECODED_BYTES, self.budget))
            except _TooBig:
                return None
            if unpacked is not None:
                data = unpacked
        if len(data) > min(MAX_DECODED_BYTES, self.budget):
            return None
        self.budget -= len(data)
        return data.decode("utf-8", errors="replace")


def _line_index(line_starts: list[int], offset: int) -> int:
    lo, hi = 0, len(line_starts) - 1
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if line_starts[mid] <= offset:
            lo = mid
        else:
            hi = mid - 1
    return lo  # 0-based index


def scan_user_data(text: str) -> list[SecretFinding]:
    """Every secret in ``text`` and in what cloud-init would decode from it, by line."""
    scan = _Scan()
    scan.layer(text, None, "", 0)
    return sorted(scan.findings, key=lambda f: (f.line, f.column))


def _scan_any(data: str | bytes) -> list[SecretFinding]:
    if isinstance(data, str):
        return scan_user_data(data)
    if data[:2] == _GZIP_MAGIC:  # gzip: cloud-init unpacks it, so the secret would ship
        try:
            unpacked = _gunzip(data, MAX_DECODED_BYTES)
        except _TooBig:
            return [SecretFinding("unscannable", 1, 1, "gzip")]
        if unpacked is not None:
            data = unpacked
    return scan_user_data(data.decode("utf-8", errors="replace"))


HOW_TO_PASS_SECRETS = (
    "user data is not a secret store (anything on the instance, and anyone allowed to "
    "describe it, can read it back): give the VM its cloud access through an instance "
    "profile (AWS IAM role) or a managed identity (Azure), and fetch other secrets at boot "
    "from a secret store (AWS Secrets Manager or SSM Parameter Store SecureString, "
    "Azure Key Vault)")

HOW_TO_UNPACK = ("compressed or nested content is refused when the scan cannot unpack it "
                 f"within {MAX_DECODED_BYTES} bytes and {MAX_LAYERS} levels: send it "
                 "uncompressed, or fetch big files at boot")


def refuse_secrets(data: str | bytes, source: str) -> None:
    """Raise InputError (exit 2) naming ``source``, line and kind if ``data`` holds a secret.

    The message quotes nothing of ``data``: file, line, column, kind, and for decoded content
    where inside the line it was (structure and recognised names only).
    """
    findings = _scan_any(data)
    if not findings:
        return
    lines = [f"{source}:{f.line}:{f.column}: {f.description} ({f.kind})"
             + (f" in {f.where}" if f.where else "") for f in findings]
    head = (f"{source}: user data contains {len(findings)} secret(s); refusing to send it"
            if len(findings) > 1 else
            f"{source}: user data contains {findings[0].description}; refusing to send it")
    hint = (HOW_TO_UNPACK if all(f.kind == "unscannable" for f in findings)
            else HOW_TO_PASS_SECRETS)
    raise InputError(head + "\n" + "\n".join(f"  {line}" for line in lines), hint=hint)
