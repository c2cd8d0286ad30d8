"""The Azure provider, split by layer (no module imports one that imports it back):

- ``plan``      ARM request bodies, names, images and SKU facts, built as data (pure)
- ``provider``  ``AzureProvider``: launch/reconcile, list, down, console, verify_catalog
- ``errors``    SDK and ARM errors -> nestcloud errors with the scope failover reads
- ``auth``      subscription, endpoint and owner (pure); ``_sdk`` the SDK itself (lazily)
- ``pricing``   Retail Prices API and the outbound path's cost (class hooks)
- ``iam``       the least-privilege custom role (class hook)
- ``rules``     Azure's own pre-launch rules (class hook)
- ``files/set-tag.ps1``  how a Windows L1 writes its readiness tag

Registered as ``azure = "providers.azure:AzureProvider [azure]"``; importing this package (and
reading the class's capabilities or calling its class hooks) never imports the Azure SDK.
"""

from providers.azure.provider import AzureProvider

__all__ = ["AzureProvider"]
