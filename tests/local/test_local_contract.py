"""The provider contract (tests/contract.py) against the local provider, with a fake QEMU:
every seat is a real process (the fake's child) and real files under the state dir, so
"down leaves nothing" is checked on the file system and in /proc."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from contract import ContractTarget, ProviderContract

from nestcloud.catalog import load_catalog
from nestcloud.spec import LaunchSpec
from providers.local import LocalProvider
from providers.local.provider import seats_root

from .conftest import FakeQemu, seat_processes, write_host


class TestLocalContract(ProviderContract):
    @pytest.fixture
    def target(self, fake_qemu: FakeQemu, fake_image: Path, tmp_path: Path) -> ContractTarget:
        host = write_host(tmp_path / "host")
        provider = LocalProvider(accel="tcg", host_root=host)

        def make_spec(name: str, count: int) -> LaunchSpec:
            return LaunchSpec(provider="local", type="1c-2g", name=name, count=count,
                              os="debian-12", hypervisor="none", image=str(fake_image))

        def leftovers(name: str) -> list[str]:
            d = seats_root() / name
            files = sorted(str(p) for p in d.rglob("*")) if d.exists() else []
            return files + [f"pid {p}" for p in seat_processes(d)]

        return ContractTarget(provider=provider, catalog=load_catalog(), make_spec=make_spec,
                              leftovers=leftovers)


def test_state_is_private(fake_qemu: FakeQemu, fake_image: Path, tmp_path: Path) -> None:
    from nestcloud.provider import LaunchRequest

    p = LocalProvider(accel="tcg", host_root=write_host(tmp_path / "host"))
    spec = LaunchSpec(provider="local", type="1c-2g", name="priv", os="debian-12",
                      hypervisor="none", image=str(fake_image))
    p.launch(LaunchRequest(spec, load_catalog()))
    seat = seats_root() / "priv" / "0"
    assert oct(os.stat(seat).st_mode & 0o777) == "0o700"
    assert oct(os.stat(seats_root() / "priv").st_mode & 0o777) == "0o700"
    assert oct(os.stat(seat / "seat.json").st_mode & 0o777) == "0o600"
    p.down("priv")
