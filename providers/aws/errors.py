"""botocore exceptions -> nestcloud errors, each with what to do next.

botocore is imported only once an exception is being translated (an SDK exception means the
SDK is loaded already): importing this module, like the whole provider package, imports no
SDK.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager

from nestcloud.provider import Scope
from nestcloud.errors import (
    CapacityError,
    CredentialsError,
    InputError,
    NestcloudError,
    ProviderError,
    QuotaError,
    ThrottledError,
    UnsupportedError,
)

P = "aws"
_BAD_REQUEST = frozenset({"InvalidBlockDeviceMapping", "InvalidAMIID.Malformed",
                          "InvalidAMIID.NotFound"})

CREDENTIAL_HINT = ("configure credentials as for any AWS tool (`aws configure`, `aws sso login`, "
                   "AWS_PROFILE, environment variables), or try everything locally with --sandbox")

_EXPIRED = {"ExpiredToken", "ExpiredTokenException", "RequestExpired", "TokenRefreshRequired"}
_REJECTED = {"AuthFailure", "InvalidClientTokenId", "SignatureDoesNotMatch",
             "UnrecognizedClientException", "InvalidAccessKeyId", "MissingAuthenticationToken"}
_THROTTLED = {"Throttling", "ThrottlingException", "RequestLimitExceeded",
              "TooManyRequestsException", "RequestThrottled", "SlowDown"}

# What a SigV4 request carries that must never be printed: the Authorization header's
# Credential (access key id and scope) and Signature, presigned-URL query parameters and the
# session token. botocore quotes the whole header in some errors (an invalid header value).
_SECRETS = re.compile(
    r"(?i)(?:x-amz-)?(?:credential|signature|security-token)=[^\s,;&'\"]*"
    r"|(authorization[\"']?\s*[:=]\s*[\"']?)[^,;\n'\"]*")


def scrub(text: str) -> str:
    """``text`` without SigV4 credentials, signatures, session tokens or Authorization values
    (the parameter names go too: "Credential=" in a message would invite a second look)."""
    return _SECRETS.sub(lambda m: (m.group(1) or "") + "<redacted>", text)


# EC2 error codes by what they rule out (nestcloud.provider.Scope): failover reads the scope
# set here, never a code. Capacity is per zone ("Unsupported": this type is not offered in
# the requested zone); a refused type or type/feature combination rules out the type; account
# limits are per region.
ZONE_CODES = frozenset({"InsufficientInstanceCapacity", "InsufficientHostCapacity",
                        "InsufficientCapacity", "Unsupported"})
TYPE_CODES = frozenset({"UnsupportedOperation", "InvalidInstanceType"})
REGION_CODES = frozenset({"VcpuLimitExceeded", "InstanceLimitExceeded",
                          "MaxSpotInstanceCountExceeded"})


def scope_of_code(code: str | None) -> Scope | None:
    """The scope an EC2 error code rules out (fleet error rows carry only a code)."""
    if code in ZONE_CODES:
        return "zone"
    if code in TYPE_CODES:
        return "type"
    if code in REGION_CODES or code in _THROTTLED:
        return "region"
    if code in _EXPIRED or code in _REJECTED or code in ("UnauthorizedOperation",
                                                          "AccessDenied",
                                                          "AccessDeniedException"):
        return "credentials"
    if code is not None and (code.startswith("InvalidParameter") or code in _BAD_REQUEST):
        return "request"
    return None


def translate(exc: Exception, *, action: str, region: str | None = None,
              type_name: str | None = None) -> NestcloudError:
    """The nestcloud error for an SDK exception raised while doing ``action``."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        EndpointConnectionError,
        InvalidRegionError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        TokenRetrievalError,
    )
    from botocore.parsers import ResponseParserError

    where = f" in {region}" if region else ""
    if isinstance(exc, NoCredentialsError | PartialCredentialsError):
        return CredentialsError(f"no AWS credentials found while trying to {action}",
                                hint=CREDENTIAL_HINT, provider=P)
    if isinstance(exc, TokenRetrievalError) or type(exc).__name__ in (
            "SSOTokenLoadError", "UnauthorizedSSOTokenError"):
        return CredentialsError(f"AWS SSO credentials could not be loaded ({scrub(str(exc))})",
                                hint="run `aws sso login` (with --profile if you use one)",
                                provider=P)
    if isinstance(exc, NoRegionError):
        return InputError("no AWS region: pass --region or set AWS_DEFAULT_REGION / a profile "
                          "region")
    if isinstance(exc, InvalidRegionError):
        return InputError(f"AWS region {exc.kwargs.get('region_name')!r}: not a region name "
                          "(e.g. us-east-1)")
    if isinstance(exc, EndpointConnectionError):
        return ProviderError(f"cannot reach the AWS endpoint {exc.kwargs.get('endpoint_url')} "
                             f"to {action}", hint="check the network, AWS_ENDPOINT_URL, or "
                             "`nestcloud sandbox status` when using --sandbox", provider=P)
    if isinstance(exc, ClientError):
        err = exc.response.get("Error", {})
        code = str(err.get("Code", "Unknown"))
        msg = scrub(str(err.get("Message", "")).strip())
        said = f" (AWS: {code}: {msg})" if msg else f" (AWS: {code})"
        if code == "UnsupportedOperation":
            return UnsupportedError(
                f"AWS refused to {action}{where}{said}",
                hint="this type/feature combination is not offered there; run `nestcloud "
                     f"catalog verify --provider aws --region {region or 'REGION'}` and pick a "
                     "type that reports nested-virtualization (c8i/m8i/r8i, c7i/m7i...) or a "
                     ".metal type", code=code, provider=P)
        if code in ("InsufficientInstanceCapacity", "InsufficientHostCapacity",
                    "InsufficientCapacity"):
            return CapacityError(
                f"AWS has no capacity for {type_name or 'this type'}{where} right now{said}",
                hint="retry later, or choose another availability zone, an equivalent type "
                     "or another region", code=code, provider=P)
        if code in ("VcpuLimitExceeded", "InstanceLimitExceeded", "MaxSpotInstanceCountExceeded"):
            return QuotaError(
                f"your AWS account limit{where} does not allow this launch{said}",
                hint="request a higher 'Running On-Demand Standard instances' (or Spot) vCPU "
                     "quota in Service Quotas, use a smaller type or --count, or another region",
                code=code, provider=P)
        if code in _EXPIRED:
            return CredentialsError(f"your AWS credentials have expired{said}",
                                    hint="refresh them (e.g. `aws sso login`) and retry",
                                    code=code, provider=P)
        if code in _REJECTED:
            return CredentialsError(f"AWS rejected the credentials while trying to {action}{said}",
                                    hint=CREDENTIAL_HINT, code=code, provider=P)
        if code in ("UnauthorizedOperation", "AccessDenied", "AccessDeniedException"):
            return CredentialsError(f"these AWS credentials may not {action}{said}",
                                    hint="ask for the permissions nestcloud needs "
                                         "(EC2 run/describe/terminate, SSM GetParameter, "
                                         "STS GetCallerIdentity)", code=code, provider=P)
        if code in _THROTTLED:
            return ThrottledError(f"AWS kept throttling the requests to {action}{where}{said}",
                                  hint="wait a minute and run the same command again (it "
                                       "resumes where it stopped)", code=code, provider=P)
        if code.startswith("InvalidParameter") or code in _BAD_REQUEST:
            return ProviderError(f"AWS rejected a parameter while trying to {action}{where}"
                                 f"{said}", hint="check --image, --key-name, --disk-gib and "
                                 "--type; `--dry-run` prints the exact request", code=code,
                                 provider=P, scope="request")
        return ProviderError(f"AWS error while trying to {action}{where}{said}", code=code,
                             provider=P, scope=scope_of_code(code))
    if isinstance(exc, ResponseParserError):
        return ProviderError(f"the answer of the AWS endpoint could not be read while trying to "
                             f"{action}{where} (not an AWS response: a proxy or a broken "
                             "endpoint?)", hint="check AWS_ENDPOINT_URL and proxies, and retry",
                             provider=P)
    if isinstance(exc, BotoCoreError):
        return ProviderError(f"AWS SDK error while trying to {action}: {scrub(str(exc))}",
                             provider=P)
    return ProviderError(f"unexpected error while trying to {action}: {scrub(str(exc))}",
                         provider=P)


@contextmanager
def aws_errors(action: str, *, region: str | None = None,
               type_name: str | None = None) -> Iterator[None]:
    """Raise SDK exceptions inside the block as nestcloud errors, ``from`` the original."""
    try:
        yield
    except NestcloudError:
        raise
    except Exception as exc:
        if not _from_sdk(exc):
            raise
        raise translate(exc, action=action, region=region, type_name=type_name) from exc


def _sdk_exceptions() -> tuple[type[BaseException], ...]:
    """botocore's exception bases, or () while botocore is not loaded (then nothing raised
    can be one of them, and it is not imported just to say so)."""
    if "botocore" not in sys.modules:
        return ()
    from botocore.exceptions import BotoCoreError, ClientError
    from botocore.parsers import ResponseParserError

    return (ClientError, BotoCoreError, ResponseParserError)


def _from_sdk(exc: BaseException) -> bool:
    kinds = _sdk_exceptions()
    return bool(kinds) and isinstance(exc, kinds)


def error_code(exc: BaseException) -> str | None:
    """The AWS error code behind a (translated) exception, if any."""
    if "botocore" not in sys.modules:
        return None
    from botocore.exceptions import ClientError

    cause = exc if isinstance(exc, ClientError) else exc.__cause__
    if isinstance(cause, ClientError):
        return str(cause.response.get("Error", {}).get("Code"))
    return None
