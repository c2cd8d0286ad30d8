"""AWS on-demand prices from the Price List Query API (`catalog refresh-prices`).

``pricing`` GetProducts (served from us-east-1), filtered to on-demand Linux, shared tenancy,
no pre-installed software, capacity status "Used". The Price List has no spot prices, so a
fetch says so (``PriceFetch.spot`` False) and a refreshed catalog entry drops its old spot
price rather than date it today. Fetching (I/O) and parsing (pure) are apart so tests feed
recorded payloads to the parser and a loopback endpoint (or a ``client``) to the fetcher.
boto3 is imported only when a client is made.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from nestcloud.errors import MissingDependencyError, ProviderError
from nestcloud.provider import PriceFetch, PriceTable

PRICING_REGION = "us-east-1"
FILTERS: dict[str, str] = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}
# Capabilities.prices: the catalog's description of a refreshed price source.
SOURCE_TEXT = ("AWS Price List Query API (pricing GetProducts): on-demand, Linux, shared "
               "tenancy, no pre-installed software")


def filters(region: str) -> list[dict[str, str]]:
    """GetProducts filters for one region's on-demand Linux shared-tenancy prices."""
    f = {"regionCode": region, **FILTERS}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in f.items()]


def parse_price_list(price_list: Iterable[str | dict[str, Any]]) -> PriceTable:
    """On-demand USD/hour per (instanceType, regionCode) from GetProducts' PriceList. Pure."""
    out: PriceTable = {}
    for entry in price_list:
        doc = json.loads(entry) if isinstance(entry, str) else entry
        attrs = (doc.get("product") or {}).get("attributes") or {}
        itype, region = attrs.get("instanceType"), attrs.get("regionCode")
        if not itype or not region:
            continue
        if any(attrs.get(k, v) != v for k, v in FILTERS.items()):
            continue
        for term in ((doc.get("terms") or {}).get("OnDemand") or {}).values():
            for dim in (term.get("priceDimensions") or {}).values():
                if dim.get("unit") not in ("Hrs", "Hours", "Hour"):
                    continue
                usd = (dim.get("pricePerUnit") or {}).get("USD")
                if usd is None:
                    continue
                try:
                    price = float(usd)
                except (TypeError, ValueError):
                    continue
                old = out.get((itype, region), (None, None))[0]
                out[(itype, region)] = (price if old is None else min(old, price), None)
    return out


def pricing_client() -> Any:
    """A ``pricing`` client in PRICING_REGION from the standard credential chain (and
    endpoint settings: AWS_ENDPOINT_URL_PRICING points it elsewhere)."""
    try:
        import boto3
    except ImportError as exc:
        raise MissingDependencyError("refreshing AWS prices needs boto3",
                                     hint="pip install 'nestcloud[aws]'",
                                     provider="aws") from exc
    return boto3.client("pricing", region_name=PRICING_REGION)


def fetch_price_list(regions: Sequence[str], *, client: Any = None) -> list[str]:
    """Every GetProducts PriceList entry for these regions, following NextToken."""
    if client is None:
        client = pricing_client()
    from botocore.exceptions import BotoCoreError, ClientError

    out: list[str] = []
    try:
        for region in regions:
            pages = client.get_paginator("get_products").paginate(
                ServiceCode="AmazonEC2", FormatVersion="aws_v1", Filters=filters(region))
            for page in pages:
                out += page.get("PriceList", [])
    except (ClientError, BotoCoreError) as exc:
        raise ProviderError(f"AWS Price List API: {exc}", provider="aws") from exc
    return out


def fetch_prices(regions: Sequence[str], *, client: Any = None) -> PriceFetch:
    """AwsProvider.fetch_prices: on-demand prices only (the Price List has no spot)."""
    return PriceFetch(table=parse_price_list(fetch_price_list(regions, client=client)),
                      spot=False)
