"""Refreshing catalog prices from the clouds' public price APIs (`catalog refresh-prices`).

Only this command touches the network for prices; planning and launching read the catalog
file and never wait on a price API. Fetching (I/O) and parsing (pure) are separate so tests
feed recorded payloads to the parsers and a loopback server to the fetchers.

- AWS: Price List Query API (``pricing`` GetProducts, served from us-east-1), filtered to
  on-demand Linux, shared tenancy, no pre-installed software, capacity status "Used". It has
  no spot prices.
- Azure: Retail Prices API (no auth), ``priceType eq 'Consumption'`` per region, following
  ``NextPageLink``; Windows products are skipped, meters ending " Spot" are spot prices,
  " Low Priority" meters are skipped.

It also holds the price of the hosts' outbound path (``egress_cost``), which the catalog has
no place for: fixed, approximate figures with their source and date, added to plans and lab
costs.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from nestcloud.catalog import Catalog, RegionPrice, Source
from nestcloud.errors import InputError, ProviderError
from nestcloud.render import Block, Rendered

AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"
ENV_AZURE_PRICES_URL = "NESTCLOUD_AZURE_PRICES_URL"
AZURE_MAX_PAGES = 500  # a loop guard: a region is a few dozen pages

AWS_PRICING_REGION = "us-east-1"
AWS_FILTERS: dict[str, str] = {
    "operatingSystem": "Linux",
    "tenancy": "Shared",
    "preInstalledSw": "NA",
    "capacitystatus": "Used",
}

# (type name, region) -> (on-demand USD/h or None, spot USD/h or None)
PriceTable = dict[tuple[str, str], tuple[float | None, float | None]]


# -- egress: how hosts reach the internet ------------------------------------------------------

# FACTS.md, Azure, "Egress": third-party cost guides summarising Azure's pricing page in 2026
# (approximate, US regions). No API call refreshes these; the date says how old they are.
EGRESS_PRICE_DATE = "2026 (approximate)"
EGRESS_PRICE_SOURCE = ("FACTS.md (Azure, Egress): third-party cost guides summarising Azure's "
                       "pricing page, 2026, approximate, US regions")
AZURE_NAT_GATEWAY_USD_H = 0.045
AZURE_NAT_GATEWAY_USD_GB = 0.045
AZURE_STANDARD_PUBLIC_IP_USD_H = 0.005

# The provider's outbound path when the user chooses none (providers/_azure_plan.py reads it):
# a NAT gateway, Azure's recommended way. Not chosen by seat count, although per-VM public IPs
# are cheaper below ten seats: a group keeps one layout however it grows, and no VM gets an
# address of its own. `--egress public-ip` is one flag away, and the plan says what it saves.
DEFAULT_EGRESS: dict[str, str] = {"azure": "nat"}

NO_EGRESS_WARNING = ("none: the hosts have no route to the internet (a private subnet, no public "
                     "IP, no NAT gateway): the bootstrap cannot install packages or download "
                     "Firecracker, so the L1 never reports ready unless its image already "
                     "holds everything")


@dataclass(frozen=True)
class EgressCost:
    """What a group's outbound path costs per hour, and a note saying so with its date."""

    mode: str
    usd_per_hour: float
    note: str
    price_date: str | None


def _egress_usd_per_hour(provider: str, mode: str, instances: int) -> float | None:
    if provider != "azure":
        return None
    if mode == "nat":  # one NAT gateway per group, with one Standard public IP
        return AZURE_NAT_GATEWAY_USD_H + AZURE_STANDARD_PUBLIC_IP_USD_H
    if mode == "public-ip":
        return AZURE_STANDARD_PUBLIC_IP_USD_H * instances
    return 0.0


def egress_cost(provider: str, egress: str | None, instances: int) -> EgressCost | None:
    """The hourly cost of ``instances`` hosts' outbound path on ``provider`` (None: the
    provider's default), or None where nestcloud prices no outbound path (AWS: the default
    VPC's public addresses)."""
    mode = egress or DEFAULT_EGRESS.get(provider)
    if mode is None:
        return None
    usd = _egress_usd_per_hour(provider, mode, instances)
    if usd is None:
        return None
    if mode == "none":
        return EgressCost(mode, 0.0, f"egress: {NO_EGRESS_WARNING}", None)
    when = f"approximate {EGRESS_PRICE_DATE.split()[0]} prices from third-party cost guides"
    if mode == "nat":
        note = (f"egress: NAT gateway ${AZURE_NAT_GATEWAY_USD_H:.3f}/h + its public IP "
                f"${AZURE_STANDARD_PUBLIC_IP_USD_H:.3f}/h for the group, plus "
                f"${AZURE_NAT_GATEWAY_USD_GB:.3f} per GB processed (not in the total)")
    else:
        note = (f"egress: a public IP per VM (no inbound rule), "
                f"${AZURE_STANDARD_PUBLIC_IP_USD_H:.3f}/h each")
    other = "public-ip" if mode == "nat" else "nat"
    other_usd = _egress_usd_per_hour(provider, other, instances) or 0.0
    if other_usd < usd - 1e-9:
        note += f"; --egress {other} would cost ${other_usd:.4f}/h"
    return EgressCost(mode, usd, f"{note} ({when})", EGRESS_PRICE_DATE)


# -- Azure ---------------------------------------------------------------------------------


def azure_filter(region: str) -> str:
    return (f"serviceName eq 'Virtual Machines' and armRegionName eq '{region}' "
            "and priceType eq 'Consumption'")


def parse_azure_items(items: Iterable[dict[str, Any]]) -> PriceTable:
    """Linux pay-as-you-go and spot USD/hour per (armSkuName, armRegionName). Pure."""
    best: dict[tuple[str, str, str], tuple[str, float]] = {}
    for it in items:
        if it.get("currencyCode", "USD") != "USD" or it.get("type", "Consumption") != "Consumption":
            continue
        if str(it.get("unitOfMeasure", "1 Hour")) != "1 Hour":
            continue
        product = str(it.get("productName", ""))
        meter = str(it.get("meterName", ""))
        sku, region = it.get("armSkuName"), it.get("armRegionName")
        price = it.get("retailPrice")
        if not sku or not region or not isinstance(price, (int, float)):
            continue
        if product.endswith(" Windows") or meter.endswith(" Low Priority"):
            continue
        kind = "spot" if meter.endswith(" Spot") else "od"
        key = (str(sku), str(region), kind)
        start = str(it.get("effectiveStartDate", ""))
        # Several rows for one meter: the newest effective date wins, then the lower price.
        if key not in best or (start, -price) > (best[key][0], -best[key][1]):
            best[key] = (start, float(price))
    out: PriceTable = {}
    for (sku, region, kind), (_, price) in best.items():
        od, spot = out.get((sku, region), (None, None))
        out[(sku, region)] = (price, spot) if kind == "od" else (od, price)
    return out


UrlOpen = Callable[..., Any]


def fetch_azure(regions: list[str], *, url: str | None = None, opener: UrlOpen | None = None,
                timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every item for these regions, following NextPageLink."""
    base = url or os.environ.get(ENV_AZURE_PRICES_URL) or AZURE_PRICES_URL
    open_ = opener or urllib.request.urlopen
    items: list[dict[str, Any]] = []
    for region in regions:
        nxt: str | None = base + "?" + urllib.parse.urlencode(
            {"$filter": azure_filter(region)}, quote_via=urllib.parse.quote)
        pages = 0
        while nxt:
            pages += 1
            if pages > AZURE_MAX_PAGES:
                raise ProviderError(f"Azure Retail Prices: more than {AZURE_MAX_PAGES} pages "
                                    f"for {region}; stopping", provider="azure")
            try:
                with open_(nxt, timeout=timeout) as resp:
                    doc = json.loads(resp.read().decode("utf-8"))
            except (OSError, ValueError) as exc:
                raise ProviderError(f"Azure Retail Prices API: {nxt}: {exc}",
                                    hint=f"set {ENV_AZURE_PRICES_URL} to use another endpoint",
                                    provider="azure") from exc
            items += list(doc.get("Items") or [])
            nxt = doc.get("NextPageLink") or None
    return items


# -- AWS -----------------------------------------------------------------------------------


def aws_filters(region: str) -> list[dict[str, str]]:
    f = {"regionCode": region, **AWS_FILTERS}
    return [{"Type": "TERM_MATCH", "Field": k, "Value": v} for k, v in f.items()]


def parse_aws_price_list(price_list: Iterable[str | dict[str, Any]]) -> PriceTable:
    """On-demand USD/hour per (instanceType, regionCode) from GetProducts' PriceList. Pure."""
    out: PriceTable = {}
    for entry in price_list:
        doc = json.loads(entry) if isinstance(entry, str) else entry
        attrs = (doc.get("product") or {}).get("attributes") or {}
        itype, region = attrs.get("instanceType"), attrs.get("regionCode")
        if not itype or not region:
            continue
        if any(attrs.get(k, v) != v for k, v in AWS_FILTERS.items()):
            continue
        for term in ((doc.get("terms") or {}).get("OnDemand") or {}).values():
            for dim in (term.get("priceDimensions") or {}).values():
                if dim.get("unit") not in ("Hrs", "Hours", "Hour"):
                    continue
                usd = (dim.get("pricePerUnit") or {}).get("USD")
                try:
                    price = float(usd)
                except (TypeError, ValueError):
                    continue
                old = out.get((itype, region), (None, None))[0]
                out[(itype, region)] = (price if old is None else min(old, price), None)
    return out


def fetch_aws(regions: list[str], *, client: Any = None) -> list[str]:
    """Every GetProducts PriceList entry for these regions (boto3; us-east-1 endpoint)."""
    if client is None:
        try:
            import boto3
        except ImportError as exc:
            from nestcloud.errors import MissingDependencyError

            raise MissingDependencyError("refreshing AWS prices needs boto3",
                                         hint="pip install 'nestcloud[aws]'",
                                         provider="aws") from exc
        client = boto3.client("pricing", region_name=AWS_PRICING_REGION)
    from botocore.exceptions import BotoCoreError, ClientError

    out: list[str] = []
    try:
        for region in regions:
            pages = client.get_paginator("get_products").paginate(
                ServiceCode="AmazonEC2", FormatVersion="aws_v1", Filters=aws_filters(region))
            for page in pages:
                out += page.get("PriceList", [])
    except (ClientError, BotoCoreError) as exc:
        raise ProviderError(f"AWS Price List API: {exc}", provider="aws") from exc
    return out


# -- applying ------------------------------------------------------------------------------


class RefreshResult(Rendered, BaseModel):
    model_config = ConfigDict(extra="forbid")
    columns: ClassVar[tuple[str, ...]] = (
        "type", "region", "on-demand before", "on-demand now", "spot before", "spot now")

    provider: str
    regions: list[str]
    source: str
    date: str
    updated: int = 0
    changed: list[dict[str, Any]] = Field(default_factory=list)
    not_found: list[str] = Field(default_factory=list)
    notes: list[str] = Field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def rows(self) -> list[list[str]]:
        def usd(prices: dict[str, Any] | None, kind: str) -> str:
            value = None if prices is None else prices.get(kind)
            return "-" if value is None else f"{value:.4f}"

        return [[c["type"], c["region"], usd(c["old"], "on_demand"), usd(c["new"], "on_demand"),
                 usd(c["old"], "spot"), usd(c["new"], "spot")] for c in self.changed]

    def caption(self) -> str:
        return (f"{self.updated} {self.provider} price(s) in {', '.join(self.regions)} now from "
                f"{self.source} (price date: {self.date}); {len(self.changed)} changed")

    def text(self, *, file: str | None = None, **options: Any) -> list[Block]:
        """One line; ``file``: the catalog it was written to."""
        return [f"{file}: {self.caption()}" if file else self.caption()]

    def json_doc(self, *, file: str | None = None, **options: Any) -> Any:
        return {**self.to_dict(), "file": file} if file is not None else self.to_dict()


SOURCE_TEXT = {
    "aws": "AWS Price List Query API (pricing GetProducts): on-demand, Linux, shared tenancy, "
           "no pre-installed software",
    "azure": "Azure Retail Prices API: Consumption, Linux (Windows products skipped); Spot "
             "meters as spot",
}


def apply_prices(catalog: Catalog, provider: str, regions: list[str], table: PriceTable,
                 today: dt.date) -> tuple[Catalog, RefreshResult]:
    """A new catalog whose prices for (provider, regions) come from ``table``, dated today.

    Entries the table lacks keep their old price and source. AWS's table has no spot prices:
    a refreshed AWS entry drops its old spot value rather than mislabel it with today's date.
    """
    key = f"{provider}-prices-{today.isoformat()}"
    src = Source(description=SOURCE_TEXT[provider], date=today)
    lower = {(n.lower(), r): v for (n, r), v in table.items()}
    res = RefreshResult(provider=provider, regions=regions, source=key, date=today.isoformat())
    dropped_spot = 0
    new_types = []
    for t in catalog.types:
        if t.provider != provider:
            new_types.append(t)
            continue
        prices = dict(t.prices)
        t_regions = list(t.regions)
        for region in regions:
            hit = lower.get((t.name.lower(), region))
            if hit is None:
                if region in t.regions or region in t.prices:
                    res.not_found.append(f"{t.name} {region}")
                continue
            od, spot = hit
            old = prices.get(region)
            if old is not None and old.spot is not None and spot is None and provider == "aws":
                dropped_spot += 1
            new = RegionPrice(on_demand=od, spot=spot, source=key)
            if old is None or (old.on_demand, old.spot) != (od, spot):
                res.changed.append({"type": t.name, "region": region,
                                    "old": None if old is None else
                                    {"on_demand": old.on_demand, "spot": old.spot},
                                    "new": {"on_demand": od, "spot": spot}})
            prices[region] = new
            res.updated += 1
            if t_regions and region not in t_regions:
                t_regions.append(region)
        new_types.append(t.replace(prices=prices, regions=sorted(t_regions)))
    if dropped_spot:
        res.notes.append(f"{dropped_spot} AWS spot price(s) dropped: the Price List API has no "
                         "spot prices, and keeping the old value would date it today")
    sources = {**catalog.sources, key: src}
    data = catalog.to_dict(mode="json")
    data["sources"] = {k: v.to_dict(mode="json") for k, v in sources.items()}
    data["types"] = [t.to_dict(mode="json") for t in new_types]
    # Unused older price sources stay: other types may still rest on them.
    return Catalog.validate(data), res


def refresh_prices(catalog: Catalog, provider: str, regions: list[str] | None = None, *,
                   today: dt.date | None = None, azure_url: str | None = None,
                   aws_client: Any = None, opener: UrlOpen | None = None
                   ) -> tuple[Catalog, RefreshResult]:
    """Fetch and apply prices for one provider (regions default to the catalog's)."""
    if provider not in ("aws", "azure"):
        raise InputError(f"--provider {provider!r}: refresh-prices knows aws and azure")
    known = catalog.regions(provider)
    regions = list(dict.fromkeys(regions or known))
    unknown = [r for r in regions if r not in known]
    if unknown:
        raise InputError(f"--region {', '.join(unknown)}: the catalog lists no {provider} type "
                         f"there (known: {', '.join(known)})")
    if not regions:
        raise InputError(f"the catalog has no {provider} regions to refresh")
    if provider == "azure":
        table = parse_azure_items(fetch_azure(regions, url=azure_url, opener=opener))
    else:
        table = parse_aws_price_list(fetch_aws(regions, client=aws_client))
    return apply_prices(catalog, provider, regions, table,
                        today or dt.datetime.now(dt.timezone.utc).date())


def dump(catalog: Catalog) -> str:
    """Catalog YAML through the catalog's own dumper."""
    from nestcloud.catalog import dump_catalog

    try:
        return dump_catalog(catalog)
    except ModuleNotFoundError as exc:
        if exc.name != "nestcloud._catalog_dump":
            raise
        # The catalog's readable dumper is not installed: plain YAML reads back the same.
        import yaml

        return yaml.safe_dump(catalog.to_dict(mode="json", exclude_none=True),
                              sort_keys=False, allow_unicode=True)
