"""`nestcloud plan` through the CLI: exact text, JSON shape and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nestcloud.cli import app

from .conftest import CATALOG_YAML


@pytest.fixture()
def cat_file(tmp_path: Path) -> str:
    p = tmp_path / "catalog.yaml"
    p.write_text(CATALOG_YAML)
    return str(p)


def run(*args: str) -> tuple[int, str, str]:
    r = CliRunner().invoke(app, list(args))
    return r.exit_code, r.stdout, r.stderr


def test_plan_table(cat_file: str) -> None:
    code, out, err = run("plan", "--vcpus", "4", "--memory", "16", "--providers", "aws",
                         "--seats", "2", "--hours", "3", "--catalog", cat_file)
    assert code == 0, err
    assert out.splitlines() == [
        "Plan for 2 seat(s) of 4 vCPU / 16 GiB, kvm on ubuntu-24.04, 3 h, on-demand",
        "#  provider  region     type            nesting  vCPU  GiB  instances  USD/h each  "
        "total USD  price date",
        "-  --------  ---------  --------------  -------  ----  ---  ---------  ----------  "
        "---------  ----------",
        "1  aws       us-east-1  m8i.xlarge      nested   4     16   2          0.2500      "
        "1.50       2025-06-01",
        "2  aws       us-east-1  c7i.metal-24xl  native   96    192  2          4.0000      "
        "24.00      2025-06-01",
        "cheapest: aws/m8i.xlarge in us-east-1 at $0.2500/h x 2 x 3 h = $1.50 "
        "(price date: 2025-06-01)",
    ]


def test_plan_json_shape(cat_file: str) -> None:
    code, out, _ = run("plan", "--vcpus", "4", "--memory", "8", "--json", "--catalog", cat_file,
                       "--explain")
    assert code == 0
    doc = json.loads(out)
    assert set(doc) == {"request", "options", "rejected"}
    first = doc["options"][0]
    for k in ("provider", "region", "type", "nesting", "usd_per_hour", "total_usd",
              "price_date"):
        assert k in first
    # Azure's D4s_v5 ($0.192/h) with its NAT gateway (~$0.05/h) costs more than c8i.xlarge.
    assert (first["provider"], first["region"], first["type"]) == ("aws", "us-east-1",
                                                                   "c8i.xlarge")
    azure = next(o for o in doc["options"] if o["provider"] == "azure")
    assert azure["egress"] == "nat" and azure["egress_usd_per_hour"] > 0
    totals = [o["total_usd"] for o in doc["options"]]
    assert totals == sorted(totals)
    assert {"provider": "aws", "type": "c8i.large", "region": None, "code": "size",
            "reason": "2 vCPU / 4 GiB is smaller than 4 vCPU / 8 GiB per seat",
            "usd_per_seat_hour": None} in doc["rejected"]


def test_plan_over_budget_exit_3_with_json_error(cat_file: str) -> None:
    code, out, err = run("plan", "--vcpus", "4", "--memory", "16", "--providers", "aws",
                         "--seats", "2", "--hours", "2", "--budget", "0.5", "--json",
                         "--catalog", cat_file)
    assert code == 3
    doc = json.loads(out)
    assert doc["error"] == "BudgetError" and doc["exit_code"] == 3
    assert doc["message"].endswith("= $1.00 (price date: 2025-06-01), over the $0.50 budget")
    assert doc["hint"] == ("raise the budget to at least $1.00; cut hours to 1; cut seats to 1; "
                           "try spot")
    assert err.startswith("error: over budget: the cheapest option for 2 seat(s)")


def test_plan_nothing_fits_explain_goes_to_stderr(cat_file: str) -> None:
    code, out, err = run("plan", "--vcpus", "4", "--memory", "8", "--regions", "eu-west-1",
                         "--explain", "--catalog", cat_file)
    assert code == 3
    assert out == ""
    assert "  aws/c8i.xlarge (eu-west-1): no-price: no price known in eu-west-1" in err
    assert err.rstrip().endswith(
        "error: nothing can be ranked for 1 seat(s) of 4 vCPU / 8 GiB, kvm on ubuntu-24.04, "
        "1 h, on-demand: aws/c8i.xlarge fit but no price is known in eu-west-1\n"
        "  hint: allow other regions, or run `nestcloud catalog refresh-prices`")


@pytest.mark.parametrize(("args", "message"), [
    (["--vcpus", "4"], "error: give --vcpus and --memory per seat, or --type"),
    (["--vcpus", "0", "--memory", "4"],
     "error: --vcpus 0: Input should be greater than 0"),
    (["--vcpus", "4", "--memory", "4", "--providers", "gcp"],
     "error: --providers 'gcp': the catalog has no such provider (known: aws, azure)"),
    (["--vcpus", "4", "--memory", "4", "--hypervisor", "vmware"],
     "error: --hypervisor 'vmware': Input should be 'kvm', 'firecracker', 'hyperv', 'wsl2' or "
     "'none'"),
])
def test_plan_bad_input_exit_2(cat_file: str, args: list[str], message: str) -> None:
    code, out, err = run("plan", *args, "--catalog", cat_file)
    assert code == 2
    assert out == ""
    assert err.splitlines()[0] == message


def test_plan_real_catalog_json() -> None:
    code, out, err = run("plan", "--vcpus", "4", "--memory", "16", "--seats", "12", "--hours",
                         "6", "--json")
    assert code == 0, err
    opts = json.loads(out)["options"]
    assert len(opts) > 10
    assert {o["provider"] for o in opts} == {"aws", "azure", "gcp"}
    assert all(o["price_date"] for o in opts)
    assert [o["total_usd"] for o in opts] == sorted(o["total_usd"] for o in opts)
