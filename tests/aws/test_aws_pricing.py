"""AWS prices through the provider's ``fetch_prices`` hook: the Price List Query API, from
recorded responses served on loopback.

Every payload here is a HAND-MADE example of the documented GetProducts response shape
(PriceList[] of JSON strings with product.attributes and terms.OnDemand...priceDimensions...
pricePerUnit.USD). The numbers are NOT real prices.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from fakes.http_fake import JsonServer
from fakes.price_apis import aws_product, get_products

from nestcloud.errors import ProviderError
from nestcloud.provider import PriceFetch
from providers.aws import AwsProvider
from providers.aws.pricing import parse_price_list

PAGES = {
    ("us-east-1", None): ([aws_product("c8i.large", "us-east-1", "0.0999000000"),
                           aws_product("c8i.large", "us-east-1", "0.5", tenancy="Dedicated"),
                           aws_product("c8i.large", "us-east-1", "0.7",
                                       operatingSystem="Windows")],
                          "tok2"),
    ("us-east-1", "tok2"): ([aws_product("c8i.xlarge", "us-east-1", "0.1998000000")], None),
    ("eu-west-1", None): ([aws_product("c8i.large", "eu-west-1", "0.1100000000")], None),
}


@pytest.fixture
def price_list(monkeypatch: pytest.MonkeyPatch) -> Iterator[JsonServer]:
    """A loopback Price List endpoint answering GetProducts from PAGES."""
    with JsonServer(get_products(PAGES), "application/x-amz-json-1.1") as server:
        monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", server.url)
        yield server


def test_the_provider_declares_where_its_prices_come_from() -> None:
    assert AwsProvider.capabilities.prices == (
        "AWS Price List Query API (pricing GetProducts): on-demand, Linux, shared tenancy, "
        "no pre-installed software")


def test_parse_keeps_only_on_demand_linux_shared_rows() -> None:
    rows = [e for page, _ in PAGES.values() for e in page]
    assert parse_price_list(rows) == {("c8i.large", "us-east-1"): (0.0999, None),
                                      ("c8i.xlarge", "us-east-1"): (0.1998, None),
                                      ("c8i.large", "eu-west-1"): (0.11, None)}


def test_parse_skips_rows_without_an_hourly_usd_price() -> None:
    hourly = json.loads(aws_product("c8i.large", "us-east-1", "0.1"))
    dims = hourly["terms"]["OnDemand"]["SKU1.JRTCKXETXF"]["priceDimensions"]
    [dim] = dims.values()
    no_usd = json.loads(json.dumps(hourly))
    [d] = no_usd["terms"]["OnDemand"]["SKU1.JRTCKXETXF"]["priceDimensions"].values()
    d["pricePerUnit"] = {"CNY": "1"}
    per_gb = json.loads(json.dumps(hourly))
    [d] = per_gb["terms"]["OnDemand"]["SKU1.JRTCKXETXF"]["priceDimensions"].values()
    d["unit"] = "GB"
    assert dim["unit"] == "Hrs"
    assert parse_price_list([no_usd, per_gb]) == {}
    assert parse_price_list([hourly]) == {("c8i.large", "us-east-1"): (0.1, None)}


def test_fetch_prices_asks_the_price_list_for_each_region(price_list: JsonServer) -> None:
    from nestcloud.catalog import load_catalog

    # As `catalog refresh-prices` calls it: the catalog being refreshed comes along (unused).
    got = AwsProvider.fetch_prices(["us-east-1", "eu-west-1"], load_catalog())
    assert got == PriceFetch(table={("c8i.large", "us-east-1"): (0.0999, None),
                                    ("c8i.xlarge", "us-east-1"): (0.1998, None),
                                    ("c8i.large", "eu-west-1"): (0.11, None)}, spot=False)
    # What we sent: GetProducts for EC2 with the on-demand Linux filters, every page.
    assert [r.headers["X-Amz-Target"] for r in price_list.requests] == [
        "AWSPriceListService.GetProducts"] * 3
    first = price_list.requests[0].body
    assert first["ServiceCode"] == "AmazonEC2" and first["FormatVersion"] == "aws_v1"
    assert all(f["Type"] == "TERM_MATCH" for f in first["Filters"])
    assert {f["Field"]: f["Value"] for f in first["Filters"]} == {
        "regionCode": "us-east-1", "operatingSystem": "Linux", "tenancy": "Shared",
        "preInstalledSw": "NA", "capacitystatus": "Used"}
    assert price_list.requests[1].body["NextToken"] == "tok2"
    # The Price List API is served from us-east-1 whatever the regions priced.
    assert all("/us-east-1/pricing/aws4_request" in r.headers["Authorization"]
               for r in price_list.requests)


def test_fetch_prices_takes_a_client() -> None:
    import boto3
    from botocore.stub import Stubber

    client = boto3.Session().client("pricing", region_name="us-east-1",
                                    endpoint_url="http://127.0.0.1:9")
    with Stubber(client) as stub:
        stub.add_response("get_products", {
            "PriceList": [aws_product("c8i.large", "us-east-1", "0.2")],
            "FormatVersion": "aws_v1"})
        got = AwsProvider.fetch_prices(["us-east-1"], client=client)
        stub.assert_no_pending_responses()
    assert got.table == {("c8i.large", "us-east-1"): (0.2, None)} and got.spot is False


def test_a_price_list_error_is_a_provider_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_PRICING", "http://127.0.0.1:9")
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with pytest.raises(ProviderError, match=r"^AWS Price List API: ") as info:
        AwsProvider.fetch_prices(["us-east-1"])
    assert info.value.provider == "aws"
