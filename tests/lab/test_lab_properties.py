"""Property test: any lab file text gives a LabFile or one LabFileError, never a traceback."""

from __future__ import annotations

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from nestcloud.errors import LabFileError
from nestcloud.lab import LabFile, parse_lab

KEYS = ["name", "seats", "seat", "providers", "regions", "hypervisor", "os", "spot", "ttl",
        "budget", "ssh_cidr", "tags", "user_data", "vcpus", "type", "file", "memory_gib"]
scalars = st.one_of(st.none(), st.booleans(), st.integers(-5, 10_000),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["4h", "kvm", "al2023", "lab-1", "10.0.0.0/8", "0/0"]))
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3),
    st.dictionaries(st.sampled_from(KEYS) | st.text(max_size=5), inner, max_size=4)),
    max_leaves=10)
docs = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(docs)
def test_any_mapping_is_a_lab_or_a_clear_error(doc: dict) -> None:  # type: ignore[type-arg]
    text = yaml.safe_dump(doc)
    try:
        lab, _ = parse_lab(text, "lab.yaml")
    except LabFileError as exc:
        assert exc.problems and all(p.startswith("lab.yaml") for p in exc.problems)
        assert exc.exit_code == 2
    else:
        assert isinstance(lab, LabFile)
        assert lab.ttl_seconds > 0


@settings(max_examples=100, deadline=None)
@given(st.text(max_size=80))
def test_any_text_is_a_lab_or_a_clear_error(text: str) -> None:
    try:
        parse_lab(text, "lab.yaml")
    except LabFileError as exc:
        assert exc.problems and all(p.startswith("lab.yaml") for p in exc.problems)
