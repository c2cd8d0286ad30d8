"""The nestcloud error tree. Every error a user can see is one of these.

    NestcloudError                      exit 1 unless a subclass says otherwise
    ├── InputError                      exit 2: bad flags, bad files, unknown names
    │   ├── CatalogError                a catalog file that does not parse or validate
    │   ├── LabFileError                a lab file that does not parse or validate
    │   ├── SpecError                   LaunchSpec fields that do not validate (a ValueError too)
    │   └── UnknownProviderError        a provider name no plugin registers
    ├── RefusedError                    exit 3: pre-launch checks or budget said no
    │   └── BudgetError                 the plan costs more than the budget allows
    ├── ProviderError                   exit 1: anything a cloud or plugin reported
    │   ├── MissingDependencyError      the provider's SDK is not installed
    │   ├── CredentialsError            no, expired or rejected credentials
    │   ├── CapacityError               the cloud has no capacity there now (zone scope)
    │   ├── QuotaError                  an account or subscription limit (region scope)
    │   ├── UnsupportedError            the cloud refused the type/feature combination
    │   ├── ThrottledError              still throttled after the SDK's own retries
    │   └── CleanupError                removing what we created failed; lists what is left
    └── ReadinessTimeout                exit 4: the L1 did not report ready in time

    LaunchInterrupted (a KeyboardInterrupt) Ctrl-C during a launch, with what it left

Library code raises these and never exits; the CLI catches NestcloudError once, prints
``str(error)`` and exits with ``error.exit_code``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from nestcloud.failover import Attempt
    from nestcloud.provider import LaunchOutcome, Scope


class NestcloudError(Exception):
    """Base of every error nestcloud reports to a user.

    ``attempts``: the failover attempt table behind this error (empty unless a launch tried
    several places); the CLI prints it. Declared here, set only by ``nestcloud.failover``."""

    exit_code: int = 1
    attempts: tuple[Attempt, ...] = ()

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        if self.hint:
            return f"{self.message}\n  hint: {self.hint}"
        return self.message

    def to_dict(self) -> dict[str, Any]:
        return {"error": type(self).__name__, "message": self.message, "hint": self.hint,
                "exit_code": self.exit_code}


class InputError(NestcloudError):
    """Bad input: flags, files or names the user gave."""

    exit_code = 2


class CatalogError(InputError):
    """A catalog file that cannot be used; ``problems`` lists every one found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid catalog ({len(problems)} problem(s)):\n{lines}")


class LabFileError(InputError):
    """A lab file that cannot be used; ``problems`` lists every one found."""

    def __init__(self, source: str, problems: list[str]) -> None:
        self.source = source
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        super().__init__(f"{source}: invalid lab file ({len(problems)} problem(s)):\n{lines}")


class SpecError(InputError, ValueError):
    """LaunchSpec fields that do not validate; ``errors()`` lists every problem.

    ``errors`` are pydantic's ``ValidationError.errors()`` items (``type``, ``loc``, ``msg``,
    ``input``): the CLI names its flags from them, the Python API its keywords. A ValueError
    too, as pydantic's ValidationError is."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        from nestcloud._yamlio import pydantic_problems

        self._errors = [dict(e) for e in errors]
        super().__init__("; ".join(pydantic_problems(self._errors, style="keyword")))

    def errors(self, *, include_url: bool = False) -> list[dict[str, Any]]:
        """The problems, as pydantic reported them (copies)."""
        return [dict(e) for e in self._errors]


class UnknownProviderError(InputError):
    """A provider name that no installed plugin registers."""


class RefusedError(NestcloudError):
    """A launch refused before anything was created."""

    exit_code = 3

    def __init__(self, message: str, *, hint: str | None = None,
                 findings: list[Any] | None = None) -> None:
        super().__init__(message, hint=hint)
        self.findings = findings or []


class BudgetError(RefusedError):
    """The plan costs more than the budget allows."""


class ProviderError(NestcloudError):
    """Something a cloud or a provider plugin reported.

    ``scope`` (set by the provider) says what the failure rules out, for failover
    (``nestcloud.provider.Scope``); ``code`` is the cloud's own code, for people only;
    ``outcome`` is what a failed launch left (``nestcloud.provider.LaunchOutcome``)."""

    exit_code = 1
    default_scope: Scope | None = None

    def __init__(self, message: str, *, hint: str | None = None, code: str | None = None,
                 provider: str | None = None, scope: Scope | None = None,
                 outcome: LaunchOutcome | None = None) -> None:
        super().__init__(message, hint=hint)
        self.code = code
        self.provider = provider
        self.scope: Scope | None = scope or self.default_scope
        self.outcome = outcome

    def with_outcome(self, outcome: LaunchOutcome) -> ProviderError:
        """This error, saying what the failed launch left (a provider's launch boundary sets
        it once, for errors raised deep inside where the outcome is not known yet)."""
        self.outcome = outcome
        return self


class MissingDependencyError(ProviderError):
    """The SDK a provider needs is not installed."""

    default_scope = "provider"


class CredentialsError(ProviderError):
    """Credentials are missing, expired or rejected."""

    default_scope = "credentials"


class CapacityError(ProviderError):
    """No capacity for the type in that zone right now."""

    default_scope = "zone"


class QuotaError(ProviderError):
    """An account or subscription limit was reached."""

    default_scope = "region"


class UnsupportedError(ProviderError):
    """The cloud refused the type or feature combination."""

    default_scope = "type"


class ThrottledError(ProviderError):
    """The cloud kept throttling after the SDK's retries."""

    default_scope = "region"


class CleanupError(ProviderError):
    """Removing what we created failed; ``leftovers`` names what still exists."""

    def __init__(self, message: str, *, leftovers: list[str], hint: str | None = None,
                 provider: str | None = None) -> None:
        super().__init__(message, hint=hint, provider=provider)
        self.leftovers = leftovers


class LaunchInterrupted(KeyboardInterrupt):
    """Ctrl-C during a launch, saying what the launch left (``outcome``), so the caller's
    rollback knows whether anything of this run exists. Still a KeyboardInterrupt; its args
    are notes for the user (what is left, what was removed)."""

    def __init__(self, outcome: LaunchOutcome, *notes: str) -> None:
        super().__init__(*notes)
        self.outcome = outcome


class ReadinessTimeout(NestcloudError):
    """The L1 hypervisor did not report ready before the deadline."""

    exit_code = 4
