"""A 100-seat lab through the EC2 Fleet path vs a bare boto3 CreateFleet script vs 100
sequential RunInstances launches, against one local EC2 endpoint (moto's server) in one run.

Per round, each from a freshly reset and warmed endpoint (order alternating):

- nestcloud fleet: ``Lab.up`` for N seats (explicit type c8i.large, us-east-1, no readiness
  wait): plan, budget, checks, the lab's tag search (which is also the plan's seat
  reconcile) with the quota read and the plan's lookups read ahead beside it (type check,
  SSM image + DescribeImages, default subnets, STS identity: those whose answers do not
  change come from nestcloud's cache, a fresh temporary directory the untimed runs fill),
  CreateSecurityGroup, launch template (the name's lock across machines), the seats read
  again under it, one CreateFleet, one read-back probe, template delete;
- the same, cold: NESTCLOUD_CACHE_DIR=off, every lookup read live (a first run for a key);
- bare boto3: a fresh session sending the same CreateLaunchTemplate + CreateFleet +
  DeleteLaunchTemplate nestcloud sent (recorded in an untimed run, new names);
- nestcloud seat by seat: the same lab with the fleet threshold raised, i.e. N RunInstances
  one after the other (nestcloud's path below the threshold, and what a lab did before).

Both sides build their session and clients inside the timed region; each timed run starts
from a collected heap (Timer) and a reset endpoint; both sides are warmed untimed first.
Prints medians and a README line. Usage: python bench/bench_fleet.py [--seats 100]
[--rounds 5] [--check]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_launch import (  # noqa: E402
    REGION,
    Timer,
    bench_cache,
    cache_off,
    fresh_world,
    moto_server,
    print_runs,
    session,
)

TARGET = 1.2
RECORDED = ("CreateLaunchTemplate", "CreateFleet", "DeleteLaunchTemplate")


def nestcloud_lab(url: str, name: str, seats: int, fleet: bool, record: bool = False
                  ) -> tuple[Timer, list[tuple[str, dict[str, Any]]]]:
    from nestcloud.catalog import load_catalog
    from nestcloud.lab import Lab
    from providers.aws import AwsProvider

    catalog = load_catalog()
    sent: list[tuple[str, dict[str, Any]]] = []

    with Timer() as timer:
        s = session()
        if record:  # only in the untimed run that captures the requests for the bare script
            for op in RECORDED:
                s.events.register(f"provide-client-params.ec2.{op}",
                                  lambda params, model, **_: sent.append(
                                      (model.name, copy.deepcopy(params))))
        made: dict[str, AwsProvider] = {}

        def factory(provider: str, region: str) -> AwsProvider:
            if region not in made:
                made[region] = AwsProvider(region=region, endpoint_url=url, session=s)
                if not fleet:
                    made[region].fleet_threshold = 10 ** 6
            return made[region]

        lab = Lab(name, seats, type="c8i.large", providers=["aws"], regions=[REGION],
                  os="al2023", hypervisor="firecracker", ttl="1h", catalog=catalog)
        if not fleet:
            lab.fleet_threshold = 10 ** 6
        res = lab.up(sandbox=True, providers=factory, wait=False)
    assert res.launch is not None and len(res.launch.instances) == seats, res
    return timer, sent


def zones(url: str) -> dict[str, str]:
    """Default subnet id -> its zone, in the endpoint's current world."""
    ec2 = session().client("ec2", endpoint_url=url)
    return {s["SubnetId"]: s["AvailabilityZone"] for s in ec2.describe_subnets(
        Filters=[{"Name": "default-for-az", "Values": ["true"]}])["Subnets"]}


def bare_boto3(url: str, requests: list[tuple[str, dict[str, Any]]], recorded_zones:
               dict[str, str], name: str) -> Timer:
    reqs = copy.deepcopy(requests)
    setup = session().client("ec2", endpoint_url=url)  # untimed: the group the template names
    vpc = setup.describe_vpcs(Filters=[{"Name": "is-default", "Values": ["true"]}])["Vpcs"][0]
    sg = setup.create_security_group(GroupName=f"bare-{name}", Description="bench",
                                     VpcId=vpc["VpcId"])["GroupId"]
    subnets = {z: sid for sid, z in zones(url).items()}
    with Timer() as timer:
        ec2 = session().client("ec2", endpoint_url=url)
        template_id = ""
        for op, p in reqs:
            if op == "CreateLaunchTemplate":
                p["LaunchTemplateName"] = f"bare-{name}"
                p["LaunchTemplateData"]["SecurityGroupIds"] = [sg]
                template_id = ec2.create_launch_template(**p)["LaunchTemplate"][
                    "LaunchTemplateId"]
            elif op == "CreateFleet":
                p["ClientToken"] = f"bare-{name}"
                cfg = p["LaunchTemplateConfigs"][0]
                cfg["LaunchTemplateSpecification"]["LaunchTemplateId"] = template_id
                for o in cfg["Overrides"]:  # same zones (the reset renames subnets)
                    o["SubnetId"] = subnets[recorded_zones[o["SubnetId"]]]
                got = ec2.create_fleet(**p)
            else:
                ec2.delete_launch_template(LaunchTemplateId=template_id)
    assert sum(len(i["InstanceIds"]) for i in got["Instances"]) == p_count(reqs)
    return timer


def p_count(reqs: list[tuple[str, dict[str, Any]]]) -> int:
    return int(next(p for op, p in reqs if op == "CreateFleet")[
        "TargetCapacitySpecification"]["TotalTargetCapacity"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seats", type=int, default=100)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--check", action="store_true", help=f"exit 1 above {TARGET}x")
    args = ap.parse_args(argv)
    os.environ.setdefault("AWS_EC2_METADATA_DISABLED", "true")
    with bench_cache():
        return run(args)


def run(args: argparse.Namespace) -> int:
    from importlib.metadata import version

    with moto_server() as url:
        fresh_world(url)
        _, sent = nestcloud_lab(url, "bench-rec", args.seats, True, record=True)
        recorded_zones = zones(url)
        assert [op for op, _ in sent] == list(RECORDED), [op for op, _ in sent]
        # Untimed warm-up of both sides: the endpoint's first full garbage collection (over
        # moto's loaded instance-type and image data, ~0.13 s) otherwise lands in whichever
        # side runs first in round 0.
        for w in range(2):
            fresh_world(url)
            bare_boto3(url, sent, recorded_zones, f"bench-warm-bare-{w}")
            fresh_world(url)
            nestcloud_lab(url, f"bench-warm-{w}", args.seats, True)
            fresh_world(url)
            with cache_off():
                nestcloud_lab(url, f"bench-warm-cold-{w}", args.seats, True)
        ours: list[Timer] = []
        cold: list[Timer] = []
        bare: list[Timer] = []
        seq: list[Timer] = []
        for r in range(args.rounds):
            order = (("ours", "bare", "cold", "seq") if r % 2 == 0 else
                     ("seq", "cold", "bare", "ours"))
            for who in order:
                fresh_world(url)
                if who == "ours":
                    ours.append(nestcloud_lab(url, f"bench-fleet-{r}", args.seats, True)[0])
                elif who == "cold":
                    with cache_off():
                        cold.append(nestcloud_lab(url, f"bench-cold-{r}", args.seats, True)[0])
                elif who == "bare":
                    bare.append(bare_boto3(url, sent, recorded_zones, f"bench-bare-{r}"))
                else:
                    seq.append(nestcloud_lab(url, f"bench-seq-{r}", args.seats, False)[0])

    def med(xs: list[Timer], attr: str) -> float:
        return statistics.median(getattr(x, attr) for x in xs)

    ratio = med(ours, "wall") / med(bare, "wall")
    cold_ratio = med(cold, "wall") / med(bare, "wall")
    cpu_ratio = med(ours, "cpu") / med(bare, "cpu")
    print_runs((("nestcloud fleet", ours), ("nestcloud fleet, cold", cold),
                ("bare boto3 fleet", bare), ("nestcloud seat by seat", seq)))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"README: a {args.seats}-seat lab against a local EC2 endpoint (moto "
          f"{version('moto')}): nestcloud through EC2 Fleet {med(ours, 'wall'):.2f} s wall "
          f"(plan, checks, the lab's tag search with the quota read and the plan's lookups "
          f"read ahead beside it, security group, launch template (the lab's lock across "
          f"machines), its seats read again under it, one CreateFleet, read-back probe, "
          f"template delete) vs a bare boto3 script sending the same "
          f"template + CreateFleet + delete {med(bare, 'wall'):.2f} s: ratio {ratio:.2f} "
          f"(target <= {TARGET}), CPU (client + endpoint) ratio {cpu_ratio:.2f}; with every "
          f"cached fact read live (first run for a key, or NESTCLOUD_CACHE_DIR=off) "
          f"{med(cold, 'wall'):.2f} s, ratio {cold_ratio:.2f}; the same lab as {args.seats} "
          f"sequential RunInstances {med(seq, 'wall'):.2f} s "
          f"({med(seq, 'wall') / med(ours, 'wall'):.1f}x the fleet path). Medians of "
          f"{args.rounds} rounds, load average {load:.1f}, bench/bench_fleet.py")
    return 1 if args.check and ratio > TARGET else 0


if __name__ == "__main__":
    sys.exit(main())
