"""LaunchSpec.instance_profile: an IAM instance profile name, checked like the other fields."""

from __future__ import annotations

import pytest

from nestcloud.errors import SpecError
from nestcloud.spec import LaunchSpec


@pytest.mark.parametrize("name", ["nc-l1", "a", "Role_1+=,.@-", "x" * 128])
def test_good_names(name: str) -> None:
    assert LaunchSpec(provider="aws", type="m8i.large", instance_profile=name
                      ).instance_profile == name


def test_default_is_none() -> None:
    assert LaunchSpec(provider="aws", type="m8i.large").instance_profile is None


@pytest.mark.parametrize("name", ["", "has space", "x" * 129, "arn:aws:iam::1:instance-profile/x",
                                  "naïve",
                                  # `$` also matches before a trailing newline: the whole
                                  # name must match, as for group names.
                                  "nc-l1\n"])
def test_bad_names_name_the_field(name: str) -> None:
    with pytest.raises(SpecError) as err:
        LaunchSpec(provider="aws", type="m8i.large", instance_profile=name)
    [e] = err.value.errors()
    assert e["loc"] == ("instance_profile",)
    assert e["msg"] == ("Value error, an IAM instance profile name is 1-128 characters: "
                        "letters, digits and + = , . @ _ -")
