"""The Google Cloud provider: nested KVM hosts on Compute Engine (registered as ``gcp``).

Importing this package imports no ``google.*`` module: the registry, ``check``, ``plan`` and
``nestcloud providers`` read ``GcpProvider``'s class attributes only, and the SDK is loaded
when a verb first reaches Google (``providers.gcp._api``).
"""

from providers.gcp.provider import GcpProvider

__all__ = ["GcpProvider"]
