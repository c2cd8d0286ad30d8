"""The price APIs the providers read, as answers for a loopback ``JsonServer``.

Every payload is a HAND-MADE example of each API's documented response shape (Azure Retail
Prices: Items[] with armSkuName/armRegionName/meterName/productName/retailPrice and
NextPageLink; AWS Price List GetProducts: PriceList[] of JSON strings with product.attributes
and terms.OnDemand...priceDimensions...pricePerUnit.USD). The numbers are NOT real prices.
"""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

from .http_fake import Answer, Request


def az_item(sku: str, region: str, price: float, *, meter: str = "D4s v5",
            product: str = "Virtual Machines Dsv5 Series", start: str = "2025-01-01T00:00:00Z"
            ) -> dict[str, Any]:
    """One Azure Retail Prices item."""
    return {"currencyCode": "USD", "tierMinimumUnits": 0.0, "retailPrice": price,
            "unitPrice": price, "armRegionName": region, "location": "US East",
            "effectiveStartDate": start, "meterId": "00000000-0000-0000-0000-000000000000",
            "meterName": meter, "productId": "DZH318Z0BQPS", "skuId": "DZH318Z0BQPS/00TG",
            "productName": product, "skuName": meter, "serviceName": "Virtual Machines",
            "serviceId": "DZH313Z7MMC8", "serviceFamily": "Compute",
            "unitOfMeasure": "1 Hour", "type": "Consumption", "isPrimaryMeterRegion": True,
            "armSkuName": sku}


def retail_prices(pages: dict[str, list[list[dict[str, Any]]]]) -> Answer:
    """Azure Retail Prices: the pages of the region the ``$filter`` names, each one's
    NextPageLink (the filter, ``$skip`` and a ``page`` number) leading to the next."""

    def answer(req: Request, url: str) -> tuple[int, Any]:
        flt = req.query["$filter"]
        m = re.search(r"armRegionName eq '([^']*)'", flt)
        region_pages = pages.get(m.group(1) if m else "", [[]])
        n = int(req.query.get("page", "1"))
        nxt = (f"{url}{req.path}?$filter={urllib.parse.quote(flt)}&$skip={100 * n}"
               f"&page={n + 1}") if n < len(region_pages) else None
        items = region_pages[n - 1]
        return 200, {"BillingCurrency": "USD", "CustomerEntityId": "Default",
                     "CustomerEntityType": "Retail", "Items": items, "NextPageLink": nxt,
                     "Count": len(items)}

    return answer


def aws_product(itype: str, region: str, usd: str, **attrs: str) -> str:
    """One AWS Price List entry (a JSON string, as GetProducts returns them)."""
    a = {"instanceType": itype, "regionCode": region, "operatingSystem": "Linux",
         "tenancy": "Shared", "preInstalledSw": "NA", "capacitystatus": "Used",
         "licenseModel": "No License required", "vcpu": "2", "memory": "4 GiB"}
    a.update(attrs)
    return json.dumps({
        "product": {"productFamily": "Compute Instance", "attributes": a, "sku": "SKU1"},
        "serviceCode": "AmazonEC2",
        "terms": {"OnDemand": {"SKU1.JRTCKXETXF": {
            "priceDimensions": {"SKU1.JRTCKXETXF.6YS6EN2CT7": {
                "unit": "Hrs", "endRange": "Inf", "description": "made-up test price",
                "appliesTo": [], "rateCode": "SKU1.JRTCKXETXF.6YS6EN2CT7", "beginRange": "0",
                "pricePerUnit": {"USD": usd}}},
            "sku": "SKU1", "effectiveDate": "2026-11-01T00:00:00Z", "offerTermCode": "JRTCKXETXF",
            "termAttributes": {}}}},
        "version": "20261101000000", "publicationDate": "2026-11-01T00:00:00Z"})


AwsPages = dict[tuple[str, str | None], tuple[list[str], str | None]]


def get_products(pages: AwsPages) -> Answer:
    """AWS GetProducts: the page for (the regionCode filter, NextToken) and its NextToken."""

    def answer(req: Request, url: str) -> tuple[int, Any]:
        region = next(f["Value"] for f in req.body["Filters"] if f["Field"] == "regionCode")
        page, nxt = pages[(region, req.body.get("NextToken"))]
        doc: dict[str, Any] = {"FormatVersion": "aws_v1", "PriceList": page}
        if nxt:
            doc["NextToken"] = nxt
        return 200, doc

    return answer
