"""The ``clickhouse.tenant_access`` settings: defaults, a secret file of password hashes, and a
hash that never shows in a repr or a validation error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from stitchboard.settings import Settings, TenantAccessSettings

HASH = "AB" * 32


def test_tenant_access_is_off_by_default_and_names_no_tenant() -> None:
    access = Settings().clickhouse.tenant_access
    assert access == TenantAccessSettings()
    assert (access.enabled, access.tenants, access.user_password_sha256) == (False, (), {})
    assert (access.role_prefix, access.user_prefix) == ("stitchboard_tenant_", "stitchboard_reader_")


def test_password_hashes_come_from_a_secret_file_lowercased_and_stay_out_of_repr(tmp_path: Path) -> None:
    (tmp_path / "clickhouse__tenant_access__user_password_sha256").write_text(json.dumps({"acme": HASH}))
    settings = Settings.load(None, secrets_dir=tmp_path)
    assert settings.clickhouse.tenant_access.user_password_sha256 == {"acme": HASH.lower()}
    assert HASH.lower() not in repr(settings) and HASH not in repr(settings)


@pytest.mark.parametrize("digest", [HASH[:-1], HASH + "0", "z" * 64, "s3cr3t"])
def test_a_malformed_hash_is_refused_without_showing_it(digest: str) -> None:
    with pytest.raises(ValidationError) as refused:
        TenantAccessSettings(user_password_sha256={"acme": digest})
    assert "tenant 'acme' is not a SHA-256 in hex" in str(refused.value)
    assert digest not in str(refused.value)


def test_an_empty_tenant_name_or_prefix_is_refused() -> None:
    with pytest.raises(ValidationError, match="a tenant name is empty"):
        TenantAccessSettings(tenants=("acme", ""))
    with pytest.raises(ValidationError, match="role_prefix"):
        TenantAccessSettings(role_prefix="")
