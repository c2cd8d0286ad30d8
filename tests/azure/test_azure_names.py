"""Issue 11 at the Azure provider's own entry: a group name is never a pattern or an OData
fragment, whatever the caller (the Python API calls provider.down directly)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import SSH_KEY
from fakes.arm_fake import ArmFake

from nestcloud.provider import LaunchRequest
from nestcloud.catalog import Catalog
from nestcloud.errors import InputError
from nestcloud.spec import LaunchSpec

RULE = ("names are 1-40 characters: lowercase letters, digits and '-', starting with a letter "
        "and not ending with '-'")


@pytest.mark.parametrize("bad", ["*", "", "d*", "demo' or tagName eq 'nestcloud:name",
                                 "demo\n", "Demo"])
@pytest.mark.parametrize("group", [None, "mine"])
def test_down_and_list_refuse_a_bad_name_before_any_request(
        make_provider: Callable[..., Any], arm: ArmFake, catalog: Catalog, rendered: Any,
        bad: str, group: str | None) -> None:
    p = make_provider()
    p.launch(LaunchRequest(LaunchSpec(provider="azure", type="Standard_D2s_v5", region="eastus",
                        name="demo", key_name=SSH_KEY), catalog)).result
    before = list(arm.ids())
    scoped = make_provider(resource_group=group) if group else p
    arm.requests.clear()
    for verb in (scoped.down, scoped.list):
        with pytest.raises(InputError) as info:
            verb(bad)
        assert info.value.message == f"group name {bad!r}: {RULE}"
    assert arm.requests == []
    assert list(arm.ids()) == before
    assert [i.name for i in p.list("demo")] == ["demo"]
