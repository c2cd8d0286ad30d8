"""GCP prices from the Cloud Billing Catalog API (``catalog refresh-prices --provider gcp``).

Compute Engine (service ``6F81-5844-456A``, FACTS.md "GCP") prices a machine type by parts:
one SKU per vCPU-hour and one per GiB-hour of memory, per series and region, for on-demand
(``category.usageType`` ``OnDemand``) and spot (``Preemptible``). A type's hourly price is
``vcpus * core + memory_gib * ram`` with the type's shape from the catalog, rounded to 5
decimals like shared/data/prices-gcp.csv, which was made the same way (skypilot-org/skypilot
``sky/catalog/data_fetchers/fetch_gcp.py``).

The API needs an API key (not IAM): ``NESTCLOUD_GCP_PRICES_KEY``, else ``GOOGLE_API_KEY``
(create one under APIs & Services > Credentials in a project with the Cloud Billing API
enabled). It is sent in the ``X-Goog-Api-Key`` header, never in a URL.
``NESTCLOUD_GCP_PRICES_URL`` points the fetcher at another API root (tests: a loopback server);
plain http is refused except to loopback, so the key never crosses a network in clear.

Series -> SKU description: ``services.skus.list`` has no field naming the machine series, so
SKUs are matched on their description, as skypilot's fetcher does ("N2 Instance Core running
in Americas", "Spot Preemptible N2 Instance Ram running in ..."). The prefixes in
:data:`SERIES_SKU` are that fetcher's table (C2 is "Compute optimized"); N4 ("N4 Instance")
is not in it and comes from other public Billing Catalog clients. A series with no prefix here
is left unpriced, and said so.

``fetch_skus`` (I/O) and ``parse_skus`` (pure) are separate; ``fetch_prices`` joins them.
"""

from __future__ import annotations

import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from nestcloud.errors import CredentialsError, InputError, ProviderError, ThrottledError
from nestcloud.provider import PriceFetch, PriceTable, is_loopback_host

PROVIDER = "gcp"
SERVICE_ID = "6F81-5844-456A"  # Compute Engine
API_ROOT = "https://cloudbilling.googleapis.com"
ENV_KEY = "NESTCLOUD_GCP_PRICES_KEY"
ENV_KEY_FALLBACK = "GOOGLE_API_KEY"
ENV_URL = "NESTCLOUD_GCP_PRICES_URL"
PAGE_SIZE = 5000  # the API's maximum per page (Cloud Billing Catalog API how-to)
MAX_PAGES = 200   # a loop guard: Compute Engine's SKUs are a few dozen pages at most

PRICE_SOURCE = (
    f"Cloud Billing Catalog API (cloudbilling.googleapis.com/v1/services/{SERVICE_ID}/skus, "
    "Compute Engine): list USD per vCPU-hour (Core) and per GiB-hour (Ram) of each series in "
    "each region, OnDemand for on-demand and Preemptible for spot, times each machine type's "
    "vCPUs and memory from the catalog; Linux, no discounts")

# Machine series -> the start of its Core/Ram SKU descriptions (see the module docstring).
SERIES_SKU: dict[str, str] = {
    "n1": "N1 Predefined Instance",
    "n2": "N2 Instance",
    "n2d": "N2D AMD Instance",
    "n4": "N4 Instance",
    "e2": "E2 Instance",
    "c2": "Compute optimized",
    "c3": "C3 Instance",
    "t2a": "T2A Arm Instance",
}
# Other ways to buy the same cores, never the list price of a plain VM.
_EXCLUDE = re.compile(r"custom|extended|premium|reserved|sole tenan|commitment|dws|calendar",
                      re.IGNORECASE)
_KINDS = {"OnDemand": "on-demand", "Preemptible": "spot"}
_UNITS = {"Core": "h", "Ram": "GiBy.h"}
_GROUPS = {"CPU": "Core", "RAM": "Ram"}  # N1's share "N1Standard": the description decides


def _patterns() -> dict[str, re.Pattern[str]]:
    return {series: re.compile(r"^(?:spot )?(?:preemptible )?" + re.escape(prefix.lower())
                               + r" (core|ram)\b")
            for series, prefix in SERIES_SKU.items()}


_SERIES_RE = _patterns()


def series_of(machine_type: str) -> str:
    return machine_type.split("-", 1)[0]


# -- parsing (pure) ------------------------------------------------------------------------


def _unit_price(sku: Mapping[str, Any], resource: str) -> float | None:
    """USD per unit of the newest pricingInfo's first tier, or None when it is not USD in
    the unit expected for the resource."""
    infos = [i for i in sku.get("pricingInfo") or [] if isinstance(i, dict)]
    if not infos:
        return None
    info = max(infos, key=lambda i: str(i.get("effectiveTime", "")))
    expr = info.get("pricingExpression") or {}
    if expr.get("usageUnit", _UNITS[resource]) != _UNITS[resource]:
        return None
    tiers = [t for t in expr.get("tieredRates") or [] if isinstance(t, dict)]
    if not tiers:
        return None
    tier = min(tiers, key=lambda t: float(t.get("startUsageAmount") or 0))
    price = tier.get("unitPrice") or {}
    if price.get("currencyCode", "USD") != "USD":
        return None
    try:
        return int(price.get("units") or 0) + int(price.get("nanos") or 0) / 1e9
    except (TypeError, ValueError):
        return None


def _classify(sku: Mapping[str, Any]) -> tuple[str, str, str] | None:
    """(series, kind, resource) of a plain per-vCPU or per-GiB VM SKU, else None."""
    cat = sku.get("category")
    desc = sku.get("description")
    if not isinstance(cat, dict) or not isinstance(desc, str):
        return None
    kind = _KINDS.get(str(cat.get("usageType")))
    if kind is None or cat.get("resourceFamily") != "Compute" or _EXCLUDE.search(desc):
        return None
    low = desc.lower()
    for series, rx in _SERIES_RE.items():
        m = rx.match(low)
        if m is None:
            continue
        resource = m.group(1).capitalize()
        group = _GROUPS.get(str(cat.get("resourceGroup")))
        if group is not None and group != resource:
            return None  # description and category disagree: trust neither
        return series, kind, resource
    return None


def parse_skus(skus: Iterable[Any], regions: Sequence[str],
               shapes: Mapping[str, tuple[int, float]]) -> PriceFetch:
    """On-demand and spot USD/hour per (machine type, region) for the types in ``shapes``
    (name -> (vCPUs, GiB)) in ``regions``, from Compute Engine SKUs. Pure.

    A type gets a price only where both its Core and Ram SKUs exist; when SKUs disagree on a
    part, that part is left out and a note says so."""
    wanted = set(regions)
    parts: dict[tuple[str, str, str, str], set[float]] = defaultdict(set)
    for sku in skus:
        if not isinstance(sku, dict):
            continue
        what = _classify(sku)
        if what is None:
            continue
        usd = _unit_price(sku, what[2])
        if usd is None:
            continue
        for region in sku.get("serviceRegions") or []:
            if region in wanted:
                parts[(what[0], region, what[1], what[2])].add(usd)

    notes: list[str] = []
    unit: dict[tuple[str, str, str, str], float] = {}
    for key, prices in sorted(parts.items()):
        if len(prices) == 1:
            unit[key] = prices.pop()
        else:
            series, region, kind, resource = key
            notes.append(f"{series} in {region}: {len(prices)} different {kind} {resource} "
                         "prices; none used")

    table: PriceTable = {}
    unknown: dict[str, list[str]] = defaultdict(list)
    missing: set[tuple[str, str, str, str]] = set()
    for name, (vcpus, gib) in sorted(shapes.items()):
        series = series_of(name)
        if series not in SERIES_SKU:
            unknown[series].append(name)
            continue
        for region in sorted(wanted):
            got: dict[str, float | None] = {}
            for kind in _KINDS.values():
                core = unit.get((series, region, kind, "Core"))
                ram = unit.get((series, region, kind, "Ram"))
                if core is not None and ram is not None:
                    got[kind] = round(vcpus * core + gib * ram, 5)
                else:
                    got[kind] = None
                    if kind == "on-demand":
                        for res, v in (("Core", core), ("Ram", ram)):
                            if v is None:
                                missing.add((series, region, kind, res))
            if got["on-demand"] is not None or got["spot"] is not None:
                table[(name, region)] = (got["on-demand"], got["spot"])
    for fam, names in sorted(unknown.items()):
        notes.append(f"no Cloud Billing SKU description known for series {fam} "
                     f"({', '.join(names)}): not priced")
    for series, region, kind, res in sorted(missing):
        notes.append(f"{series} in {region}: no {kind} {res} SKU (description starting "
                     f"{SERIES_SKU[series]!r}); its on-demand prices there stay as they were")
    return PriceFetch(table=table, spot=True, notes=tuple(notes))


# -- fetching (I/O) ------------------------------------------------------------------------

UrlOpen = Callable[..., Any]


def _root(endpoint: str | None) -> str:
    root = (endpoint or os.environ.get(ENV_URL) or API_ROOT).rstrip("/")
    u = urllib.parse.urlsplit(root)
    if u.scheme not in ("https", "http") or not u.hostname:
        raise InputError(f"{ENV_URL}: {root!r} is not an http(s) URL")
    if u.scheme == "http" and not is_loopback_host(u.hostname):
        raise InputError(f"{ENV_URL}: {root!r} is plain http to another machine; the API key "
                         "would cross the network in clear",
                         hint="use https, or plain http only to a loopback test server")
    return root


def _api_key(api_key: str | None) -> str:
    key = api_key or os.environ.get(ENV_KEY) or os.environ.get(ENV_KEY_FALLBACK)
    if not key:
        raise InputError(f"refreshing GCP prices needs a Cloud Billing Catalog API key: set "
                         f"{ENV_KEY} (or {ENV_KEY_FALLBACK})",
                         hint="create an API key (APIs & Services > Credentials) in a project "
                              "where the Cloud Billing API is enabled")
    return key


def _error(exc: urllib.error.HTTPError, where: str) -> ProviderError:
    try:
        doc = json.loads(exc.read().decode("utf-8", "replace"))
        err = doc.get("error") if isinstance(doc, dict) else None
    except (OSError, ValueError):
        err = None
    err = err if isinstance(err, dict) else {}
    message = str(err.get("message") or exc.reason or "")
    reasons = {d.get("reason") for d in err.get("details") or [] if isinstance(d, dict)}
    text = f"Cloud Billing Catalog API: HTTP {exc.code} from {where}: {message}"
    code = str(err.get("status") or exc.code)
    if exc.code == 403 or "API_KEY_INVALID" in reasons:
        return CredentialsError(text, code=code, provider=PROVIDER,
                                hint=f"check the key in {ENV_KEY} / {ENV_KEY_FALLBACK} and that "
                                     "the Cloud Billing API is enabled in its project")
    if exc.code == 429:
        return ThrottledError(text, code=code, provider=PROVIDER)
    return ProviderError(text, code=code, provider=PROVIDER,
                         scope="request" if 400 <= exc.code < 500 else None)


def fetch_skus(*, api_key: str | None = None, endpoint: str | None = None,
               opener: UrlOpen | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every Compute Engine SKU (``services.skus.list``, USD), following ``nextPageToken``."""
    root = _root(endpoint)
    key = _api_key(api_key)
    open_ = opener or urllib.request.urlopen
    where = f"{root}/v1/services/{SERVICE_ID}/skus"
    skus: list[dict[str, Any]] = []
    token: str | None = None
    for _ in range(MAX_PAGES):
        query = {"currencyCode": "USD", "pageSize": str(PAGE_SIZE)}
        if token:
            query["pageToken"] = token
        req = urllib.request.Request(f"{where}?{urllib.parse.urlencode(query)}",
                                     headers={"X-Goog-Api-Key": key,
                                              "Accept": "application/json"})
        try:
            with open_(req, timeout=timeout) as resp:
                doc = json.loads(resp.read().decode("utf-8"))
        except urllib.error.HTTPError as exc:
            raise _error(exc, where) from None
        except (OSError, ValueError) as exc:
            raise ProviderError(f"Cloud Billing Catalog API: {where}: {exc}",
                                hint=f"set {ENV_URL} to use another endpoint",
                                provider=PROVIDER) from None
        if not isinstance(doc, dict):
            raise ProviderError(f"Cloud Billing Catalog API: {where}: the answer is not a JSON "
                                "object", provider=PROVIDER)
        skus += [s for s in doc.get("skus") or [] if isinstance(s, dict)]
        token = doc.get("nextPageToken") or None
        if not token:
            return skus
    raise ProviderError(f"Cloud Billing Catalog API: more than {MAX_PAGES} pages of SKUs; "
                        "stopping", provider=PROVIDER)


def catalog_shapes() -> dict[str, tuple[int, float]]:
    """(vCPUs, GiB) of every GCP type in the catalog in use (``NESTCLOUD_CATALOG`` or the
    shipped one): the API prices parts, the catalog knows the machine types."""
    from nestcloud.catalog import load_catalog

    return {t.name: (t.vcpus, t.memory_gib) for t in load_catalog().of(PROVIDER)}


def fetch_prices(regions: Sequence[str], *, api_key: str | None = None,
                 endpoint: str | None = None,
                 shapes: Mapping[str, tuple[int, float]] | None = None,
                 opener: UrlOpen | None = None) -> PriceFetch:
    """On-demand and spot USD/hour per (type, region) for ``regions`` (network).

    ``shapes``: name -> (vCPUs, GiB) of the types to price; default the catalog's GCP types."""
    skus = fetch_skus(api_key=api_key, endpoint=endpoint, opener=opener)
    return parse_skus(skus, regions, catalog_shapes() if shapes is None else shapes)
