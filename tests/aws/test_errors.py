"""Every AWS failure becomes a nestcloud error saying what to do, raised from the SDK's."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError, NoCredentialsError
from fakes.moto_server import inject_error

from nestcloud.errors import (
    CapacityError,
    CredentialsError,
    ProviderError,
    QuotaError,
    ThrottledError,
    UnsupportedError,
)
from nestcloud.launcher import launch

CASES = [
    ("UnsupportedOperation", UnsupportedError,
     "AWS refused to launch c8i.large (seat 0 of '{name}') in us-east-1 (AWS: "
     "UnsupportedOperation: injected)", "catalog verify --provider aws --region us-east-1"),
    ("InsufficientInstanceCapacity", CapacityError,
     "AWS has no capacity for c8i.large in us-east-1 right now (AWS: "
     "InsufficientInstanceCapacity: injected)", "another availability zone"),
    ("VcpuLimitExceeded", QuotaError,
     "your AWS account limit in us-east-1 does not allow this launch (AWS: VcpuLimitExceeded: "
     "injected)", "Service Quotas"),
    ("InvalidParameterValue", ProviderError,
     "AWS rejected a parameter while trying to launch c8i.large (seat 0 of '{name}') in "
     "us-east-1 (AWS: InvalidParameterValue: injected)", "--dry-run"),
    ("ExpiredToken", CredentialsError,
     "your AWS credentials have expired (AWS: ExpiredToken: injected)", "aws sso login"),
    ("AuthFailure", CredentialsError,
     "AWS rejected the credentials while trying to launch c8i.large (seat 0 of '{name}') "
     "(AWS: AuthFailure: injected)", "--sandbox"),
    ("RequestLimitExceeded", ThrottledError,
     "AWS kept throttling the requests to launch c8i.large (seat 0 of '{name}') in us-east-1 "
     "(AWS: RequestLimitExceeded: injected)", "run the same command again"),
    ("Throttling", ThrottledError,
     "AWS kept throttling the requests to launch c8i.large (seat 0 of '{name}') in us-east-1 "
     "(AWS: Throttling: injected)", "run the same command again"),
]


@pytest.mark.parametrize(("code", "cls", "message", "hint_part"), CASES,
                         ids=[c[0] for c in CASES])
def test_run_instances_errors_are_translated(aws, catalog, spec_for, recorded, name, code, cls,
                                             message, hint_part):
    inject_error(recorded[0], "ec2", "RunInstances", code)
    with pytest.raises(cls) as err:
        launch(spec_for(), catalog, aws)
    e = err.value
    assert type(e) is cls
    assert e.message == message.format(name=name)
    assert hint_part in (e.hint or "")
    assert e.exit_code == 1 and e.code == code and e.provider == "aws"
    assert isinstance(e.__cause__, ClientError)


def test_missing_credentials(moto_endpoint, catalog, spec_for, monkeypatch):
    import boto3

    from providers.aws import AwsProvider

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    prov = AwsProvider(region="us-east-1", endpoint_url=moto_endpoint,
                       session=boto3.Session(region_name="us-east-1"))
    with pytest.raises(CredentialsError) as err:
        launch(spec_for(), catalog, prov)
    assert err.value.message == ("no AWS credentials found while trying to describe instance "
                                 "type c8i.large")
    assert "aws sso login" in (err.value.hint or "") and "--sandbox" in (err.value.hint or "")
    assert isinstance(err.value.__cause__, NoCredentialsError)


def test_credentials_come_from_the_standard_chain(moto_endpoint, monkeypatch):
    """No session given: boto3's own chain (here the environment) and AWS_ENDPOINT_URL."""
    from providers.aws import AwsProvider

    monkeypatch.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    prov = AwsProvider(region="us-east-1")
    assert prov.endpoint_url is None
    client = prov.client("ec2")
    assert client.meta.endpoint_url == moto_endpoint
    assert client.meta.config.retries == {"mode": "standard", "total_max_attempts": 10}
    assert prov.list("nobody-has-this-name") == []


def test_throttling_is_retried_by_the_sdk_first(aws, catalog, spec_for, recorded, monkeypatch):
    # Two throttles then success: botocore's standard mode absorbs them, the launch works.
    import botocore.retries.standard as std

    monkeypatch.setattr(std.ExponentialBackoff, "delay_amount", lambda self, ctx: 0)
    session, rec = recorded
    hits = [0]

    def flaky(request, **kw):  # type: ignore[no-untyped-def]
        from botocore.awsrequest import AWSResponse

        if hits[0] < 2:
            hits[0] += 1
            body = (b'<Response><Errors><Error><Code>RequestLimitExceeded</Code><Message>slow '
                    b'down</Message></Error></Errors><RequestID>x</RequestID></Response>')

            class Raw:
                def stream(self, *a, **k):  # type: ignore[no-untyped-def]
                    yield body

            return AWSResponse(request.url, 503, {}, Raw())
        return None

    session.events.register("before-send.ec2.RunInstances", flaky)
    res = launch(spec_for(), catalog, aws)
    assert hits == [2] and len(res.instances) == 1


def test_local_endpoint_without_credentials_gets_fake_ones(moto_endpoint, monkeypatch):
    """The labs path builds the provider with just the sandbox URL: it must still work."""
    from providers.aws import AwsProvider

    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
        monkeypatch.delenv(var, raising=False)
    prov = AwsProvider(region="us-east-1", endpoint_url=moto_endpoint)
    assert prov.sandbox is True
    assert prov.session.get_credentials().access_key == "nestcloud-sandbox"
    assert prov.list("nobody-has-this-name") == []
    # A remote endpoint never gets invented credentials.
    remote = AwsProvider(region="us-east-1", endpoint_url="https://ec2.example.internal")
    assert remote.sandbox is False and remote.session.get_credentials() is None
