"""Refreshing catalog prices from the providers' price APIs (`catalog refresh-prices`), and
the price of a group's outbound path.

Only this command touches the network for prices; planning and launching read the catalog
file and never wait on a price API. Each provider fetches its own prices
(``capabilities.prices`` / ``fetch_prices``); this module applies them to the catalog, dated
today, and asks the provider what its hosts' outbound path costs (``egress_cost``), which the
catalog has no place for.
"""

from __future__ import annotations

import datetime as dt
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict, Field

from nestcloud.catalog import Catalog, RegionPrice, Source
from nestcloud.errors import InputError
from nestcloud.provider import EgressCost, PriceFetch, PriceTable, available, load_factory
from nestcloud.render import Block, Rendered

__all__ = ["EgressCost", "PriceTable", "RefreshResult", "apply_prices", "dump", "egress_cost",
           "refresh_prices"]


def egress_cost(provider: str, egress: str | None, instances: int) -> EgressCost | None:
    """The hourly cost of ``instances`` hosts' outbound path ``egress`` on ``provider`` (None:
    the provider's default), or None where the provider prices no outbound path (it declares
    no ``capabilities.egress``, or is not installed: a plan may list every catalog entry)."""
    if provider not in available():
        return None
    cls = load_factory(provider)
    if not cls.capabilities.egress:
        return None
    cost: EgressCost | None = cls.egress_cost(egress, instances)
    return cost


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


def apply_prices(catalog: Catalog, provider: str, regions: list[str], fetched: PriceFetch,
                 today: dt.date, source: str) -> tuple[Catalog, RefreshResult]:
    """A new catalog whose prices for (provider, regions) come from ``fetched``, dated today
    and described by ``source``.

    Entries the table lacks keep their old price and source. A table without spot prices
    (``fetched.spot`` False) drops a refreshed entry's old spot value rather than mislabel it
    with today's date.
    """
    table = fetched.table
    key = f"{provider}-prices-{today.isoformat()}"
    src = Source(description=source, date=today)
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
            if old is not None and old.spot is not None and spot is None and not fetched.spot:
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
        res.notes.append(f"{dropped_spot} spot price(s) dropped: the {provider} price source "
                         "has no spot prices, and keeping the old value would date it today")
    res.notes.extend(fetched.notes)
    sources = {**catalog.sources, key: src}
    data = catalog.to_dict(mode="json")
    data["sources"] = {k: v.to_dict(mode="json") for k, v in sources.items()}
    data["types"] = [t.to_dict(mode="json") for t in new_types]
    # Unused older price sources stay: other types may still rest on them.
    return Catalog.validate(data), res


def refresh_prices(catalog: Catalog, provider: str, regions: list[str] | None = None, *,
                   today: dt.date | None = None) -> tuple[Catalog, RefreshResult]:
    """Fetch (through the provider's ``fetch_prices``) and apply prices for one provider;
    regions default to the catalog's."""
    cls = load_factory(provider)
    source: str | None = cls.capabilities.prices
    if source is None:
        raise InputError(f"--provider {provider!r}: this provider reads no price API, so "
                         "refresh-prices cannot update its prices",
                         hint="edit the catalog's prices by hand, with their source and date")
    known = catalog.regions(provider)
    regions = list(dict.fromkeys(regions or known))
    unknown = [r for r in regions if r not in known]
    if unknown:
        raise InputError(f"--region {', '.join(unknown)}: the catalog lists no {provider} type "
                         f"there (known: {', '.join(known)})")
    if not regions:
        raise InputError(f"the catalog has no {provider} regions to refresh")
    fetched: PriceFetch = cls.fetch_prices(regions, catalog)
    return apply_prices(catalog, provider, regions, fetched,
                        today or dt.datetime.now(dt.timezone.utc).date(), source)


def dump(catalog: Catalog) -> str:
    """Catalog YAML through the catalog's own readable dumper."""
    from nestcloud._catalog_dump import dump as dump_catalog

    return dump_catalog(catalog)
