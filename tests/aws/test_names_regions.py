"""Issue 11 at the AWS provider's own entry: a group name is never a pattern, a malformed region
never reaches botocore, and no error message shows the request's authorization header."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError, HTTPClientError

from nestcloud.errors import InputError
from nestcloud.launcher import launch

RULE = ("names are 1-40 characters: lowercase letters, digits and '-', starting with a letter "
        "and not ending with '-'")
HEADER = ("AWS4-HMAC-SHA256 Credential=AKIAIOSFODNN7EXAMPLE/20261207/us-east-1\n/ec2/"
          "aws4_request, SignedHeaders=content-type;host;x-amz-date, "
          "Signature=2712c742d08792134a33c38c8be2da51ddb346c3c227cfea3023f8e9f54fe7ca")


@pytest.mark.parametrize("bad", ["*", "", "?", "t*", "lab\n", "Lab"])
def test_down_and_list_refuse_a_pattern_and_touch_no_other_group(aws, rec, catalog, spec_for,
                                                                 name, ec2, bad):
    first = launch(spec_for(), catalog, aws)
    other = launch(spec_for(name=name + "-b"), catalog, aws)
    rec.calls.clear()

    for verb in (aws.down, aws.list):
        with pytest.raises(InputError) as info:
            verb(bad)
        assert info.value.message == f"group name {bad!r}: {RULE}"
    assert rec.calls == []  # nothing was sent, not even a describe

    ids = [first.instances[0].id, other.instances[0].id]
    states = {i["InstanceId"]: i["State"]["Name"]
              for r in ec2.describe_instances(InstanceIds=ids)["Reservations"]
              for i in r["Instances"]}
    assert set(states.values()) <= {"pending", "running"}, states
    assert [i.name for i in aws.list(name)] == [name]
    assert [i.name for i in aws.list(name + "-b")] == [name + "-b"]


def test_list_without_a_name_still_lists_every_group(aws, catalog, spec_for, name):
    launch(spec_for(), catalog, aws)
    assert name in {i.name for i in aws.list()}


@pytest.mark.parametrize("region", ["us-east-1\n", "us-east-1/../x", " us-east-1",
                                    "us-east-1\r\nX-Amz-Target: x"])
def test_a_malformed_region_never_reaches_botocore(moto_endpoint, recorded, region):
    from providers.aws import AwsProvider

    session, rec = recorded
    prov = AwsProvider(region="us-east-1", endpoint_url=moto_endpoint, session=session)
    prov.region = region  # as a profile or AWS_DEFAULT_REGION could set it
    with pytest.raises(InputError) as info:
        prov.list()
    assert info.value.message.startswith(f"AWS region {region!r}: ")
    assert "Credential=" not in str(info.value) and "Signature=" not in str(info.value)
    assert rec.calls == []


def test_sdk_errors_never_carry_the_authorization_header():
    from providers.aws.errors import translate

    exc = HTTPClientError(error=ValueError(f"Invalid header value b'{HEADER}'"))
    err = translate(exc, action="list instances")
    text = str(err)
    assert "AKIAIOSFODNN7EXAMPLE" not in text and "2712c742d08792" not in text
    assert "Credential=" not in text and "Signature=" not in text
    assert text.startswith("AWS SDK error while trying to list instances: ")


def test_client_error_messages_are_scrubbed_too():
    from providers.aws.errors import translate

    exc = ClientError({"Error": {"Code": "IncompleteSignature",
                                 "Message": f"Authorization header: {HEADER}; "
                                            "X-Amz-Security-Token=FQoGZXIvYXdzEXAMPLE"}},
                      "DescribeInstances")
    text = str(translate(exc, action="list instances"))
    for secret in ("AKIAIOSFODNN7EXAMPLE", "2712c742d08792", "FQoGZXIvYXdzEXAMPLE"):
        assert secret not in text
    assert "IncompleteSignature" in text


def test_unparseable_endpoint_answers_are_provider_errors(aws, monkeypatch):
    """A non-AWS answer (a proxy's HTML page) is a provider error, exit 1, not an internal one."""
    from botocore.parsers import ResponseParserError

    from nestcloud.errors import ProviderError

    def broken(*a: Any, **k: Any) -> Any:
        raise ResponseParserError("Unable to parse response (syntax error), invalid XML "
                                  "received: b'<!doctype html>'")

    client = aws.client("ec2", "us-east-1")
    monkeypatch.setattr(client, "get_paginator", lambda *_: type(
        "P", (), {"paginate": staticmethod(broken)})())
    with pytest.raises(ProviderError) as info:
        aws.list()
    assert info.value.exit_code == 1
    assert "could not be read" in str(info.value)


def test_an_invalid_region_from_botocore_is_bad_input():
    from botocore.exceptions import InvalidRegionError

    from providers.aws.errors import translate

    err = translate(InvalidRegionError(region_name="us-east-1\n"), action="list instances")
    assert isinstance(err, InputError) and err.exit_code == 2
    assert err.message == "AWS region 'us-east-1\\n': not a region name (e.g. us-east-1)"
