"""The provider contract (nestcloud/provider.py docstring) as one reusable test suite.

Every provider runs the same tests against its local endpoint, fsspec tests/abstract style:

    from contract import ContractTarget, ProviderContract   # tests/ is on sys.path

    class TestMyCloudContract(ProviderContract):
        @pytest.fixture
        def target(self, ...) -> ContractTarget:
            return ContractTarget(provider=..., catalog=..., make_spec=..., leftovers=...)

``make_spec(name, count)`` returns a LaunchSpec the provider can launch on its endpoint;
``leftovers(name)`` lists whatever the endpoint still holds for that name (any resource kind,
found without the provider's own code), so "down leaves nothing" is checked independently.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pytest

from nestcloud.catalog import Catalog
from nestcloud.provider import (Capabilities, LaunchOutcome, LaunchRequest, Provider,
                                ProviderOption)
from nestcloud.spec import TAG_NAME, TAG_OWNER, LaunchSpec


@dataclass
class ContractTarget:
    provider: Provider
    catalog: Catalog
    make_spec: Callable[[str, int], LaunchSpec]
    leftovers: Callable[[str], list[str]]


class ProviderContract:
    """Subclass it and provide a ``target`` fixture; every test here then runs for you."""

    @pytest.fixture
    def target(self) -> ContractTarget:  # pragma: no cover - always overridden
        raise NotImplementedError

    def test_is_a_provider(self, target: ContractTarget) -> None:
        assert isinstance(target.provider, Provider)
        assert isinstance(target.provider.name, str) and target.provider.name

    def test_declares_its_contract_on_the_class(self, target: ContractTarget) -> None:
        cls = type(target.provider)
        assert cls.name == target.provider.name
        assert isinstance(cls.capabilities, Capabilities)
        assert isinstance(cls.options, tuple)
        assert all(isinstance(o, ProviderOption) and o.flag.startswith("--")
                   for o in cls.options)
        assert len({o.name for o in cls.options}) == len(cls.options)
        # Optional verbs exist exactly when declared (the core calls them only then).
        caps = cls.capabilities
        for verb, declared in (("vcpu_quota", caps.quota), ("prefetch", caps.prefetch),
                               ("unlock", caps.launch_lock),
                               ("local_endpoint", caps.local_endpoint)):
            if declared:
                assert callable(getattr(cls, verb, None)), verb
        assert callable(getattr(cls, "configured", None))

    def test_launch_returns_its_whole_outcome(self, target: ContractTarget) -> None:
        p = target.provider
        out = p.launch(LaunchRequest(target.make_spec("ct-outcome", 1), target.catalog))
        assert isinstance(out, LaunchOutcome)
        assert out.result is not None and len(out.result.created) == 1
        assert out.created_any is True and out.lock_held is False
        again = p.launch(LaunchRequest(target.make_spec("ct-outcome", 1), target.catalog))
        assert again.result is not None and again.result.created == []
        assert p.down("ct-outcome").terminated

    def test_launch_then_list(self, target: ContractTarget) -> None:
        p = target.provider
        res = p.launch(LaunchRequest(target.make_spec("ct-one", 2), target.catalog)).result
        assert not res.dry_run
        assert len(res.created) == 2 and res.reused == []
        listed = p.list("ct-one")
        assert sorted(i.id for i in listed) == sorted(res.created)
        for inst in listed:
            assert inst.provider == p.name
            assert inst.name == "ct-one"
            assert inst.tags[TAG_NAME] == "ct-one"
            assert inst.tags.get(TAG_OWNER)
        assert sorted(i.seat for i in listed) == [0, 1]

    def test_relaunch_converges(self, target: ContractTarget) -> None:
        p = target.provider
        first = p.launch(LaunchRequest(target.make_spec("ct-again", 2), target.catalog)).result
        again = p.launch(LaunchRequest(target.make_spec("ct-again", 2), target.catalog)).result
        assert again.created == []
        assert sorted(again.reused) == sorted(first.created)
        assert len(p.list("ct-again")) == 2
        grown = p.launch(LaunchRequest(target.make_spec("ct-again", 3), target.catalog)).result
        assert len(grown.created) == 1 and len(grown.reused) == 2
        assert sorted(i.seat for i in p.list("ct-again")) == [0, 1, 2]

    def test_down_removes_everything_and_repeats_harmlessly(self, target: ContractTarget
                                                           ) -> None:
        p = target.provider
        res = p.launch(LaunchRequest(target.make_spec("ct-down", 2), target.catalog)).result
        assert target.leftovers("ct-down")
        gone = p.down("ct-down")
        assert sorted(gone.terminated) == sorted(res.created)
        assert p.list("ct-down") == []
        assert target.leftovers("ct-down") == []
        again = p.down("ct-down")
        assert again.terminated == [] and again.deleted == []
        assert p.list() == []

    def test_list_filters_by_name(self, target: ContractTarget) -> None:
        p = target.provider
        p.launch(LaunchRequest(target.make_spec("ct-a", 1), target.catalog)).result
        p.launch(LaunchRequest(target.make_spec("ct-b", 1), target.catalog)).result
        assert [i.name for i in p.list("ct-a")] == ["ct-a"]
        assert sorted(i.name for i in p.list()) == ["ct-a", "ct-b"]
        assert p.list("ct-missing") == []
        p.down("ct-a")
        assert [i.name for i in p.list()] == ["ct-b"]

    def test_dry_run_creates_nothing(self, target: ContractTarget) -> None:
        p = target.provider
        res = p.launch(LaunchRequest(target.make_spec("ct-dry", 2), target.catalog, dry_run=True)).result
        assert res.dry_run and res.requests
        assert res.created == []
        assert p.list("ct-dry") == []
        assert target.leftovers("ct-dry") == []

    def test_console_is_text(self, target: ContractTarget) -> None:
        p = target.provider
        res = p.launch(LaunchRequest(target.make_spec("ct-console", 1), target.catalog)).result
        assert isinstance(p.console(res.instances[0]), str)

    def test_tags_carry_the_ttl_and_the_users_own(self, target: ContractTarget) -> None:
        # The contract's tags: name, owner, an expiry `nestcloud reap` can read (the TTL from
        # the launch), and the user's tags, on every instance of the group.
        import datetime as dt

        from nestcloud.reap import parse_expiry
        from nestcloud.spec import TAG_EXPIRES

        p = target.provider
        spec = target.make_spec("ct-tags", 2)
        spec = spec.model_copy(update={"ttl_seconds": 7200,
                                       "tags": {**spec.tags, "team": "contract"}})
        before = dt.datetime.now(dt.timezone.utc)
        p.launch(LaunchRequest(spec, target.catalog))
        after = dt.datetime.now(dt.timezone.utc)
        listed = p.list("ct-tags")
        assert len(listed) == 2
        for inst in listed:
            assert inst.tags[TAG_NAME] == "ct-tags" and inst.tags.get(TAG_OWNER)
            assert inst.tags["team"] == "contract"
            when = parse_expiry(inst.tags[TAG_EXPIRES])
            assert when is not None
            # Never shorter than the TTL (the stamp may drop sub-seconds); a provider may round
            # it up to the minute (AWS does, so re-runs within a minute send equal requests).
            assert (before + dt.timedelta(seconds=7200 - 1) <= when
                    <= after + dt.timedelta(seconds=7200 + 60))

    def test_without_ttl_no_expiry(self, target: ContractTarget) -> None:
        from nestcloud.spec import TAG_EXPIRES

        p = target.provider
        spec = target.make_spec("ct-nottl", 1).model_copy(update={"ttl_seconds": None})
        p.launch(LaunchRequest(spec, target.catalog))
        assert [TAG_EXPIRES in i.tags for i in p.list("ct-nottl")] == [False]
