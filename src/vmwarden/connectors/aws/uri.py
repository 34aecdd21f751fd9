"""``aws://REGION[?profile=NAME]``: parsed strictly, and a boto3 session from it.

Credentials come from boto3's standard chain (environment, the profile's files, SSO,
instance role); ``AWS_ENDPOINT_URL`` is honoured by boto3 itself. No credential ever
enters a message or a log line: errors name the region and profile only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

from vmwarden.errors import ConnectorError, UnreachableError

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d{1,2}$")
_PROFILE = re.compile(r"^[A-Za-z0-9_.+=,@/-]{1,128}$")
_QUEUE = re.compile(r"^[A-Za-z0-9_-]{1,75}(\.fifo)?$")  # an SQS queue name (not a URL)
_HINT = "use aws://REGION[?profile=NAME][&sqs=QUEUE], e.g. aws://us-east-1"


@dataclass(frozen=True, slots=True)
class AwsTarget:
    """One region of one account, as a URI names it."""

    uri: str
    region: str
    profile: str | None = None
    # ``watch``: the SQS queue (name, this region and account) that EventBridge feeds with
    # EC2 instance state-change events; None: the region is polled (connectors.aws.watch)
    sqs: str | None = None


def parse_aws_uri(uri: str) -> AwsTarget:
    """Parse ``aws://REGION[?profile=NAME][&sqs=QUEUE]``; anything else is a one-line
    ``ConnectorError``."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "aws":
        raise ConnectorError(f"not an AWS URI: {uri!r}", hint=_HINT)
    if "@" in parts.netloc:  # never echo what may be a key: it is not a region either
        raise ConnectorError(
            "an AWS URI carries no credentials (aws://REGION[?profile=NAME])",
            hint="credentials come from boto3's chain: environment, profile, role",
        )
    region = parts.netloc.lower()
    if not _REGION.match(region):
        raise ConnectorError(f"not an AWS region in {uri!r}: {parts.netloc!r}", hint=_HINT)
    if parts.path not in ("", "/") or parts.fragment:
        raise ConnectorError(f"unexpected path in AWS URI {uri!r}", hint=_HINT)
    try:
        query = parse_qs(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ConnectorError(f"malformed query in AWS URI {uri!r}", hint=_HINT) from None
    unknown = sorted(set(query) - {"profile", "sqs"})
    if unknown:
        raise ConnectorError(
            f"unknown AWS URI parameter(s) {', '.join(unknown)} in {uri!r}", hint=_HINT
        )
    profile: str | None = None
    if "profile" in query:
        values = query["profile"]
        if len(values) != 1 or not _PROFILE.match(values[0]):
            raise ConnectorError(f"bad profile name in AWS URI {uri!r}", hint=_HINT)
        profile = values[0]
    sqs: str | None = None
    if "sqs" in query:
        values = query["sqs"]
        if len(values) != 1 or not _QUEUE.match(values[0]):
            raise ConnectorError(
                f"bad SQS queue in AWS URI {uri!r}",
                hint="sqs= takes the queue's name (same region and account), not its URL",
            )
        sqs = values[0]
    return AwsTarget(uri=uri, region=region, profile=profile, sqs=sqs)


def open_ec2(target: AwsTarget) -> Any:
    """A boto3 EC2 client for the target (:func:`open_client`)."""
    return open_client(target, "ec2")


def open_client(target: AwsTarget, service: str) -> Any:
    """A boto3 client of ``service`` (``ec2``, ``ebs``) for the target, its credentials
    checked up front.

    A missing profile or no credentials at all is a ``ConnectorError`` (the user's set-up),
    not a traceback; the check reads the chain locally and calls nothing.
    """
    import boto3
    import botocore.exceptions as bex

    where = f"{target.region}" + (f" (profile {target.profile})" if target.profile else "")
    try:
        session = boto3.session.Session(profile_name=target.profile, region_name=target.region)
    except bex.ProfileNotFound:
        raise ConnectorError(
            f"AWS profile {target.profile!r} not found",
            hint="name a profile from ~/.aws/config or drop ?profile=",
        ) from None
    except bex.BotoCoreError as exc:
        raise ConnectorError(f"AWS set-up for {where}: {type(exc).__name__}") from None
    try:
        creds = session.get_credentials()
    except bex.BotoCoreError as exc:
        raise ConnectorError(f"AWS credentials for {where}: {type(exc).__name__}") from None
    if creds is None:
        raise ConnectorError(
            f"no AWS credentials for {where}",
            hint="set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE or ?profile=NAME",
        )
    try:
        return session.client(service, region_name=target.region)
    except bex.BotoCoreError as exc:
        what = service.upper()
        raise UnreachableError(f"{what} in {where}: {type(exc).__name__}: {exc}") from None
