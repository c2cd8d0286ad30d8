"""The shared provider contract (tests/contract.py) run against GCP through the GCE fake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from conftest import fake_leftovers  # tests/gcp/conftest.py
from contract import ContractTarget, ProviderContract
from fakes.gce_fake import GceFake

from nestcloud.catalog import Catalog
from nestcloud.spec import LaunchSpec


class TestGcpContract(ProviderContract):
    @pytest.fixture
    def target(self, make_provider: Callable[..., Any], gce: GceFake, catalog: Catalog
               ) -> ContractTarget:
        def make_spec(name: str, count: int) -> LaunchSpec:
            return LaunchSpec(provider="gcp", type="n2-standard-4", region="us-central1",
                              name=name, count=count)

        return ContractTarget(provider=make_provider(), catalog=catalog, make_spec=make_spec,
                              leftovers=lambda name: fake_leftovers(gce, name))
