"""`catalog refresh-prices` from recorded API responses served on loopback.

Every payload here is a HAND-MADE example of each API's documented response shape, built and
served by tests/fakes/price_apis.py (which names the shapes). The numbers are NOT real prices.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from fakes.http_fake import JsonServer
from fakes.price_apis import aws_product, az_item, get_products, retail_prices
from typer.testing import CliRunner

from nestcloud.catalog import load_catalog, parse_catalog
from nestcloud.cli import app
from nestcloud.errors import InputError, ProviderError
from nestcloud.prices import apply_prices, refresh_prices
from nestcloud.provider import PriceFetch
from providers.aws.pricing import parse_price_list as parse_aws_price_list
from providers.azure.pricing import azure_filter, parse_azure_items

from .conftest import CATALOG_YAML

TODAY = dt.date(2026, 11, 29)


AZ_PAGE_1 = [
    az_item("Standard_D4s_v5", "eastus", 0.5),
    az_item("Standard_D4s_v5", "eastus", 0.9, product="Virtual Machines Dsv5 Series Windows"),
    az_item("Standard_D4s_v5", "eastus", 0.11, meter="D4s v5 Spot"),
    az_item("Standard_D4s_v5", "eastus", 0.12, meter="D4s v5 Low Priority"),
]
AZ_PAGE_2 = [
    # An older row for the same meter: the newer effective date wins.
    az_item("Standard_D4s_v5", "eastus", 0.4, start="2023-01-01T00:00:00Z"),
    az_item("Standard_D2as_v4", "eastus", 0.3, meter="D2as v4",
            product="Virtual Machines Dasv4 Series"),
    az_item("Standard_D8s_v5", "eastus", 1.0, meter="D8s v5"),  # not in the catalog
]


def test_parse_azure_items() -> None:
    table = parse_azure_items(AZ_PAGE_1 + AZ_PAGE_2)
    assert table == {("Standard_D4s_v5", "eastus"): (0.5, 0.11),
                     ("Standard_D2as_v4", "eastus"): (0.3, None),
                     ("Standard_D8s_v5", "eastus"): (1.0, None)}


@pytest.fixture
def azure_server() -> Iterator[JsonServer]:
    with JsonServer(retail_prices({
            "eastus": [AZ_PAGE_1, AZ_PAGE_2],
            "westus2": [[az_item("Standard_D4s_v5", "westus2", 0.6)]]})) as s:
        yield s


def test_refresh_azure_follows_pages_and_dates_prices(azure_server: JsonServer,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    cat = parse_catalog(CATALOG_YAML)
    monkeypatch.setenv("NESTCLOUD_AZURE_PRICES_URL", azure_server.url + "/api/retail/prices")
    new, res = refresh_prices(cat, "azure", today=TODAY)
    # What we sent: one filtered query per region, then the NextPageLink as given.
    queries = [r.query for r in azure_server.requests]
    assert [q["$filter"] for q in queries] == [
        azure_filter("eastus"), azure_filter("eastus"), azure_filter("westus2")]
    assert queries[1]["page"] == "2"
    t = new.get("azure", "Standard_D4s_v5")
    assert t is not None
    assert (t.prices["eastus"].on_demand, t.prices["eastus"].spot) == (0.5, 0.11)
    assert (t.prices["westus2"].on_demand, t.prices["westus2"].spot) == (0.6, None)
    assert t.prices["eastus"].source == "azure-prices-2026-11-29"
    assert new.source_date("azure-prices-2026-11-29") == "2026-11-29"
    assert (res.updated, res.not_found) == (3, [])
    # AWS entries untouched, with their old source.
    assert new.get("aws", "c8i.large") == cat.get("aws", "c8i.large")


def test_cli_refresh_azure_writes_the_catalog(azure_server: JsonServer, tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text(CATALOG_YAML)
    monkeypatch.setenv("NESTCLOUD_AZURE_PRICES_URL", azure_server.url + "/api/retail/prices")
    r = CliRunner().invoke(app, ["catalog", "refresh-prices", "--provider", "azure",
                                 "--region", "eastus", "--catalog", str(path)])
    assert r.exit_code == 0, r.stderr
    today = dt.datetime.now(dt.timezone.utc).date().isoformat()
    assert r.stdout == (f"{path}: 2 azure price(s) in eastus now from azure-prices-{today} "
                        f"(price date: {today}); 2 changed\n")
    cat = load_catalog(path)
    assert cat.get("azure", "Standard_D4s_v5").prices["eastus"].on_demand == 0.5  # type: ignore
    # westus2 was not asked for: its old price and source stay.
    assert cat.get("azure", "Standard_D4s_v5").prices["westus2"].source == "pnodate"  # type: ignore
    # The planner now shows today's date on eastus.
    r = CliRunner().invoke(app, ["plan", "--vcpus", "4", "--memory", "16", "--providers",
                                 "azure", "--regions", "eastus", "--json", "--catalog",
                                 str(path)])
    assert json.loads(r.stdout)["options"][0]["price_date"] == today


def test_refresh_unknown_region_and_unreachable_endpoint(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    cat = parse_catalog(CATALOG_YAML)
    with pytest.raises(InputError, match=r"--region uksouth: the catalog lists no azure type"):
        refresh_prices(cat, "azure", ["uksouth"])
    monkeypatch.setenv("NESTCLOUD_AZURE_PRICES_URL", "http://127.0.0.1:9/prices")
    with pytest.raises(ProviderError, match="Azure Retail Prices API: http://127.0.0.1:9/"):
        refresh_prices(cat, "azure", ["eastus"])


# -- AWS -----------------------------------------------------------------------------------


AWS_PAGES = {
    ("us-east-1", None): ([aws_product("c8i.large", "us-east-1", "0.0999000000"),
                           aws_product("c8i.large", "us-east-1", "0.5", tenancy="Dedicated")],
                          "tok2"),
    ("us-east-1", "tok2"): ([aws_product("c8i.xlarge", "us-east-1", "0.1998000000")], None),
}


def test_parse_aws_price_list_keeps_only_the_wanted_rows() -> None:
    rows = [e for page, _ in AWS_PAGES.values() for e in page]
    assert parse_aws_price_list(rows) == {("c8i.large", "us-east-1"): (0.0999, None),
                                          ("c8i.xlarge", "us-east-1"): (0.1998, None)}


def test_refresh_aws_through_the_pricing_api(monkeypatch: pytest.MonkeyPatch) -> None:
    with JsonServer(get_products(AWS_PAGES), "application/x-amz-json-1.1") as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", server.url)
        cat = parse_catalog(CATALOG_YAML)
        new, res = refresh_prices(cat, "aws", ["us-east-1"], today=TODAY)
    # What we sent: GetProducts for EC2 with the on-demand Linux filters, then the next page.
    assert server.requests[0].headers["X-Amz-Target"] == "AWSPriceListService.GetProducts"
    sent = server.requests[0].body
    assert sent["ServiceCode"] == "AmazonEC2" and sent["FormatVersion"] == "aws_v1"
    assert {f["Field"]: f["Value"] for f in sent["Filters"]} == {
        "regionCode": "us-east-1", "operatingSystem": "Linux", "tenancy": "Shared",
        "preInstalledSw": "NA", "capacitystatus": "Used"}
    assert all(f["Type"] == "TERM_MATCH" for f in sent["Filters"])
    assert server.requests[1].body["NextToken"] == "tok2"
    large = new.get("aws", "c8i.large")
    assert large is not None and large.prices["us-east-1"].on_demand == 0.0999
    # The Price List has no spot price: the old one goes rather than carry today's date.
    assert large.prices["us-east-1"].spot is None
    assert res.notes == ["2 spot price(s) dropped: the aws price source has no spot prices, "
                         "and keeping the old value would date it today"]
    assert new.source_date("aws-prices-2026-11-29") == "2026-11-29"
    # Not returned by the API: kept with its old price and date.
    assert res.not_found == ["m8i.xlarge us-east-1", "c7g.xlarge us-east-1",
                             "c7i.metal-24xl us-east-1"]
    assert new.get("aws", "m8i.xlarge").prices["us-east-1"].source == "p2025"  # type: ignore


def test_apply_adds_a_region_the_type_did_not_list() -> None:
    cat = parse_catalog(CATALOG_YAML)
    new, _ = apply_prices(cat, "aws", ["eu-west-1"],
                          PriceFetch({("m8i.xlarge", "eu-west-1"): (0.3, None)}, spot=False),
                          TODAY, "test prices")
    assert new.get("aws", "m8i.xlarge").regions == ["eu-west-1", "us-east-1"]  # type: ignore
