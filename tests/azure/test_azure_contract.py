"""The shared provider contract (tests/contract.py) run against Azure through the ARM fake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import SSH_KEY  # tests/azure/conftest.py
from contract import ContractTarget, ProviderContract
from fakes.arm_fake import ArmFake

from nestcloud.catalog import Catalog
from nestcloud.spec import TAG_NAME, LaunchSpec


class TestAzureContract(ProviderContract):
    @pytest.fixture
    def target(self, make_provider: Callable[..., Any], arm: ArmFake, catalog: Catalog,
               rendered: Any) -> ContractTarget:
        def make_spec(name: str, count: int) -> LaunchSpec:
            return LaunchSpec(provider="azure", type="Standard_D2s_v5", region="eastus",
                              name=name, count=count, key_name=SSH_KEY)

        def leftovers(name: str) -> list[str]:
            # Straight from the fake's store: every resource or group tagged with the name,
            # plus anything still inside the name's own group (untagged OS disks included).
            group = f"nestcloud-{name}-eastus".lower()
            out = [g["id"] for g in arm.groups.values() if g["tags"].get(TAG_NAME) == name]
            out += [r["id"] for r in arm.resources.values()
                    if r["tags"].get(TAG_NAME) == name or r["id"].lower().split("/")[4] == group]
            return sorted(out)

        return ContractTarget(provider=make_provider(), catalog=catalog, make_spec=make_spec,
                              leftovers=leftovers)
