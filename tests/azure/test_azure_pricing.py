"""Azure's prices from its own package: the Retail Prices API (``fetch_prices``) and the hosts'
outbound path (``egress_cost``), both called through the class as the core calls them.

Every Retail Prices payload here is a HAND-MADE example of the API's documented response shape
(Items[] with armSkuName/armRegionName/meterName/productName/retailPrice and NextPageLink;
FACTS.md, Azure, "Prices"). The numbers are NOT real prices. The egress figures are FACTS.md's
(Azure, "Egress": third-party cost guides summarising Azure's pricing page in 2026,
approximate, US regions).
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fakes.http_fake import Answer, JsonServer
from fakes.price_apis import az_item, retail_prices

from nestcloud.errors import ProviderError
from nestcloud.provider import NO_EGRESS_WARNING, EgressCost, PriceFetch, load_factory
from providers.azure import pricing
from providers.azure.pricing import azure_filter, parse_azure_items

NAT_H, NAT_GB, IP_H = 0.045, 0.045, 0.005  # FACTS.md, Azure, "Egress" (approximate, 2026)


PAGE_1 = [
    az_item("Standard_D4s_v5", "eastus", 0.5),
    az_item("Standard_D4s_v5", "eastus", 0.9, product="Virtual Machines Dsv5 Series Windows"),
    az_item("Standard_D4s_v5", "eastus", 0.11, meter="D4s v5 Spot"),
    az_item("Standard_D4s_v5", "eastus", 0.12, meter="D4s v5 Low Priority"),
]
PAGE_2 = [
    # An older row for the same meter: the newer effective date wins.
    az_item("Standard_D4s_v5", "eastus", 0.4, start="2023-01-01T00:00:00Z"),
    az_item("Standard_D2as_v4", "eastus", 0.3, meter="D2as v4",
            product="Virtual Machines Dasv4 Series"),
]


def test_parse_azure_items() -> None:
    assert parse_azure_items(PAGE_1 + PAGE_2) == {
        ("Standard_D4s_v5", "eastus"): (0.5, 0.11), ("Standard_D2as_v4", "eastus"): (0.3, None)}


def test_parse_skips_other_currencies_units_and_broken_rows() -> None:
    rows = [{**az_item("Standard_A", "eastus", 1.0), "currencyCode": "EUR"},
            {**az_item("Standard_B", "eastus", 1.0), "unitOfMeasure": "1/Month"},
            {**az_item("Standard_C", "eastus", 1.0), "type": "Reservation"},
            {**az_item("Standard_D", "eastus", 1.0), "retailPrice": "1.0"},
            {**az_item("Standard_E", "eastus", 1.0), "armSkuName": ""}]
    assert parse_azure_items(rows) == {}


TWO_PAGES = retail_prices({"eastus": [PAGE_1, PAGE_2],
                           "westus2": [[az_item("Standard_D4s_v5", "westus2", 0.6)]]})


@pytest.fixture
def serve(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[[Answer], JsonServer]]:
    servers: list[JsonServer] = []

    def start(answer: Answer) -> JsonServer:
        s = JsonServer(answer).start()
        servers.append(s)
        monkeypatch.setenv("NESTCLOUD_AZURE_PRICES_URL", s.url + "/api/retail/prices")
        return s

    yield start
    for s in servers:
        s.stop()


def test_fetch_prices_follows_pages_per_region(serve: Callable[[Answer], JsonServer]) -> None:
    server = serve(TWO_PAGES)
    got = load_factory("azure").fetch_prices(["eastus", "westus2"])
    assert isinstance(got, PriceFetch)
    assert got.spot is True  # spot meters are read: an entry keeps them
    assert got.table == {("Standard_D4s_v5", "eastus"): (0.5, 0.11),
                         ("Standard_D2as_v4", "eastus"): (0.3, None),
                         ("Standard_D4s_v5", "westus2"): (0.6, None)}
    # What we sent: one filtered query per region, then the NextPageLink as given.
    queries = [r.query for r in server.requests]
    assert [q["$filter"] for q in queries] == [
        azure_filter("eastus"), azure_filter("eastus"), azure_filter("westus2")]
    assert queries[1]["page"] == "2"
    assert azure_filter("eastus") == ("serviceName eq 'Virtual Machines' and armRegionName eq "
                                      "'eastus' and priceType eq 'Consumption'")


def test_fetch_prices_stops_a_page_loop(serve: Callable[[Answer], JsonServer],
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pricing, "AZURE_MAX_PAGES", 3)
    server = serve(lambda req, url: (200, {"Items": [], "NextPageLink": (
        f"{url}{req.path}?{urllib.parse.urlencode(req.query)}")}))  # this page again
    with pytest.raises(ProviderError) as err:
        load_factory("azure").fetch_prices(["eastus"])
    assert err.value.message == "Azure Retail Prices: more than 3 pages for eastus; stopping"
    assert err.value.provider == "azure"
    assert len(server.requests) == 3


def test_fetch_prices_names_an_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NESTCLOUD_AZURE_PRICES_URL", "http://127.0.0.1:9/prices")
    with pytest.raises(ProviderError) as err:
        load_factory("azure").fetch_prices(["eastus"])
    assert err.value.message.startswith("Azure Retail Prices API: http://127.0.0.1:9/prices?")
    assert err.value.hint == "set NESTCLOUD_AZURE_PRICES_URL to use another endpoint"


def test_fetch_prices_defaults_to_the_public_api(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NESTCLOUD_AZURE_PRICES_URL", raising=False)
    opened: list[str] = []

    class Page:
        def __enter__(self) -> Page:
            return self

        def __exit__(self, *a: Any) -> None:
            pass

        def read(self) -> bytes:
            return json.dumps({"Items": [az_item("Standard_X", "eastus", 1.0)]}).encode()

    def opener(url: str, timeout: float) -> Page:
        opened.append(url)
        return Page()

    items = pricing.fetch_azure(["eastus"], opener=opener)
    assert [i["armSkuName"] for i in items] == ["Standard_X"]
    assert opened == ["https://prices.azure.com/api/retail/prices?%24filter="
                      + urllib.parse.quote(azure_filter("eastus"))]


# -- egress ------------------------------------------------------------------------------------


def egress(mode: str | None, instances: int) -> EgressCost:
    got = load_factory("azure").egress_cost(mode, instances)
    assert isinstance(got, EgressCost)
    return got


@pytest.mark.parametrize("mode", [None, "nat"])
def test_nat_gateway_is_the_default_and_costs_one_gateway_and_its_ip(mode: str | None) -> None:
    got = egress(mode, 3)
    assert got.mode == "nat"
    assert got.usd_per_hour == pytest.approx(NAT_H + IP_H)  # per group, not per seat
    assert got.price_date == "2026 (approximate)"
    assert got.note == (
        f"egress: NAT gateway ${NAT_H:.3f}/h + its public IP ${IP_H:.3f}/h for the group, plus "
        f"${NAT_GB:.3f} per GB processed (not in the total); --egress public-ip would cost "
        f"${3 * IP_H:.4f}/h (approximate 2026 prices from third-party cost guides)")


def test_public_ip_costs_one_address_per_host() -> None:
    got = egress("public-ip", 4)
    assert got.mode == "public-ip" and got.usd_per_hour == pytest.approx(4 * IP_H)
    assert got.note == (f"egress: a public IP per VM (no inbound rule), ${IP_H:.3f}/h each "
                        "(approximate 2026 prices from third-party cost guides)")
    # Above ten hosts the one NAT gateway is cheaper, and the note says so.
    many = egress("public-ip", 12)
    assert many.usd_per_hour == pytest.approx(12 * IP_H)
    assert f"; --egress nat would cost ${NAT_H + IP_H:.4f}/h" in many.note


def test_none_costs_nothing_and_warns() -> None:
    got = egress("none", 5)
    assert (got.mode, got.usd_per_hour, got.price_date) == ("none", 0.0, None)
    assert got.note == f"egress: {NO_EGRESS_WARNING}"


def test_the_default_comes_from_the_declared_egress() -> None:
    cls = load_factory("azure")
    assert egress(None, 2) == egress(cls.capabilities.egress[0], 2)


def test_an_unknown_mode_is_bad_input() -> None:
    from nestcloud.errors import InputError

    with pytest.raises(InputError) as err:
        load_factory("azure").egress_cost("vpn", 1)
    assert err.value.message == "--egress 'vpn': one of nat, public-ip, none"
