"""Fixtures for the bootstrap tests: recorded host trees, a fake /dev/kvm, fake commands."""

from __future__ import annotations

import os
import stat
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from nestcloud.bootstrap.l1check import Host, RunResult
from tests.bootstrap.fakekvm import FakeKvm

FIXTURES = Path(__file__).parent / "fixtures"


def fake_stat_for(root: Path) -> Callable[[str], os.stat_result]:
    """os.stat, except that the devices listed in root/DEVICES are character devices."""
    devices: dict[str, tuple[int, int]] = {}
    for line in (root / "DEVICES").read_text().splitlines():
        if line.strip():
            path, kind, major, minor = line.split()
            assert kind == "c"
            devices[str(root / path)] = (int(major), int(minor))

    def _stat(path: str) -> os.stat_result:
        if path in devices:
            major, minor = devices[path]
            return _chr(os.makedev(major, minor))
        return os.stat(path)

    return _stat


def _chr(rdev: int) -> os.stat_result:
    # os.stat_result's st_rdev is only settable through the full tuple + dict form.
    return os.stat_result((stat.S_IFCHR | 0o660, 0, 0, 1, 0, 0, 0, 0, 0, 0),
                          {"st_rdev": rdev})


class FakeCommands:
    """Answers Host.run: {program: (exit code, output)}; missing programs -> None."""

    def __init__(self, answers: dict[str, RunResult] | None = None) -> None:
        self.answers = answers or {}
        self.calls: list[list[str]] = []

    def __call__(self, argv: Sequence[str], timeout_s: float) -> RunResult | None:
        self.calls.append(list(argv))
        return self.answers.get(os.path.basename(argv[0]))

    def which(self, name: str) -> str | None:
        return name if os.path.basename(name) in self.answers else None


HostFactory = Callable[..., Host]


@pytest.fixture
def fixture_host() -> HostFactory:
    def make(name: str, *, kvm: FakeKvm | None = None, commands: FakeCommands | None = None,
             rw: bool = True) -> Host:
        root = FIXTURES / name
        commands = commands or FakeCommands()
        return Host(str(root), stat_fn=fake_stat_for(root), access_fn=lambda p, mode: rw,
                    run=commands, which=commands.which, kvm=kvm or FakeKvm())
    return make
