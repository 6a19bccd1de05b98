"""The console's local accounts: a name, a role and an argon2id hash, in one 0600 file.

The file is ``state/console-users.json`` in the area: the state folder
already holds what only the hub's operators may read (the store, the audit
trail). It is rewritten whole and atomically on each change, so a reader
never sees half of it. Passwords are hashed with argon2id (argon2-cffi's
defaults, RFC 9106's second recommended profile); a hash made with older
parameters is re-hashed at the next sign-in.
"""

from __future__ import annotations

import json
import re
import secrets
import threading
from dataclasses import dataclass
from enum import StrEnum
from functools import cache
from pathlib import Path

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from gateway.config.area_config import AreaConfig
from gateway.core.errors import GatewayError
from gateway.infra.atomic import atomic_writer

USERS_FILE = "console-users.json"
FILE_MODE = 0o600
USER_NAME = re.compile(r"[a-z][a-z0-9._-]{1,63}")
MIN_PASSWORD = 12
GENERATED_PASSWORD_BYTES = 18  # 24 URL-safe characters
ONCE, USED = "yes", "used"  # a one-time account before and after its sign-in

_HASHER = PasswordHasher()


@cache
def _decoy() -> str:
    """Verified against when the name is unknown, so a wrong name costs what a wrong password
    does. Made at the first sign-in, not on import: every mash-gateway process imports this
    module, and an argon2id hash takes 64 MiB while it runs (the start-up peak of each)."""
    return _HASHER.hash(secrets.token_urlsafe(GENERATED_PASSWORD_BYTES))


class AccountError(GatewayError):
    """An account cannot be made or the accounts file is unreadable; the message names why."""


class Role(StrEnum):
    VIEWER = "viewer"  # reads every page
    OPERATOR = "operator"  # and may act (quarantine release and discard)


@dataclass(frozen=True)
class Account:
    name: str
    role: Role


def users_path(config: AreaConfig) -> Path:
    return config.base_dir / "state" / USERS_FILE


class Accounts:
    """The accounts file of one area, read at each sign-in so a new account works at once."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()  # a one-time account is used once, even by two at once
        self._seen: tuple[int, dict[str, dict[str, str]]] | None = None  # (mtime_ns, users)

    def add(self, name: str, role: Role, password: str | None = None, once: bool = False) -> str:
        """Add or replace ``name`` with ``role``; returns the password (generated if None).

        ``once``: the account signs in once, and never again (the demo's sign-in).
        """
        if not USER_NAME.fullmatch(name):
            raise AccountError(
                f"account name {name!r}: 2-64 characters, lower-case letters, digits, '.', '_'"
                " or '-', starting with a letter"
            )
        if password is None:
            password = secrets.token_urlsafe(GENERATED_PASSWORD_BYTES)
        elif len(password) < MIN_PASSWORD:
            raise AccountError(f"password for {name}: at least {MIN_PASSWORD} characters")
        with self._lock:
            users = self._read()
            users[name] = {"role": role.value, "hash": _HASHER.hash(password)}
            if once:
                users[name]["once"] = ONCE
            self._write(users)
        return password

    def names(self) -> list[Account]:
        return [Account(n, Role(u["role"])) for n, u in sorted(self._read().items())]

    def current(self, name: str) -> Account | None:
        """The account as the file has it now: None once removed, its role if changed.

        Asked on every signed-in request, so a removed account is signed out at
        once; the file is re-read only when it has changed.
        """
        try:
            changed = self.path.stat().st_mtime_ns
        except FileNotFoundError:
            return None
        if self._seen is None or self._seen[0] != changed:
            self._seen = (changed, self._read())
        user = self._seen[1].get(name)
        return None if user is None else Account(name, Role(user["role"]))

    def remove(self, name: str) -> None:
        """Remove ``name``: it cannot sign in again (its open sessions end with the console)."""
        with self._lock:
            users = self._read()
            if users.pop(name, None) is None:
                raise AccountError(f"no console account {name!r} in {self.path}")
            self._write(users)

    def check(self, name: str, password: str) -> Account | None:
        """The account if ``password`` is its password, else None (same cost either way)."""
        with self._lock:
            users = self._read()
            user = users.get(name)
            try:
                _HASHER.verify(user["hash"] if user else _decoy(), password)
            except (VerificationError, InvalidHashError):
                return None
            if user is None or user.get("once") == USED:
                return None
            if user.get("once"):
                user["once"] = USED  # kept, so its one session stays signed in
                self._write(users)
            elif _HASHER.check_needs_rehash(user["hash"]):
                user["hash"] = _HASHER.hash(password)
                self._write(users)
        return Account(name, Role(user["role"]))

    def _read(self) -> dict[str, dict[str, str]]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise AccountError(f"{self.path}: cannot read the accounts: {exc.strerror}") from None
        try:
            users = json.loads(text)
            valid = isinstance(users, dict) and all(
                isinstance(u, dict)
                and u.get("role") in set(Role)
                and isinstance(u.get("hash"), str)
                for u in users.values()
            )
        except ValueError:
            valid = False
        if not valid:
            raise AccountError(f"{self.path}: not a console accounts file")
        return dict(users)

    def _write(self, users: dict[str, dict[str, str]]) -> None:
        with atomic_writer(self.path, FILE_MODE) as handle:
            handle.write(json.dumps(users, indent=2, sort_keys=True).encode() + b"\n")
