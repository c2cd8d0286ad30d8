"""The AWS provider (EC2), split by layer; importing it imports no SDK (boto3 is imported where
a session or client is made).

- ``errors``: SDK exceptions as nestcloud errors, with the scope failover reads
- ``requests``: every request as data, built from a launch plan; reading answers back (pure)
- ``lock``: the name's launch lock across machines (its launch template)
- ``fleet``: big launches through one EC2 Fleet call
- ``pricing``, ``iam``, ``rules``, ``sandbox``: what the class hooks return (prices, the IAM
  policy, pre-launch rules, the local endpoint)
- ``provider``: :class:`AwsProvider`, the verbs (launch, list, down, console, verify)
- ``files/set-tag.ps1``: how a Windows L1 writes its readiness tag

A module imports only modules listed above it (and the core), so nothing imports itself back.
"""

from providers.aws.provider import AwsProvider

__all__ = ["AwsProvider"]
