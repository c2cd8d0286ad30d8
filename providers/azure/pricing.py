"""Azure prices: VM sizes from the Retail Prices API, and the hosts' outbound path.

- ``fetch_prices`` (``catalog refresh-prices``): the Retail Prices API (no auth),
  ``priceType eq 'Consumption'`` per region, following ``NextPageLink``; Windows products are
  skipped, meters ending " Spot" are spot prices, " Low Priority" meters are skipped
  (FACTS.md, Azure, "Prices"). Fetching (I/O) and parsing (pure) are separate so tests feed
  recorded payloads to the parser and a loopback server to the fetcher.
- ``egress_cost``: what the outbound path (``--egress``) costs per hour, which the catalog has
  no place for: fixed, approximate figures with their source and date, added to plans and lab
  costs. Pure.

Only ``fetch_prices`` touches the network; planning and launching never wait on a price API.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from nestcloud.errors import InputError, ProviderError
from nestcloud.provider import NO_EGRESS_WARNING, EgressCost, PriceFetch, PriceTable
from providers.azure.plan import EGRESS_MODES, PROVIDER

# The catalog's description of prices refreshed from here (Capabilities.prices).
SOURCE_TEXT = ("Azure Retail Prices API: Consumption, Linux (Windows products skipped); Spot "
               "meters as spot")
AZURE_PRICES_URL = "https://prices.azure.com/api/retail/prices"
ENV_AZURE_PRICES_URL = "NESTCLOUD_AZURE_PRICES_URL"
AZURE_MAX_PAGES = 500  # a loop guard: a region is a few dozen pages

UrlOpen = Callable[..., Any]


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


def fetch_azure(regions: Sequence[str], *, url: str | None = None,
                opener: UrlOpen | None = None, timeout: float = 30.0) -> list[dict[str, Any]]:
    """Every item for these regions, following NextPageLink (``url``, else
    NESTCLOUD_AZURE_PRICES_URL, else the public API)."""
    from urllib.request import urlopen  # http.client and ssl: only when prices are fetched

    base = url or os.environ.get(ENV_AZURE_PRICES_URL) or AZURE_PRICES_URL
    open_ = opener or urlopen
    items: list[dict[str, Any]] = []
    for region in regions:
        nxt: str | None = base + "?" + urlencode({"$filter": azure_filter(region)},
                                                 quote_via=quote)
        pages = 0
        while nxt:
            pages += 1
            if pages > AZURE_MAX_PAGES:
                raise ProviderError(f"Azure Retail Prices: more than {AZURE_MAX_PAGES} pages "
                                    f"for {region}; stopping", provider=PROVIDER)
            try:
                with open_(nxt, timeout=timeout) as resp:
                    doc = json.loads(resp.read().decode("utf-8"))
            except (OSError, ValueError) as exc:
                raise ProviderError(f"Azure Retail Prices API: {nxt}: {exc}",
                                    hint=f"set {ENV_AZURE_PRICES_URL} to use another endpoint",
                                    provider=PROVIDER) from exc
            items += list(doc.get("Items") or [])
            nxt = doc.get("NextPageLink") or None
    return items


def fetch_prices(regions: Sequence[str]) -> PriceFetch:
    """On-demand and spot USD/hour per (size, region) for ``regions``; network."""
    return PriceFetch(table=parse_azure_items(fetch_azure(regions)), spot=True)


# -- egress: how hosts reach the internet ------------------------------------------------------

# FACTS.md, Azure, "Egress": third-party cost guides summarising Azure's pricing page in 2026
# (approximate, US regions). No API call refreshes these; the date says how old they are.
EGRESS_PRICE_DATE = "2026 (approximate)"
EGRESS_PRICE_SOURCE = ("FACTS.md (Azure, Egress): third-party cost guides summarising Azure's "
                       "pricing page, 2026, approximate, US regions")
NAT_GATEWAY_USD_H = 0.045
NAT_GATEWAY_USD_GB = 0.045
STANDARD_PUBLIC_IP_USD_H = 0.005


def _usd_per_hour(mode: str, instances: int) -> float:
    if mode == "nat":  # one NAT gateway per group, with one Standard public IP
        return NAT_GATEWAY_USD_H + STANDARD_PUBLIC_IP_USD_H
    if mode == "public-ip":
        return STANDARD_PUBLIC_IP_USD_H * instances
    return 0.0


def egress_cost(mode: str, instances: int) -> EgressCost:
    """The hourly cost of ``instances`` hosts' outbound path ``mode``, with a dated note that
    names the cheaper path when there is one."""
    if mode not in EGRESS_MODES:
        raise InputError(f"--egress {mode!r}: one of {', '.join(EGRESS_MODES)}")
    if mode == "none":
        return EgressCost(mode, 0.0, f"egress: {NO_EGRESS_WARNING}", None)
    usd = _usd_per_hour(mode, instances)
    when = f"approximate {EGRESS_PRICE_DATE.split()[0]} prices from third-party cost guides"
    if mode == "nat":
        note = (f"egress: NAT gateway ${NAT_GATEWAY_USD_H:.3f}/h + its public IP "
                f"${STANDARD_PUBLIC_IP_USD_H:.3f}/h for the group, plus "
                f"${NAT_GATEWAY_USD_GB:.3f} per GB processed (not in the total)")
    else:
        note = (f"egress: a public IP per VM (no inbound rule), "
                f"${STANDARD_PUBLIC_IP_USD_H:.3f}/h each")
    other = "public-ip" if mode == "nat" else "nat"
    other_usd = _usd_per_hour(other, instances)
    if other_usd < usd - 1e-9:
        note += f"; --egress {other} would cost ${other_usd:.4f}/h"
    return EgressCost(mode, usd, f"{note} ({when})", EGRESS_PRICE_DATE)


def launch_note(mode: str, nat: str, nat_ip: str, public_ip: bool) -> str:
    """What a launch's note says about the hosts' way out (``nat``/``nat_ip``: the names of
    the group's NAT gateway and its address), with its approximate price."""
    when = f"approximate {EGRESS_PRICE_DATE.split()[0]} prices"
    if mode == "nat":
        return (f"egress: NAT gateway {nat} on the subnet (public IP {nat_ip}): "
                f"${NAT_GATEWAY_USD_H:.3f}/h + ${NAT_GATEWAY_USD_GB:.3f} per GB processed, "
                f"its IP ${STANDARD_PUBLIC_IP_USD_H:.3f}/h ({when})"
                + ("" if public_ip else "; no VM gets an address of its own"))
    if mode == "public-ip":
        return (f"egress: a Standard public IP per VM, "
                f"${STANDARD_PUBLIC_IP_USD_H:.3f}/h each ({when}); no inbound rule "
                "unless --ssh-cidr")
    return f"egress: {NO_EGRESS_WARNING}"
