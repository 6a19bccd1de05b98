"""HTTP bearer tokens: only a digest is kept, in a 0600 file; a new token replaces the old."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters import http_tokens

pytestmark = pytest.mark.unit


def test_issued_token_verifies_and_only_its_digest_is_kept(tmp_path: Path) -> None:
    token = http_tokens.issue(tmp_path, "csc")
    path = http_tokens.token_file(tmp_path, "csc")
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    assert token not in path.read_text()
    assert http_tokens.verify(tmp_path, "csc", token)
    assert not http_tokens.verify(tmp_path, "csc", token + "x")
    assert not http_tokens.verify(tmp_path, "csc", "")


def test_a_new_token_replaces_the_old(tmp_path: Path) -> None:
    old = http_tokens.issue(tmp_path, "csc")
    new = http_tokens.issue(tmp_path, "csc")
    assert http_tokens.verify(tmp_path, "csc", new)
    assert not http_tokens.verify(tmp_path, "csc", old)


def test_missing_or_readable_token_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(http_tokens.TokenError, match="no token issued; run `mash-gateway adapter"):
        http_tokens.verify(tmp_path, "probation", "anything")
    http_tokens.issue(tmp_path, "probation")
    os.chmod(http_tokens.token_file(tmp_path, "probation"), 0o644)
    with pytest.raises(http_tokens.TokenError, match="readable by others"):
        http_tokens.verify(tmp_path, "probation", "anything")
