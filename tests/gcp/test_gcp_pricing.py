"""providers/gcp/pricing.py: Cloud Billing Catalog SKUs -> per-type USD/hour.

Payloads are built here in the API's documented shape (services.skus.list: description,
category {resourceFamily, resourceGroup, usageType}, serviceRegions, pricingInfo[].
pricingExpression {usageUnit, tieredRates[].unitPrice {currencyCode, units, nanos}}); the
numbers are made up. The fetcher talks to a loopback HTTP server.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from fakes.http_fake import JsonServer, Request

from nestcloud.catalog import load_catalog
from nestcloud.errors import CredentialsError, InputError, ProviderError, ThrottledError
from providers.gcp import pricing
from providers.gcp.pricing import PRICE_SOURCE, fetch_prices, fetch_skus, parse_skus

KEY = "test-api-key-not-real"
SHAPES = {"n2-standard-4": (4, 16.0), "n1-standard-1": (1, 3.75), "c2-standard-8": (8, 32.0),
          "n2d-standard-4": (4, 16.0), "m9-weird-2": (2, 4.0)}


def usd(value: float) -> dict[str, Any]:
    units = int(value)
    return {"currencyCode": "USD", "units": str(units), "nanos": round((value - units) * 1e9)}


def sku(description: str, group: str, usage: str, regions: list[str], price: float, *,
        unit: str | None = None, effective: str = "2026-01-01T00:00:00Z",
        family: str = "Compute", extra_tiers: list[dict[str, Any]] | None = None
        ) -> dict[str, Any]:
    if unit is None:
        unit = "GiBy.h" if " Ram" in description else "h"
    return {
        "name": f"services/6F81-5844-456A/skus/{abs(hash(description + usage)) % 10**8:08d}",
        "skuId": "0000-0000-0000",
        "description": description,
        "category": {"serviceDisplayName": "Compute Engine", "resourceFamily": family,
                     "resourceGroup": group, "usageType": usage},
        "serviceRegions": regions,
        "pricingInfo": [{
            "effectiveTime": effective, "summary": "",
            "pricingExpression": {
                "usageUnit": unit, "displayQuantity": 1,
                "tieredRates": [{"startUsageAmount": 0, "unitPrice": usd(price)},
                                *(extra_tiers or [])]},
            "currencyConversionRate": 1}],
        "serviceProviderName": "Google",
    }


N2_CPU, N2_RAM, N2_SPOT_CPU, N2_SPOT_RAM = 0.031, 0.0042, 0.0075, 0.001
N1_CPU, N1_RAM = 0.0316, 0.00424
C2_CPU, C2_RAM = 0.0339, 0.00454

SKUS = [
    sku("N2 Instance Core running in Americas", "CPU", "OnDemand", ["us-central1", "us-east1"],
        N2_CPU),
    sku("N2 Instance Ram running in Americas", "RAM", "OnDemand", ["us-central1", "us-east1"],
        N2_RAM),
    sku("Spot Preemptible N2 Instance Core running in Americas", "CPU", "Preemptible",
        ["us-central1"], N2_SPOT_CPU),
    sku("Spot Preemptible N2 Instance Ram running in Americas", "RAM", "Preemptible",
        ["us-central1"], N2_SPOT_RAM),
    sku("N1 Predefined Instance Core running in Americas", "N1Standard", "OnDemand",
        ["us-central1"], N1_CPU),
    sku("N1 Predefined Instance Ram running in Americas", "N1Standard", "OnDemand",
        ["us-central1"], N1_RAM),
    sku("Compute optimized Core running in Americas", "CPU", "OnDemand", ["us-central1"],
        C2_CPU),
    sku("Compute optimized Ram running in Americas", "RAM", "OnDemand", ["us-central1"],
        C2_RAM),
    # Look-alikes that must not be read as N2's or C2's price.
    sku("N2 Custom Instance Core running in Americas", "CPU", "OnDemand", ["us-central1"], 9.0),
    sku("N2D AMD Instance Core running in Americas", "CPU", "OnDemand", ["us-central1"], 9.0),
    sku("Commitment v1: N2 Cpu in Americas for 1 Year", "CPU", "Commit1Yr", ["us-central1"],
        9.0),
    sku("N2 Sole Tenancy Instance Core running in Americas", "CPU", "OnDemand",
        ["us-central1"], 9.0),
    sku("C2D AMD Compute optimized Core running in Americas", "CPU", "OnDemand",
        ["us-central1"], 9.0),
    sku("N2 Instance Core running in Americas (DWS Calendar Mode)", "CPU", "OnDemand",
        ["us-central1"], 9.0),
    # A description that says Core filed under RAM: neither is trusted.
    sku("N2 Instance Core running in Americas", "RAM", "OnDemand", ["us-central1"], 9.0,
        unit="h"),
    sku("Storage PD Capacity", "SSD", "OnDemand", ["us-central1"], 9.0, unit="GiBy.mo",
        family="Storage"),
]


def test_types_are_vcpus_times_core_plus_gib_times_ram() -> None:
    got = parse_skus(SKUS, ["us-central1", "us-east1"], SHAPES)
    assert got.spot is True
    n2 = got.table[("n2-standard-4", "us-central1")]
    assert n2 == (round(4 * N2_CPU + 16 * N2_RAM, 5), round(4 * N2_SPOT_CPU + 16 * N2_SPOT_RAM, 5))
    # us-east1 has on-demand SKUs only: no spot price there.
    assert got.table[("n2-standard-4", "us-east1")] == (round(4 * N2_CPU + 16 * N2_RAM, 5), None)
    # N1's SKUs share one resource group: Core and Ram come from the description.
    assert got.table[("n1-standard-1", "us-central1")] == (round(N1_CPU + 3.75 * N1_RAM, 5), None)
    assert got.table[("c2-standard-8", "us-central1")] == (round(8 * C2_CPU + 32 * C2_RAM, 5),
                                                           None)


def test_types_without_both_skus_are_left_out_and_said() -> None:
    got = parse_skus(SKUS, ["us-central1", "us-east1"], SHAPES)
    assert ("n2d-standard-4", "us-central1") not in got.table  # only the Core SKU exists
    assert ("c2-standard-8", "us-east1") not in got.table
    assert ("m9-weird-2", "us-central1") not in got.table
    assert "no Cloud Billing SKU description known for series m9 (m9-weird-2): not priced" \
        in got.notes
    assert any(n.startswith("n2d in us-central1: no on-demand Ram SKU") for n in got.notes)


def test_only_requested_regions() -> None:
    got = parse_skus(SKUS, ["us-east1"], SHAPES)
    assert {r for _, r in got.table} == {"us-east1"}


def test_the_newest_price_and_the_first_tier_count() -> None:
    old = sku("N2 Instance Core running in Americas", "CPU", "OnDemand", ["us-central1"], 0.5)
    new = sku("N2 Instance Core running in Americas", "CPU", "OnDemand", ["us-central1"], 0.02,
              extra_tiers=[{"startUsageAmount": 100, "unitPrice": usd(0.001)}])
    one = dict(old)
    one["pricingInfo"] = [*old["pricingInfo"], {**new["pricingInfo"][0],
                                                "effectiveTime": "2026-06-01T00:00:00Z"}]
    ram = sku("N2 Instance Ram running in Americas", "RAM", "OnDemand", ["us-central1"], 0.003)
    got = parse_skus([one, ram], ["us-central1"], {"n2-standard-4": (4, 16.0)})
    assert got.table[("n2-standard-4", "us-central1")] == (round(4 * 0.02 + 16 * 0.003, 5), None)


def test_units_and_nanos_add_up() -> None:
    cpu = sku("N2 Instance Core running in Americas", "CPU", "OnDemand", ["us-central1"], 1.5)
    assert cpu["pricingInfo"][0]["pricingExpression"]["tieredRates"][0]["unitPrice"] == {
        "currencyCode": "USD", "units": "1", "nanos": 500000000}
    ram = sku("N2 Instance Ram running in Americas", "RAM", "OnDemand", ["us-central1"], 0.25)
    got = parse_skus([cpu, ram], ["us-central1"], {"n2-standard-2": (2, 8.0)})
    assert got.table[("n2-standard-2", "us-central1")] == (5.0, None)


def test_conflicting_skus_price_nothing_and_say_so() -> None:
    a = sku("N2 Instance Core running in Americas", "CPU", "OnDemand", ["us-central1"], 0.03)
    b = sku("N2 Instance Core running in Iowa", "CPU", "OnDemand", ["us-central1"], 0.04)
    ram = sku("N2 Instance Ram running in Americas", "RAM", "OnDemand", ["us-central1"], 0.004)
    got = parse_skus([a, b, ram], ["us-central1"], {"n2-standard-4": (4, 16.0)})
    assert got.table == {}
    assert any("n2 in us-central1: 2 different on-demand Core prices" in n for n in got.notes)


def test_wrong_units_or_currency_are_skipped() -> None:
    cpu = sku("N2 Instance Core running in Americas", "CPU", "OnDemand", ["us-central1"], 0.03,
              unit="GiBy.h")
    ram = sku("N2 Instance Ram running in Americas", "RAM", "OnDemand", ["us-central1"], 0.004)
    eur = sku("N2 Instance Core running in Americas", "CPU", "OnDemand", ["us-central1"], 0.03)
    eur["pricingInfo"][0]["pricingExpression"]["tieredRates"][0]["unitPrice"]["currencyCode"] \
        = "EUR"
    assert parse_skus([cpu, ram], ["us-central1"], {"n2-standard-4": (4, 16.0)}).table == {}
    assert parse_skus([eur, ram], ["us-central1"], {"n2-standard-4": (4, 16.0)}).table == {}


def test_malformed_entries_are_ignored_not_fatal() -> None:
    junk: list[Any] = [None, 3, {}, {"description": "N2 Instance Core running in X"},
                       {**SKUS[0], "pricingInfo": [{"pricingExpression": {"tieredRates": [
                           {"unitPrice": {"units": "x"}}]}}]}]
    got = parse_skus([*junk, *SKUS[:2]], ["us-central1"], {"n2-standard-4": (4, 16.0)})
    assert got.table == {("n2-standard-4", "us-central1"):
                         (round(4 * N2_CPU + 16 * N2_RAM, 5), None)}


def test_price_source_names_the_api_and_the_method() -> None:
    assert "Cloud Billing Catalog API" in PRICE_SOURCE and "6F81-5844-456A" in PRICE_SOURCE
    assert "vCPU" in PRICE_SOURCE and "GiB" in PRICE_SOURCE and "Preemptible" in PRICE_SOURCE


# -- the fetcher, against a loopback server --------------------------------------------------


class _Api:
    """services.skus.list: ``pages`` in turn, or ``status`` with ``error``. Records what it was
    sent as (path, query, headers by lower-case name)."""

    def __init__(self, pages: list[list[dict[str, Any]]]) -> None:
        self.pages = pages
        self.status = 200
        self.error: dict[str, Any] | None = None
        self.requests: list[tuple[str, dict[str, str], dict[str, str]]] = []

    def __call__(self, req: Request, url: str) -> tuple[int, Any]:
        self.requests.append((req.path, req.query,
                              {k.lower(): v for k, v in req.headers.items()}))
        if self.status != 200:
            return self.status, {"error": self.error or {}}
        page = int(req.query.get("pageToken", "0"))
        doc: dict[str, Any] = {"skus": self.pages[page]}
        if page + 1 < len(self.pages):
            doc["nextPageToken"] = str(page + 1)
        return 200, doc


@pytest.fixture
def api() -> Iterator[tuple[_Api, str]]:
    state = _Api([SKUS[:4], SKUS[4:]])
    with JsonServer(state) as server:
        yield state, server.url


@pytest.fixture(autouse=True)
def no_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in (pricing.ENV_KEY, pricing.ENV_KEY_FALLBACK, pricing.ENV_URL):
        monkeypatch.delenv(k, raising=False)


def test_fetch_follows_pages_and_sends_the_key_in_a_header(api: tuple[_Api, str]) -> None:
    state, url = api
    skus = fetch_skus(api_key=KEY, endpoint=url)
    assert [s["description"] for s in skus] == [s["description"] for s in SKUS]
    assert [p for p, _, _ in state.requests] == ["/v1/services/6F81-5844-456A/skus"] * 2
    first, second = state.requests[0][1], state.requests[1][1]
    assert first["currencyCode"] == "USD" and "pageToken" not in first
    assert second["pageToken"] == "1"
    for _, query, headers in state.requests:
        assert headers["x-goog-api-key"] == KEY
        assert "key" not in query  # never in a URL (proxies and logs keep URLs)


def test_fetch_prices_reads_key_and_endpoint_from_the_environment(
        api: tuple[_Api, str], monkeypatch: pytest.MonkeyPatch) -> None:
    state, url = api
    monkeypatch.setenv(pricing.ENV_KEY_FALLBACK, "fallback-key")
    monkeypatch.setenv(pricing.ENV_URL, url)
    got = fetch_prices(["us-central1"], shapes=SHAPES)
    assert state.requests[0][2]["x-goog-api-key"] == "fallback-key"
    assert got.table == parse_skus(SKUS, ["us-central1"], SHAPES).table
    monkeypatch.setenv(pricing.ENV_KEY, "own-key")
    fetch_prices(["us-central1"], shapes=SHAPES)
    assert state.requests[-1][2]["x-goog-api-key"] == "own-key"


def test_fetch_prices_prices_the_catalogs_gcp_types_by_default(api: tuple[_Api, str]) -> None:
    _, url = api
    got = fetch_prices(["us-central1"], api_key=KEY, endpoint=url)
    cat = load_catalog()
    n2 = cat.get("gcp", "n2-standard-8")
    assert n2 is not None
    assert got.table[("n2-standard-8", "us-central1")][0] == \
        round(n2.vcpus * N2_CPU + n2.memory_gib * N2_RAM, 5)
    assert {n for n, _ in got.table} <= {t.name for t in cat.of("gcp")}


def test_no_key_is_bad_input_naming_where_to_put_one() -> None:
    with pytest.raises(InputError) as info:
        fetch_prices(["us-central1"], shapes=SHAPES)
    assert pricing.ENV_KEY in info.value.message and pricing.ENV_KEY_FALLBACK in \
        info.value.message


def test_plain_http_to_another_host_is_refused_before_sending_the_key() -> None:
    with pytest.raises(InputError, match="plain http"):
        fetch_skus(api_key=KEY, endpoint="http://prices.example.invalid")


@pytest.mark.parametrize(("status", "error", "kind"), [
    (403, {"code": 403, "message": "API key not valid. Please pass a valid API key.",
           "status": "PERMISSION_DENIED"}, CredentialsError),
    (400, {"code": 400, "message": "API key not valid. Please pass a valid API key.",
           "status": "INVALID_ARGUMENT",
           "details": [{"@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID", "domain": "googleapis.com"}]},
     CredentialsError),
    (400, {"code": 400, "message": "Invalid page token", "status": "INVALID_ARGUMENT"},
     ProviderError),
    (429, {"code": 429, "message": "Quota exceeded", "status": "RESOURCE_EXHAUSTED"},
     ThrottledError),
    (500, {"code": 500, "message": "backend error", "status": "INTERNAL"}, ProviderError),
])
def test_api_errors_become_provider_errors_without_the_key(
        api: tuple[_Api, str], status: int, error: dict[str, Any],
        kind: type[ProviderError]) -> None:
    state, url = api
    state.status, state.error = status, error
    with pytest.raises(kind) as info:
        fetch_skus(api_key=KEY, endpoint=url)
    assert error["message"] in info.value.message
    assert KEY not in info.value.message and KEY not in (info.value.hint or "")
    if kind is ProviderError:
        assert type(info.value) is ProviderError
        assert info.value.scope == ("request" if status == 400 else None)


def test_an_unreachable_endpoint_is_a_provider_error() -> None:
    with pytest.raises(ProviderError, match="Cloud Billing Catalog API"):
        fetch_skus(api_key=KEY, endpoint="http://127.0.0.1:9", timeout=2)


def test_cli_refresh_prices_prices_the_given_catalogs_types(
        api: tuple[_Api, str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """Through the core's hook: `catalog refresh-prices --provider gcp --catalog FILE` prices
    the shapes of FILE's GCP types (not the shipped catalog's) and writes them, dated today."""
    from typer.testing import CliRunner

    from nestcloud.cli import app

    _, url = api
    monkeypatch.setenv(pricing.ENV_KEY, KEY)
    monkeypatch.setenv(pricing.ENV_URL, url)
    shipped = load_catalog()
    n2 = shipped.get("gcp", "n2-standard-8")
    assert n2 is not None
    # The user's catalog says n2-standard-8 has twice the memory: its price must follow it.
    mine = shipped.to_dict(mode="json")
    for t in mine["types"]:
        if t["provider"] == "gcp" and t["name"] == "n2-standard-8":
            t["memory_gib"] = n2.memory_gib * 2
    path = tmp_path / "catalog.yaml"
    path.write_text(yaml.safe_dump(mine, sort_keys=False), encoding="utf-8")
    res = CliRunner().invoke(app, ["catalog", "refresh-prices", "--provider", "gcp",
                                   "--region", "us-central1", "--catalog", str(path), "--json"])
    assert res.exit_code == 0, res.output
    got = load_catalog(path).get("gcp", "n2-standard-8")
    assert got is not None
    assert got.prices["us-central1"].on_demand == round(
        n2.vcpus * N2_CPU + 2 * n2.memory_gib * N2_RAM, 5)
