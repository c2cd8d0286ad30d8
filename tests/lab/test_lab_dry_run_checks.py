"""`lab up --dry-run` refuses exactly what a real `lab up` refuses (world-open SSH, secrets in
the user data, user data cloud-init cannot read), before anything is created."""

from __future__ import annotations

import random
import string
import uuid
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from nestcloud.catalog import Catalog, parse_catalog
from nestcloud.cli import app
from nestcloud.errors import NestcloudError
from nestcloud.lab import Lab
from tests.lab.test_lab_sandbox import CATALOG_YAML, live

_rng = random.Random(11)
# Assembled at run time: never a real key, never literal in the repo.
KEY_ID = "AKIA" + "".join(_rng.choice(string.ascii_uppercase + string.digits) for _ in range(16))


@pytest.fixture
def catalog() -> Catalog:
    return parse_catalog(CATALOG_YAML, "test-catalog")


@pytest.fixture
def make(moto_endpoint: str) -> Any:
    from providers.aws import AwsProvider

    made: dict[tuple[str, str], Any] = {}

    def make(provider: str, region: str) -> Any:
        if (provider, region) not in made:
            p = AwsProvider(region=region, endpoint_url=moto_endpoint)
            p.sleep = lambda s: None
            made[(provider, region)] = p
        return made[(provider, region)]

    return make


BAD = {
    "world-open-ssh": {"ssh_cidr": "0.0.0.0/0"},
    "world-open-ssh-v6": {"ssh_cidr": "::/0"},
    "secret-in-user-data": {"user_data": f"#!/bin/sh\nexport AWS_ACCESS_KEY_ID={KEY_ID}\n"},
    "duplicate-key-in-user-data": {"user_data": "#cloud-config\nruncmd: [a]\nruncmd: [b]\n"},
    # Over what the provider declares (capabilities.tags): 60 tags where AWS takes 50.
    "too-many-tags": {"tags": {f"k{i}": "v" for i in range(60)}},
}


@pytest.mark.parametrize("bad", list(BAD.values()), ids=list(BAD))
def test_dry_run_refuses_what_a_real_run_refuses(catalog: Catalog, make: Any,
                                                 moto_endpoint: str, bad: dict[str, Any]
                                                 ) -> None:
    name = f"dry-{uuid.uuid4().hex[:8]}"
    lab = Lab(name, 1, vcpus=2, memory_gib=4, providers=["aws"], regions=["us-east-1"],
              ttl="1h", os="al2023", hypervisor="firecracker", catalog=catalog, **bad)
    with pytest.raises(NestcloudError) as real:
        lab.up(providers=make, wait=False)
    assert live(moto_endpoint, name) == []
    with pytest.raises(NestcloudError) as dry:
        lab.up(dry_run=True, providers=make)
    assert (type(dry.value), dry.value.exit_code) == (type(real.value), real.value.exit_code)
    assert dry.value.exit_code == 2
    assert KEY_ID[4:] not in str(dry.value) and KEY_ID[4:] not in str(real.value)


def test_cli_dry_run_names_the_user_data_file_and_line(tmp_path: Path) -> None:
    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG_YAML)
    (tmp_path / "setup.sh").write_text(f"#!/bin/sh\necho hi\nexport K={KEY_ID}\n")
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: drysecret\nseats: 1\nseat: {vcpus: 2, memory_gib: 4}\n"
                   "providers: [aws]\nttl: 1h\nuser_data: {file: setup.sh}\n")
    r = CliRunner().invoke(app, ["lab", "up", str(lab), "--dry-run", "--catalog", str(cat)])
    assert r.exit_code == 2, r.stderr
    assert f"{tmp_path / 'setup.sh'}:3:" in r.stderr and "aws-access-key-id" in r.stderr
    assert KEY_ID[4:] not in r.stderr + r.stdout


def test_cli_dry_run_refuses_world_open_ssh(tmp_path: Path) -> None:
    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG_YAML)
    lab = tmp_path / "lab.yaml"
    lab.write_text("name: dryssh\nseats: 1\nseat: {vcpus: 2, memory_gib: 4}\n"
                   "providers: [aws]\nttl: 1h\nssh_cidr: 0.0.0.0/0\n")
    r = CliRunner().invoke(app, ["lab", "up", str(lab), "--dry-run", "--catalog", str(cat)])
    assert r.exit_code == 2, r.stderr
    assert "opens SSH to the whole internet" in r.stderr and r.stdout == ""


def test_userdata_command_refuses_secrets_like_launch_does(tmp_path: Path) -> None:
    f = tmp_path / "boot.sh"
    f.write_text(f"#!/bin/sh\n\nexport AWS_ACCESS_KEY_ID={KEY_ID}\n")
    runner = CliRunner()
    r = runner.invoke(app, ["userdata", "-p", "aws", "--os", "ubuntu-24.04",
                            "--hypervisor", "kvm", "--user-data", str(f)])
    launch = runner.invoke(app, ["launch", "-p", "aws", "-t", "c8i.large", "-r", "us-east-1",
                                 "--dry-run", "--user-data", str(f)])
    assert (r.exit_code, launch.exit_code) == (2, 2)
    assert r.stdout == "" and KEY_ID[4:] not in r.stderr
    assert f"{f}:3:" in r.stderr and "aws-access-key-id" in r.stderr
    assert r.stderr == launch.stderr


def test_ctrl_c_while_a_lab_waits_for_readiness_names_the_running_seats(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The seats exist once the launch returned: an interrupted wait must say so, not just
    "interrupted" (issue 11)."""
    import nestcloud.bootstrap.wait as wait_mod
    from providers.aws import sandbox

    def interrupted(*args: Any, **kwargs: Any) -> Any:
        raise KeyboardInterrupt

    monkeypatch.setattr(wait_mod, "wait_for_ready", interrupted)
    cat = tmp_path / "catalog.yaml"
    cat.write_text(CATALOG_YAML)
    name = f"ctrlc-{uuid.uuid4().hex[:8]}"
    lab = tmp_path / "lab.yaml"
    lab.write_text(f"name: {name}\nseats: 2\nseat: {{vcpus: 2, memory_gib: 4}}\n"
                   "providers: [aws]\nos: al2023\nhypervisor: firecracker\nttl: 1h\n")
    runner = CliRunner()
    try:
        r = runner.invoke(app, ["lab", "up", str(lab), "--sandbox", "--catalog", str(cat)])
        assert r.exit_code == 130, r.stderr
        running = [ln for ln in r.stderr.splitlines() if "still running" in ln]
        assert len(running) == 1, r.stderr
        assert running[0].count("i-") == 2 and f"nestcloud down {name}" in running[0]
    finally:
        sandbox.stop()
