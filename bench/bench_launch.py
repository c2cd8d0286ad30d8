"""Launch overhead: `nestcloud launch --count N` vs a bare boto3 script, same endpoint, same run.

Starts moto's server (a local EC2 endpoint) in a subprocess on a free loopback port, then per
round times:

- nestcloud: ``nestcloud.launcher.launch`` with a fresh boto3 session — pre-launch checks, the
  live type check, image lookup, default VPC, security group, reconcile, N RunInstances,
  read-back; the lookups whose answers do not change come from nestcloud's cache (a fresh
  temporary directory the untimed run fills);
- the same, cold: NESTCLOUD_CACHE_DIR=off, every lookup read live;
- bare boto3: a fresh session and client sending exactly the RunInstances requests nestcloud
  sent (recorded through botocore's event hook, new names), one after the other.

Both sides pay for creating their boto3 clients; each timed launch starts from a freshly reset
and warmed endpoint, and the order alternates between rounds. Prints the median ratio and a line to paste
into README. Usage: python bench/bench_launch.py [--count 20] [--rounds 5] [--check]
"""

from __future__ import annotations

import argparse
import copy
import gc
import os
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterable, Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Any

TARGET = 1.2
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


SERVER_PID: list[int] = []


def server_cpu() -> float:
    """CPU seconds the endpoint process has used (Linux /proc; 0 elsewhere)."""
    try:
        fields = open(f"/proc/{SERVER_PID[0]}/stat").read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


class Timer:
    """Wall time, and CPU time of this process plus the endpoint's (immune to a busy box)."""

    def __enter__(self) -> Timer:
        # Every timed side starts from a collected heap: otherwise a full collection of what
        # earlier rounds left (boto3 sessions, service models) lands in whichever side
        # happens to cross the threshold, +-0.2 s either way.
        gc.collect()
        self.w0, self.c0, self.s0 = time.perf_counter(), time.process_time(), server_cpu()
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self.w0
        self.cpu = time.process_time() - self.c0 + server_cpu() - self.s0


@contextmanager
def moto_server() -> Iterator[str]:
    port = free_port()
    # nestcloud's local endpoint: moto, reporting the nested switch back as EC2 does (the
    # launch's read-back requires it), the same one `--sandbox` runs.
    proc = subprocess.Popen([sys.executable, "-m", "providers.aws.sandbox", "-H", "127.0.0.1",
                             "-p", str(port)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    SERVER_PID[:] = [proc.pid]
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(f"{url}/moto-api/", timeout=1).close()  # noqa: S310
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise SystemExit("moto server did not start") from None
                time.sleep(0.1)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def session() -> Any:
    import boto3

    return boto3.Session(aws_access_key_id="bench", aws_secret_access_key="bench",
                         region_name=REGION)


@contextmanager
def _cache_setting(value: str) -> Iterator[None]:
    """NESTCLOUD_CACHE_DIR set to ``value`` inside the block, as it was after it."""
    from nestcloud.cache import ENV_CACHE_DIR

    old = os.environ.get(ENV_CACHE_DIR)
    os.environ[ENV_CACHE_DIR] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_CACHE_DIR, None)
        else:
            os.environ[ENV_CACHE_DIR] = old


@contextmanager
def bench_cache() -> Iterator[str]:
    """A fresh cache directory for the benchmark's nestcloud runs (filled by its untimed
    runs), so it neither reads nor writes the user's own; yields its path."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="nestcloud-bench-cache-") as d, _cache_setting(d):
        yield d


def cache_off() -> AbstractContextManager[None]:
    """Every fact nestcloud caches read live: a first run for an access key."""
    return _cache_setting("off")


def print_runs(rows: Iterable[tuple[str, list[Timer]]]) -> None:
    """Each side's per-round wall and CPU seconds."""
    for label, xs in rows:
        print(f"{label:>22}: wall {[round(x.wall, 2) for x in xs]} s, cpu "
              f"{[round(x.cpu, 2) for x in xs]} s")


def nestcloud_launch(url: str, name: str, count: int, record: bool = False
                     ) -> tuple[Timer, list[dict[str, Any]]]:
    from nestcloud.catalog import load_catalog
    from nestcloud.launcher import launch
    from nestcloud.spec import LaunchSpec
    from providers.aws import AwsProvider

    catalog = load_catalog()
    sent: list[dict[str, Any]] = []
    s = session()
    if record:  # only in the untimed run that captures the requests for the bare script
        s.events.register("provide-client-params.ec2.RunInstances",
                          lambda params, **_: sent.append(copy.deepcopy(params)))
    spec = LaunchSpec(provider="aws", type="c8i.large", region=REGION, os="al2023",
                      hypervisor="firecracker", name=name, count=count)
    with Timer() as timer:
        prov = AwsProvider(region=REGION, endpoint_url=url, session=s)
        # The seat-by-seat path (N RunInstances): above its fleet threshold `launch` sends
        # one CreateFleet instead, which bench_fleet.py measures.
        prov.fleet_threshold = count
        res = launch(spec, catalog, prov)
    assert len(res.instances) == count, res
    assert not record or len(sent) == count, f"recorded {len(sent)} RunInstances, not {count}"
    return timer, sent


def fresh_world(url: str) -> None:
    """Reset the endpoint and warm its EC2 backend, so every timed launch starts alike.

    moto scans every instance it holds on each DescribeInstances; without a reset, later
    rounds would pay for earlier rounds' instances.
    """
    urllib.request.urlopen(urllib.request.Request(f"{url}/moto-api/reset",  # noqa: S310
                                                  method="POST"), timeout=30).close()
    s = session()
    ec2 = s.client("ec2", endpoint_url=url)
    ec2.describe_instance_types(InstanceTypes=["c8i.large"])
    ec2.describe_vpcs()
    s.client("ssm", endpoint_url=url).get_parameter(
        Name="/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64")
    s.client("sts", endpoint_url=url).get_caller_identity()


def bare_boto3(url: str, requests: list[dict[str, Any]], name: str) -> Timer:
    reqs = copy.deepcopy(requests)
    setup = session().client("ec2", endpoint_url=url)  # untimed: the group the calls name
    vpc = setup.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    sg = setup.create_security_group(GroupName=f"bare-{name}", Description="bench",
                                     VpcId=vpc["VpcId"])["GroupId"]
    for n, p in enumerate(reqs):
        p["ClientToken"] = f"{name}-{n}"
        p["SecurityGroupIds"] = [sg]
        for ts in p["TagSpecifications"]:
            for tag in ts["Tags"]:
                if tag["Key"] == "nestcloud:name":
                    tag["Value"] = name
    with Timer() as timer:
        ec2 = session().client("ec2", endpoint_url=url)
        for p in reqs:
            ec2.run_instances(**p)
    return timer


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=20)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET}x")
    args = ap.parse_args(argv)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    from importlib.metadata import version

    with moto_server() as url, bench_cache():
        fresh_world(url)
        _, sent = nestcloud_launch(url, "bench-rec", args.count, record=True)
        ours: list[Timer] = []
        cold: list[Timer] = []
        bare: list[Timer] = []
        for r in range(args.rounds):
            order = ("ours", "bare", "cold") if r % 2 == 0 else ("cold", "bare", "ours")
            for who in order:
                fresh_world(url)
                if who == "ours":
                    ours.append(nestcloud_launch(url, f"bench-nc-{r}", args.count)[0])
                elif who == "cold":
                    with cache_off():
                        cold.append(nestcloud_launch(url, f"bench-cold-{r}", args.count)[0])
                else:
                    bare.append(bare_boto3(url, sent, f"bench-bare-{r}"))

    def med(xs: list[Timer], attr: str) -> float:
        return statistics.median(getattr(x, attr) for x in xs)

    ratio = med(ours, "wall") / med(bare, "wall")
    cold_ratio = med(cold, "wall") / med(bare, "wall")
    cpu_ratio = med(ours, "cpu") / med(bare, "cpu")
    rows = (("nestcloud", ours), ("nestcloud, cold", cold), ("bare boto3", bare))
    print_runs(rows)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"README: `--count {args.count}` against a local EC2 endpoint (moto "
          f"{version('moto')}): nestcloud {med(ours, 'wall'):.2f} s wall (checks, "
          f"type/image/VPC/identity lookups, security group, {args.count} RunInstances 8 at a time, "
          f"read-back) vs a bare boto3 script sending the same {args.count} RunInstances "
          f"{med(bare, 'wall'):.2f} s: ratio {ratio:.2f} (target <= {TARGET}); CPU "
          f"(client + endpoint) ratio {cpu_ratio:.2f}; with every cached fact read live "
          f"{med(cold, 'wall'):.2f} s, ratio {cold_ratio:.2f}. Medians of {args.rounds} rounds, "
          f"load average {load:.1f}, bench/bench_launch.py")
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
