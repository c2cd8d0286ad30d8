"""Every pre-launch rule, positive and negative, against small catalogs built here."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import pytest

from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.checks import Finding, refused, run_checks, suggest_nested
from nestcloud.spec import LaunchSpec

# Two providers, two regions each. Prices are made up for the test and dated by their source.
CATALOG_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
  p2026: {description: "test prices", date: 2026-01-15}
  pnodate: {description: "undated prices", date_note: "exact date unknown"}
types:
  # AWS: Intel nested sizes, a cheaper and a dearer one, a metal, and non-nesting types.
  - {provider: aws, name: c8i.large, family: c8i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1, eu-west-1],
     prices: {us-east-1: {on_demand: 0.10, spot: 0.05, source: p2026},
              eu-west-1: {on_demand: 0.12, source: pnodate}}}
  - {provider: aws, name: c7i.large, family: c7i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1],
     prices: {us-east-1: {on_demand: 0.09, spot: 0.06, source: p2026}}}
  - {provider: aws, name: m8i.xlarge, family: m8i, vcpus: 4, memory_gib: 16, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1],
     prices: {us-east-1: {on_demand: 0.30, source: p2026}}}
  - {provider: aws, name: c8i.96xlarge, family: c8i, vcpus: 384, memory_gib: 768, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1]}
  - {provider: aws, name: c8i.metal-48xl, family: c8i, vcpus: 192, memory_gib: 384,
     arch: x86_64, cpu_vendor: intel, nesting: native, bare_metal: true, nesting_source: facts,
     verified: 2026-01-01, regions: [us-east-1]}
  - {provider: aws, name: c6i.large, family: c6i, vcpus: 2, memory_gib: 4, arch: x86_64,
     cpu_vendor: intel, nesting: none, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1, eu-west-1]}
  - {provider: aws, name: m6i.xlarge, family: m6i, vcpus: 4, memory_gib: 16, arch: x86_64,
     cpu_vendor: intel, nesting: none, nesting_source: facts, verified: 2026-01-01,
     regions: [eu-west-1]}
  - {provider: aws, name: c7g.large, family: c7g, vcpus: 2, memory_gib: 4, arch: arm64,
     cpu_vendor: amazon, nesting: none, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1]}
  - {provider: aws, name: c7g.metal, family: c7g, vcpus: 64, memory_gib: 128, arch: arm64,
     cpu_vendor: amazon, nesting: native, bare_metal: true, nesting_source: facts,
     verified: 2026-01-01, regions: [us-east-1]}
  # Azure: an Intel v5, an AMD v5, a Gen1-only v3, a Gen2-only v6, and a B-series.
  - {provider: azure, name: Standard_D2s_v5, family: Dsv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-01-01, hyperv_generations: [V1, V2], security_type: Standard,
     regions: [eastus, westus2],
     prices: {eastus: {on_demand: 0.096, source: p2026}}}
  - {provider: azure, name: Standard_D2as_v5, family: Dasv5, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: amd, nesting: nested, nesting_source: facts,
     verified: 2026-01-01, hyperv_generations: [V1, V2], security_type: Standard,
     regions: [eastus], prices: {eastus: {on_demand: 0.086, source: p2026}}}
  - {provider: azure, name: Standard_D2_v3, family: Dv3, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-01-01, hyperv_generations: [V1], security_type: Standard,
     regions: [eastus]}
  - {provider: azure, name: Standard_D2s_v6, family: Dsv6, vcpus: 2, memory_gib: 8,
     arch: x86_64, cpu_vendor: intel, nesting: nested, nesting_source: facts,
     verified: 2026-01-01, hyperv_generations: [V2], security_type: Standard,
     regions: [eastus]}
  - {provider: azure, name: Standard_B2s, family: Bs, vcpus: 2, memory_gib: 4,
     arch: x86_64, cpu_vendor: intel, nesting: none, nesting_source: facts,
     verified: 2026-01-01, hyperv_generations: [V1, V2], regions: [eastus, westus2],
     prices: {eastus: {on_demand: 0.0416, source: p2026}}}
"""


@pytest.fixture(scope="module")
def cat() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog.yaml")


def spec(**kw: Any) -> LaunchSpec:
    base: dict[str, Any] = {"provider": "aws", "type": "c8i.large", "region": "us-east-1"}
    base.update(kw)
    return LaunchSpec(**base)


def by_rule(findings: list[Finding], rule: str) -> list[Finding]:
    return [f for f in findings if f.rule == rule]


def only(findings: list[Finding], rule: str) -> Finding:
    hits = by_rule(findings, rule)
    assert len(hits) == 1, findings
    return hits[0]


# -- the clean case: the negative for every rule at once ------------------------------------


def test_a_good_launch_has_no_findings(cat: Catalog) -> None:
    findings = run_checks(spec(), cat)
    assert findings == []
    assert refused(findings) is False


def test_a_good_azure_launch_has_no_findings(cat: Catalog) -> None:
    findings = run_checks(spec(provider="azure", type="Standard_D2s_v5", region="eastus",
                               image_generation="V2"), cat)
    assert findings == []


# -- unknown names --------------------------------------------------------------------------


def test_unknown_type_suggests_the_closest_names(cat: Catalog) -> None:
    findings = run_checks(spec(type="c8i.larg"), cat)
    f = only(findings, "unknown-type")
    assert f == Finding(rule="unknown-type", severity="error",
                        message="unknown aws instance type 'c8i.larg'",
                        suggestion="did you mean c8i.large, c7i.large, c6i.large?")
    assert refused(findings)


def test_unknown_type_without_close_names_points_at_the_list(cat: Catalog) -> None:
    f = only(run_checks(spec(type="zzzz"), cat), "unknown-type")
    assert f.suggestion == "see `nestcloud catalog list --provider aws --nested-only`"


def test_a_type_of_the_other_provider_says_which(cat: Catalog) -> None:
    f = only(run_checks(spec(type="Standard_D2s_v5", region=None), cat), "unknown-type")
    assert f.message == "Standard_D2s_v5 is a azure type, not a aws one"
    assert f.suggestion == "use --provider azure"


def test_azure_sizes_match_case_insensitively(cat: Catalog) -> None:
    findings = run_checks(spec(provider="azure", type="standard_d2s_v5", region="eastus"), cat)
    assert findings == []


def test_unknown_provider(cat: Catalog) -> None:
    findings = run_checks(spec(provider="gcp", type="n2-standard-2", region=None), cat)
    assert findings == [Finding(rule="unknown-provider", severity="error",
                                message="the catalog has no provider 'gcp'",
                                suggestion="known providers: aws, azure")]


def test_unknown_region_suggests_close_ones(cat: Catalog) -> None:
    f = only(run_checks(spec(region="us-east-2"), cat), "unknown-region")
    assert f.severity == "error"
    assert f.message == "unknown aws region 'us-east-2'"
    assert f.suggestion == "did you mean us-east-1?"


def test_unknown_region_is_reported_even_for_an_unknown_type(cat: Catalog) -> None:
    rules = [f.rule for f in run_checks(spec(type="nope.large", region="mars-1"), cat)]
    assert rules == ["unknown-type", "unknown-region"]


def test_unknown_region_without_close_names_lists_the_known(cat: Catalog) -> None:
    f = only(run_checks(spec(region="xx"), cat), "unknown-region")
    assert f.suggestion == "known regions: eu-west-1, us-east-1"


# -- nesting ---------------------------------------------------------------------------------


def test_no_nesting_suggests_cheapest_nested_in_region_with_price_and_date(cat: Catalog
                                                                             ) -> None:
    findings = run_checks(spec(type="c6i.large"), cat)
    f = only(findings, "no-nesting")
    assert f.severity == "error"
    assert f.message == ("c6i.large cannot run a hypervisor: aws does not offer nested "
                         "virtualization on it (catalog source 'facts', verified 2026-01-01)")
    # c7i.large is cheaper than c8i.large in us-east-1: 0.09 < 0.10.
    assert f.suggestion == ("use c7i.large (2 vCPU, 4 GiB, nesting nested): the cheapest aws "
                            "type able to run a hypervisor with at least 2 vCPU and 4 GiB, "
                            "$0.0900/h on-demand in us-east-1 (price date: 2026-01-15)")
    assert refused(findings)


def test_no_nesting_suggestion_respects_the_region(cat: Catalog) -> None:
    # c7i.large is not offered in eu-west-1: the suggestion is c8i.large with the undated price.
    f = only(run_checks(spec(type="c6i.large", region="eu-west-1"), cat), "no-nesting")
    assert f.suggestion == ("use c8i.large (2 vCPU, 4 GiB, nesting nested): the cheapest aws "
                            "type able to run a hypervisor with at least 2 vCPU and 4 GiB, "
                            "$0.1200/h on-demand in eu-west-1 (price date: exact date unknown)")


def test_no_nesting_suggestion_covers_vcpus_and_memory(cat: Catalog) -> None:
    # m6i.xlarge (4 vCPU, 16 GiB) only exists in eu-west-1, where no nested type is that big:
    # the suggestion says so and names the cheapest elsewhere, with its price and date.
    f = only(run_checks(spec(type="m6i.xlarge", region="eu-west-1"), cat), "no-nesting")
    assert f.suggestion == ("no aws type that can run a hypervisor with at least 4 vCPU and "
                            "16 GiB is offered in eu-west-1; elsewhere: m8i.xlarge (4 vCPU, "
                            "16 GiB, nesting nested), from $0.3000/h on-demand in us-east-1 "
                            "(price date: 2026-01-15)")


def test_no_nesting_without_region_uses_the_lowest_price_anywhere(cat: Catalog) -> None:
    f = only(run_checks(spec(type="c6i.large", region=None), cat), "no-nesting")
    assert f.suggestion is not None
    assert f.suggestion.endswith("4 GiB, from $0.0900/h on-demand in us-east-1 "
                                 "(price date: 2026-01-15)")


def test_no_nesting_with_spot_ranks_by_spot_price(cat: Catalog) -> None:
    # Spot: c8i.large (0.05) beats c7i.large (0.06), the reverse of on-demand.
    f = only(run_checks(spec(type="c6i.large", spot=True), cat), "no-nesting")
    assert f.suggestion is not None
    assert f.suggestion.startswith("use c8i.large ")
    assert f.suggestion.endswith("$0.0500/h spot in us-east-1 (price date: 2026-01-15)")


def test_no_nesting_on_azure_b_series(cat: Catalog) -> None:
    f = only(run_checks(spec(provider="azure", type="Standard_B2s", region="eastus"), cat),
             "no-nesting")
    # Dasv5 (0.086) is the cheapest nested size with >= 2 vCPU and >= 4 GiB in eastus.
    assert f.suggestion == ("use Standard_D2as_v5 (2 vCPU, 8 GiB, nesting nested): the cheapest "
                            "azure type able to run a hypervisor with at least 2 vCPU and 4 GiB,"
                            " $0.0860/h on-demand in eastus (price date: 2026-01-15)")


def test_suggestion_says_when_no_price_is_known(cat: Catalog) -> None:
    s = suggest_nested(cat, spec(region="us-east-1"), 200, 400)
    # Only c8i.96xlarge is that big (c8i.metal-48xl has 192 vCPU) and it has no price.
    assert s == ("use c8i.96xlarge (384 vCPU, 768 GiB, nesting nested): the cheapest aws type "
                 "able to run a hypervisor with at least 200 vCPU and 400 GiB, no on-demand "
                 "price known in us-east-1")


def test_suggestion_is_none_when_nothing_fits(cat: Catalog) -> None:
    assert suggest_nested(cat, spec(), 1000, 1) is None


def test_arm64_explains_and_suggests_x86(cat: Catalog) -> None:
    findings = run_checks(spec(type="c7g.large"), cat)
    assert [f.rule for f in findings] == ["arm64"]  # not also "no-nesting"
    f = findings[0]
    assert f.message == ("c7g.large is an Arm (arm64) type: aws offers no nested "
                         "virtualization on Arm")
    assert f.suggestion is not None and f.suggestion.startswith("use c7i.large (2 vCPU, 4 GiB")


def test_arm64_bare_metal_is_refused_too(cat: Catalog) -> None:
    findings = run_checks(spec(type="c7g.metal"), cat)
    f = only(findings, "arm64")
    assert f.message.startswith("c7g.metal is Arm (arm64) bare metal: nestcloud launches "
                                "x86_64 L1 hosts only")
    assert refused(findings)


def test_bare_metal_is_info_only(cat: Catalog) -> None:
    findings = run_checks(spec(type="c8i.metal-48xl"), cat)
    assert findings == [Finding(
        rule="bare-metal", severity="info",
        message="c8i.metal-48xl is bare metal: the hypervisor runs on the hardware, no nested "
                "switch is needed and L2 guests run at full speed")]
    assert not refused(findings)


# -- depth, OS and hypervisor -----------------------------------------------------------------


@pytest.mark.parametrize("depth", [1, 2])
def test_depth_two_or_less_is_fine(cat: Catalog, depth: int) -> None:
    assert by_rule(run_checks(spec(depth=depth), cat), "depth") == []


def test_depth_three_is_refused(cat: Catalog) -> None:
    f = only(run_checks(spec(depth=3), cat), "depth")
    assert f.severity == "error"
    assert f.message.startswith("depth 3: guests at L3 or deeper")
    assert "not expected to work" in f.message
    assert f.suggestion is not None and "--depth 2" in f.suggestion


@pytest.mark.parametrize(("os", "hv", "message", "suggestion"), [
    ("ubuntu-24.04", "hyperv", "hyperv needs a Windows L1, and Ubuntu 24.04 LTS is not Windows",
     "use --os windows-2022 or --hypervisor kvm"),
    ("debian-12", "wsl2", "wsl2 needs a Windows L1, and Debian 12 is not Windows",
     "use --os windows-2022 or --hypervisor kvm"),
    ("windows-2022", "kvm", "kvm needs a Linux L1, and Windows Server 2022 is not Linux",
     "use --os ubuntu-24.04 or --hypervisor hyperv"),
    ("windows-2025", "firecracker",
     "firecracker needs a Linux L1, and Windows Server 2025 is not Linux",
     "use --os ubuntu-24.04 or --hypervisor hyperv"),
    ("al2023", "kvm", "Amazon Linux 2023 ships no qemu or libvirt, so it cannot host KVM "
     "guests the libvirt way (Firecracker works there)",
     "use --os ubuntu-24.04 or --hypervisor firecracker"),
])
def test_hypervisor_os_mismatch(cat: Catalog, os: str, hv: str, message: str,
                                suggestion: str) -> None:
    findings = run_checks(spec(os=os, hypervisor=hv), cat)
    assert findings == [Finding(rule="os-hypervisor", severity="error", message=message,
                                suggestion=suggestion)]


@pytest.mark.parametrize(("os", "hv"), [
    ("ubuntu-24.04", "kvm"), ("debian-12", "firecracker"), ("rhel-9", "kvm"),
    ("al2023", "firecracker"), ("windows-2022", "hyperv"), ("windows-2025", "wsl2"),
    ("windows-2022", "none"), ("al2023", "none"),
])
def test_hypervisor_os_match(cat: Catalog, os: str, hv: str) -> None:
    assert run_checks(spec(os=os, hypervisor=hv), cat) == []


def test_unknown_os_is_bad_input_and_a_finding_for_a_copied_spec(cat: Catalog) -> None:
    from nestcloud.errors import SpecError

    with pytest.raises(SpecError, match=r"^os: unknown OS \(one of ubuntu-24.04, "):
        spec(os="plan9")
    # A spec copied with model_copy is not validated again: the check still catches it.
    f = only(run_checks(spec().model_copy(update={"os": "plan9"}), cat), "unknown-os")
    assert f.severity == "error"
    assert f.suggestion == ("one of ubuntu-24.04, debian-12, rhel-9, al2023, windows-2022, "
                            "windows-2025")


# -- Azure specifics --------------------------------------------------------------------------


@pytest.mark.parametrize("security", ["TrustedLaunch", "ConfidentialVM"])
def test_azure_trusted_launch_is_refused(cat: Catalog, security: str) -> None:
    findings = run_checks(spec(provider="azure", type="Standard_D2s_v5", region="eastus",
                               security_type=security), cat)
    f = only(findings, "trusted-launch")
    assert f.severity == "error"
    assert f.message == (f"security type {security} blocks nesting on Azure: Hyper-V and WSL2 "
                         "in the L1 report that virtualization is not enabled in the BIOS")
    assert f.suggestion == "use security type Standard (nestcloud's default)"


def test_security_type_is_an_azure_rule_only(cat: Catalog) -> None:
    assert run_checks(spec(security_type="TrustedLaunch"), cat) == []


def test_gen1_only_size_with_a_gen2_image(cat: Catalog) -> None:
    findings = run_checks(spec(provider="azure", type="Standard_D2_v3", region="eastus",
                               image_generation="V2"), cat)
    assert findings == [Finding(rule="generation", severity="error",
                                message="Standard_D2_v3 boots Gen1 images only, and the image "
                                        "is Gen2",
                                suggestion="use a Gen1 image (nestcloud picks the right one "
                                           "for an OS alias when no image is given)")]


def test_gen2_only_size_with_a_gen1_image(cat: Catalog) -> None:
    f = only(run_checks(spec(provider="azure", type="Standard_D2s_v6", region="eastus",
                             image_generation="V1"), cat), "generation")
    assert f.message == "Standard_D2s_v6 boots Gen2 images only, and the image is Gen1"


@pytest.mark.parametrize(("size", "gen"), [("Standard_D2_v3", "V1"), ("Standard_D2s_v6", "V2"),
                                           ("Standard_D2s_v5", "V1"), ("Standard_D2_v3", None)])
def test_matching_generation_is_fine(cat: Catalog, size: str, gen: str | None) -> None:
    findings = run_checks(spec(provider="azure", type=size, region="eastus",
                               image_generation=gen), cat)
    assert by_rule(findings, "generation") == []


def test_amd_nesting_warns_about_live_migration(cat: Catalog) -> None:
    findings = run_checks(spec(provider="azure", type="Standard_D2as_v5", region="eastus"), cat)
    f = only(findings, "amd-nesting")
    assert f.severity == "warning"
    assert "must not be live-migrated" in f.message
    assert not refused(findings)


def test_intel_nesting_has_no_amd_warning(cat: Catalog) -> None:
    assert by_rule(run_checks(spec(provider="azure", type="Standard_D2s_v5",
                                   region="eastus"), cat), "amd-nesting") == []


# -- region, spot, Windows size ---------------------------------------------------------------


def test_region_that_does_not_offer_the_type(cat: Catalog) -> None:
    findings = run_checks(spec(type="c7i.large", region="eu-west-1"), cat)
    assert findings == [Finding(rule="region", severity="error",
                                message="c7i.large is not offered in eu-west-1",
                                suggestion="regions that offer it: us-east-1")]


def test_no_region_means_no_region_findings(cat: Catalog) -> None:
    assert run_checks(spec(type="c7i.large", region=None), cat) == []


def test_spot_warns_that_preemption_kills_the_guests(cat: Catalog) -> None:
    findings = run_checks(spec(spot=True), cat)
    assert findings == [Finding(rule="spot", severity="warning",
                                message="spot capacity can be reclaimed at any time, and "
                                        "preemption kills every L2 guest on the host with it",
                                suggestion="use on-demand for labs and demos that must not "
                                           "vanish")]
    assert not refused(findings)


def test_windows_on_aws_above_192_vcpus(cat: Catalog) -> None:
    findings = run_checks(spec(type="c8i.96xlarge", os="windows-2022", hypervisor="hyperv"),
                          cat)
    assert findings == [Finding(rule="windows-vcpus", severity="error",
                                message="c8i.96xlarge has 384 vCPUs: AWS supports a nested "
                                        "Windows L1 only up to 192 vCPUs",
                                suggestion="pick a size with at most 192 vCPUs, or a Linux L1")]


def test_linux_on_aws_above_192_vcpus_is_fine(cat: Catalog) -> None:
    assert run_checks(spec(type="c8i.96xlarge"), cat) == []


def test_windows_at_192_vcpus_on_metal_is_fine(cat: Catalog) -> None:
    findings = run_checks(spec(type="c8i.metal-48xl", os="windows-2022", hypervisor="hyperv"),
                          cat)
    assert [f.rule for f in findings] == ["bare-metal"]


# -- ordering -----------------------------------------------------------------------------------


def test_errors_come_first_then_warnings_then_info(cat: Catalog) -> None:
    findings = run_checks(spec(type="c8i.metal-48xl", spot=True, depth=3), cat)
    assert [(f.severity, f.rule) for f in findings] == [
        ("error", "depth"), ("warning", "spot"), ("info", "bare-metal")]


# -- a couple of smoke tests against the shipped catalog ---------------------------------------


def test_shipped_catalog_refuses_graviton_and_suggests_a_priced_intel_type() -> None:
    from nestcloud.catalog import load_catalog

    real = load_catalog()
    findings = run_checks(spec(type="c7g.large", region="us-east-1"), real)
    f = only(findings, "arm64")
    assert f.suggestion is not None
    assert "/h on-demand in us-east-1 (price date: " in f.suggestion


def test_shipped_catalog_accepts_c8i_large_in_us_east_1() -> None:
    from nestcloud.catalog import load_catalog

    assert run_checks(spec(), load_catalog()) == []


# -- LaunchSpec validation: the pydantic model's own errors ----------------------------------

_NAME_MSG = ("Value error, names are 1-40 characters: lowercase letters, digits and '-', "
             "starting with a letter and not ending with '-'")
_HV_MSG = "Input should be 'kvm', 'firecracker', 'hyperv', 'wsl2' or 'none'"

# (fields over the base spec, [(loc, type, msg, input)]): every rule LaunchSpec checks, with
# its exact messages and error types (in the model's field order: the shared options first).
BAD_SPECS: list[tuple[dict[str, Any], list[tuple[str, str, str, Any]]]] = [
    # required, non-empty strings
    ({"provider": ""}, [("provider", "string_too_short",
                         "String should have at least 1 character", "")]),
    ({"type": ""}, [("type", "string_too_short", "String should have at least 1 character", "")]),
    ({"provider": None}, [("provider", "string_type", "Input should be a valid string", None)]),
    ({"type": 3}, [("type", "string_type", "Input should be a valid string", 3)]),
    # plain and optional strings
    ({"os": None}, [("os", "string_type", "Input should be a valid string", None)]),
    ({"region": 3}, [("region", "string_type", "Input should be a valid string", 3)]),
    ({"image": ["ami-1"]}, [("image", "string_type", "Input should be a valid string",
                             ["ami-1"])]),
    ({"ssh_cidr": 10}, [("ssh_cidr", "string_type", "Input should be a valid string", 10)]),
    ({"key_name": False}, [("key_name", "string_type", "Input should be a valid string",
                            False)]),
    ({"user_data": b"\xff"}, [("user_data", "string_unicode", "Input should be a valid string, "
                               "unable to parse raw data as a unicode string", b"\xff")]),
    # enums
    ({"hypervisor": "xen"}, [("hypervisor", "literal_error", _HV_MSG, "xen")]),
    ({"hypervisor": None}, [("hypervisor", "literal_error", _HV_MSG, None)]),
    ({"security_type": "Secure"}, [("security_type", "literal_error", "Input should be "
                                    "'Standard', 'TrustedLaunch' or 'ConfidentialVM'", "Secure")]),
    ({"image_generation": "v1"}, [("image_generation", "literal_error",
                                   "Input should be 'V1' or 'V2'", "v1")]),
    # integer ranges, at each bound
    ({"depth": 0}, [("depth", "greater_than_equal", "Input should be greater than or equal to 1",
                     0)]),
    ({"depth": 10}, [("depth", "less_than_equal", "Input should be less than or equal to 9", 10)]),
    ({"count": 0, "disk_gib": 7},
     [("disk_gib", "greater_than_equal", "Input should be greater than or equal to 8", 7),
      ("count", "greater_than_equal", "Input should be greater than or equal to 1", 0)]),
    ({"count": 1001}, [("count", "less_than_equal", "Input should be less than or equal to 1000",
                        1001)]),
    ({"disk_gib": 16385}, [("disk_gib", "less_than_equal",
                            "Input should be less than or equal to 16384", 16385)]),
    ({"ttl_seconds": 0}, [("ttl_seconds", "greater_than", "Input should be greater than 0", 0)]),
    ({"ttl_seconds": "-5"}, [("ttl_seconds", "greater_than", "Input should be greater than 0",
                              "-5")]),
    # what is not an integer
    ({"depth": "two"}, [("depth", "int_parsing", "Input should be a valid integer, unable to "
                         "parse string as an integer", "two")]),
    ({"depth": 2.5}, [("depth", "int_from_float", "Input should be a valid integer, got a number "
                       "with a fractional part", 2.5)]),
    ({"count": float("inf")}, [("count", "finite_number", "Input should be a finite number",
                                float("inf"))]),
    ({"count": None}, [("count", "int_type", "Input should be a valid integer", None)]),
    # booleans
    ({"spot": "maybe"}, [("spot", "bool_parsing", "Input should be a valid boolean, unable to "
                          "interpret input", "maybe")]),
    ({"public_ip": 2}, [("public_ip", "bool_parsing", "Input should be a valid boolean, unable "
                         "to interpret input", 2)]),
    ({"allow_world_ssh": None}, [("allow_world_ssh", "bool_type",
                                  "Input should be a valid boolean", None)]),
    ({"l2_smoke": 0.5}, [("l2_smoke", "bool_type", "Input should be a valid boolean", 0.5)]),
    # name
    ({"name": "Bad-"}, [("name", "value_error", _NAME_MSG, "Bad-")]),
    ({"name": ""}, [("name", "value_error", _NAME_MSG, "")]),
    ({"name": "a" * 41}, [("name", "value_error", _NAME_MSG, "a" * 41)]),
    ({"name": "web-"}, [("name", "value_error", _NAME_MSG, "web-")]),
    ({"name": "1web"}, [("name", "value_error", _NAME_MSG, "1web")]),
    ({"name": 7}, [("name", "string_type", "Input should be a valid string", 7)]),
    # tags: a mapping of strings, then the reserved prefixes (the first reserved key only)
    ({"tags": ["a=b"]}, [("tags", "dict_type", "Input should be a valid dictionary", ["a=b"])]),
    ({"tags": {"a": 1, 2: "b", "aws:x": "y"}},
     [("tags.a", "string_type", "Input should be a valid string", 1),
      ("tags.2.[key]", "string_type", "Input should be a valid string", 2)]),
    ({"tags": {"ok": "1", "aws:x": "1"}},
     [("tags", "value_error", "Value error, tag 'aws:x': the 'aws:' prefix is reserved by AWS",
       {"ok": "1", "aws:x": "1"})]),
    ({"tags": {"Nestcloud:Name": "x", "AWS:y": "1"}},
     [("tags", "value_error", "Value error, tag 'Nestcloud:Name': the 'nestcloud:' prefix is "
       "reserved", {"Nestcloud:Name": "x", "AWS:y": "1"})]),
    # unknown keywords, after the fields, in the order given
    ({"bogus": 1, "depth": 0, "zz": None},
     [("depth", "greater_than_equal", "Input should be greater than or equal to 1", 0),
      ("bogus", "extra_forbidden", "Extra inputs are not permitted", 1),
      ("zz", "extra_forbidden", "Extra inputs are not permitted", None)]),
]


def _errors(**kw: Any) -> list[tuple[str, str, str, Any]]:
    from nestcloud.errors import SpecError

    with pytest.raises(SpecError) as ei:
        spec(**kw)
    return [(".".join(map(str, e["loc"])), e["type"], e["msg"], e["input"])
            for e in ei.value.errors()]


@pytest.mark.parametrize(("fields", "expected"), BAD_SPECS)
def test_launchspec_names_every_bad_field_with_pydantics_message(
        fields: dict[str, Any], expected: list[tuple[str, str, str, Any]]) -> None:
    assert _errors(**fields) == expected


def test_launchspec_missing_fields_name_the_whole_input() -> None:
    from nestcloud.errors import SpecError

    with pytest.raises(SpecError) as ei:
        LaunchSpec(type="x", bogus=1)  # type: ignore[call-arg]
    assert ei.value.errors() == [
        {"type": "missing", "loc": ("provider",), "msg": "Field required",
         "input": {"type": "x", "bogus": 1}},
        {"type": "extra_forbidden", "loc": ("bogus",),
         "msg": "Extra inputs are not permitted", "input": 1}]
    assert str(ei.value) == "provider: field required; bogus: unexpected keyword argument"


def test_spec_error_is_bad_input_and_a_value_error_with_one_message() -> None:
    from nestcloud.errors import InputError, SpecError

    with pytest.raises(SpecError) as ei:
        spec(depth=0, name="Bad-")
    err = ei.value
    assert isinstance(err, InputError) and isinstance(err, ValueError) and err.exit_code == 2
    assert str(err) == (
        "depth: Input should be greater than or equal to 1 (got 0); name: names are 1-40 "
        "characters: lowercase letters, digits and '-', starting with a letter and not ending "
        "with '-' (got 'Bad-')")
    assert err.errors(include_url=False) == err.errors()
    err.errors().clear()
    assert len(err.errors()) == 2  # callers get copies


@pytest.mark.parametrize(("fields", "stored"), [
    ({}, {"os": "ubuntu-24.04", "hypervisor": "kvm", "depth": 2, "count": 1, "spot": False,
          "security_type": "Standard", "image_generation": None, "disk_gib": 30,
          "ttl_seconds": None, "tags": {}, "name": None}),
    ({"depth": 1, "count": 1000, "disk_gib": 8, "ttl_seconds": 1},
     {"depth": 1, "count": 1000, "disk_gib": 8, "ttl_seconds": 1}),
    ({"depth": 9, "disk_gib": 16384}, {"depth": 9, "disk_gib": 16384}),
    # pydantic's lax coercions are kept: numeric strings and whole floats are ints, ...
    ({"depth": " 3 ", "count": "+4", "disk_gib": 40.0, "ttl_seconds": "3_600"},
     {"depth": 3, "count": 4, "disk_gib": 40, "ttl_seconds": 3600}),
    ({"depth": "3.0"}, {"depth": 3}),
    # ... 0/1 and yes/no words are booleans, bytes are text
    ({"spot": 1, "public_ip": "Yes", "l2_smoke": "off", "allow_world_ssh": 1.0},
     {"spot": True, "public_ip": True, "l2_smoke": False, "allow_world_ssh": True}),
    ({"region": b"eu-west-1", "tags": {b"team": b"x"}},
     {"region": "eu-west-1", "tags": {"team": "x"}}),
    ({"name": "a", "hypervisor": "firecracker", "security_type": "TrustedLaunch",
      "image_generation": "V2", "region": None, "image": None},
     {"name": "a", "hypervisor": "firecracker", "security_type": "TrustedLaunch",
      "image_generation": "V2", "region": None, "image": None}),
    ({"name": "web-01-" + "x" * 33}, {"name": "web-01-" + "x" * 33}),
    ({"tags": {"team": "a", "awsx": "b", "nestcloudy": "c"}},
     {"tags": {"team": "a", "awsx": "b", "nestcloudy": "c"}}),
])
def test_launchspec_accepts_and_stores(fields: dict[str, Any], stored: dict[str, Any]) -> None:
    s = spec(**fields)
    assert {k: getattr(s, k) for k in stored} == stored
    assert all(type(getattr(s, k)) is type(v) for k, v in stored.items())


def test_launchspec_keeps_its_own_tags_dict() -> None:
    tags = {"team": "a"}
    s, t = spec(tags=tags), spec()
    tags["x"] = "y"
    assert s.tags == {"team": "a"}
    s.tags["z"] = "1"
    assert t.tags == {} and spec().tags == {}  # the default is a fresh dict each time


def test_launchspec_choices_are_its_annotations() -> None:
    from typing import get_args, get_type_hints

    from nestcloud.oses import HYPERVISORS, Hypervisor
    from nestcloud.spec import IMAGE_GENERATIONS, SECURITY_TYPES

    hints = get_type_hints(LaunchSpec)
    assert get_args(Hypervisor) == HYPERVISORS and hints["hypervisor"] == Hypervisor
    assert get_args(hints["security_type"]) == SECURITY_TYPES
    assert hints["image_generation"] == Literal[IMAGE_GENERATIONS] | None
    for hv in HYPERVISORS:
        assert spec(hypervisor=hv).hypervisor == hv


def test_launchspec_copy_is_not_validated_and_leaves_the_original() -> None:
    s = spec()
    t = s.model_copy(update={"region": "eu-west-1", "count": 3})
    assert (t.region, t.count, s.region, s.count) == ("eu-west-1", 3, "us-east-1", 1)
    assert t != s and t.model_copy() == t


def test_finding_severity_is_checked() -> None:
    with pytest.raises(ValueError, match="severity 'fatal'"):
        Finding(rule="x", severity="fatal", message="m")  # type: ignore[arg-type]
    assert Finding(rule="x", severity="info", message="m").to_dict() == {
        "rule": "x", "severity": "info", "message": "m", "suggestion": None}


UNCONFIRMED_YAML = """
schema_version: 1
sources:
  facts: {description: "test facts"}
  guess: {description: "a documented rule allows it; no source names these types.",
          unconfirmed: true}
  p2026: {description: "test prices", date: 2026-01-01}
types:
  - {provider: aws, name: cheap.large, family: cheap, vcpus: 2, memory_gib: 8, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: guess, verified: 2026-01-01,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.05, source: p2026}}}
  - {provider: aws, name: sure.large, family: sure, vcpus: 2, memory_gib: 8, arch: x86_64,
     cpu_vendor: intel, nesting: nested, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.09, source: p2026}}}
  - {provider: aws, name: none.large, family: none, vcpus: 2, memory_gib: 8, arch: x86_64,
     cpu_vendor: intel, nesting: none, nesting_source: facts, verified: 2026-01-01,
     regions: [us-east-1], prices: {us-east-1: {on_demand: 0.01, source: p2026}}}
"""


def test_a_type_on_an_unconfirmed_source_warns_and_suggestions_prefer_confirmed_ones() -> None:
    c = parse_catalog(UNCONFIRMED_YAML, "unconfirmed.yaml")
    w = only(run_checks(spec(type="cheap.large"), c), "unconfirmed-nesting")
    assert w.severity == "warning"
    assert w.message.startswith("nested virtualization on cheap.large is expected but "
                                "unconfirmed (catalog source 'guess': a documented rule")
    assert w.suggestion is not None and w.suggestion.startswith("use sure.large ")
    assert by_rule(run_checks(spec(type="sure.large"), c), "unconfirmed-nesting") == []
    # A refusal suggests the confirmed type although the unconfirmed one is cheaper.
    f = only(run_checks(spec(type="none.large"), c), "no-nesting")
    assert f.suggestion is not None and f.suggestion.startswith("use sure.large ")
