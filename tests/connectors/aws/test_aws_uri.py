"""``aws://REGION[?profile=NAME]`` and credentials: strict parsing, one-line errors, no
secret in any message (against moto's server: nothing here is a fake of boto3)."""

from __future__ import annotations

import pytest

from vmwarden.connectors.aws.uri import parse_aws_uri
from vmwarden.connectors.base import open_connector
from vmwarden.errors import ConnectorError


def test_region_and_profile_are_parsed() -> None:
    t = parse_aws_uri("aws://eu-west-3?profile=audit-ro")
    assert (t.region, t.profile) == ("eu-west-3", "audit-ro")
    assert parse_aws_uri("aws://us-gov-west-1/").profile is None


@pytest.mark.parametrize(
    "uri",
    [
        "aws://",
        "aws://not a region",
        "aws://us-east-1/path",
        "aws://key:secret@us-east-1",
        "aws://us-east-1?profile=",
        "aws://us-east-1?profile=a&profile=b",
        "aws://us-east-1?region=eu-west-1",
        "aws://us-east-1?profile=$(reboot)",
        "aws://../../etc",
    ],
)
def test_a_malformed_uri_is_a_connector_error(uri: str) -> None:
    with pytest.raises(ConnectorError) as err:
        parse_aws_uri(uri)
    assert err.value.exit_code == 2 and err.value.hint
    assert "secret" not in str(err.value)


def test_no_credentials_is_one_clear_error(aws_env: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    with pytest.raises(ConnectorError) as err:
        open_connector("aws://us-east-1")
    assert str(err.value) == "no AWS credentials for us-east-1"
    assert err.value.exit_code == 2


def test_a_missing_profile_is_named(aws_env: str) -> None:
    with pytest.raises(ConnectorError, match="AWS profile 'nobody' not found"):
        open_connector("aws://us-east-1?profile=nobody")


def test_a_profile_from_the_config_files_is_used(aws_env: str, monkeypatch, tmp_path) -> None:
    # boto3's standard chain: the profile's keys, not the environment's
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    (tmp_path / "aws-credentials").write_text(
        "[audit]\naws_access_key_id = AKIAPROFILEPROFILE00\n"
        "aws_secret_access_key = profile-secret\n"
    )
    with open_connector("aws://us-east-1?profile=audit") as conn:
        assert conn.inventory().vms == []


def test_an_aws_error_is_one_line_without_credentials(aws_env: str, monkeypatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:9")  # nothing listens
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")
    with open_connector("aws://us-east-1") as conn, pytest.raises(ConnectorError) as err:
        conn.inventory()
    text = f"{err.value} {err.value.hint or ''}"
    assert "\n" not in text and "us-east-1" in text
    assert "test-secret-do-not-log" not in text and "AKIATEST" not in text
