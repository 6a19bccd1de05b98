"""Administering RabbitMQ: vhosts for the gateway, the tests and the demo, and their users.

Two ways in, chosen once by ``admin_for``:
- ``rabbitmqctl`` when it is on PATH and can reach the node (root or the
  rabbitmq user on the broker's machine). Passwords go through its stdin,
  never its argv, so they do not show in the process list.
- the management HTTP API (``rabbitmq_management``), with the AMQP URL's
  user, which needs the administrator tag.
If neither works, ``BrokerAdminUnavailable`` says how to do it by hand.

Deleting what does not exist succeeds, and so does adding a vhost that
exists, so every step can be re-run. Users are the exception: ``add_user``
refuses one that exists and ``change_password`` is a separate, deliberate
step, so nothing here resets a password by accident (``broker setup`` asks
``user_vhosts`` first, see definitions.login_step).
"""

from __future__ import annotations

import asyncio
import secrets
import shutil
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp

from gateway.broker.definitions import OWNER_PERMISSIONS, Permissions
from gateway.core.errors import GatewayError

MANAGEMENT_PORT = 15672
HTTP_TIMEOUT_S = 10


class BrokerAdminUnavailable(GatewayError):
    """Neither rabbitmqctl nor the management API can administer the broker."""


class BrokerAdminFailed(GatewayError):
    """An administrative command was refused; the message names the command."""


@dataclass(frozen=True)
class Credentials:
    user: str
    password: str


class BrokerAdmin(Protocol):
    async def add_vhost(self, vhost: str) -> None: ...
    async def delete_vhost(self, vhost: str) -> None: ...
    async def users(self) -> frozenset[str]:
        """Every user on the broker, of every area."""

    async def user_vhosts(self, user: str) -> tuple[str, ...] | None:
        """The vhosts ``user`` has permissions on; None if there is no such user."""

    async def add_user(self, user: str, password: str) -> None:
        """Create ``user``; refused (BrokerAdminFailed) if it exists."""

    async def change_password(self, user: str, password: str) -> None: ...
    async def delete_user(self, user: str) -> None: ...
    async def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None: ...
    async def close_connections(self, vhost: str, reason: str) -> None: ...

    async def create_vhost(self, vhost: str, owner: str) -> None:
        """Add ``vhost`` and give ``owner`` every permission in it (both ways in share this)."""
        await self.add_vhost(vhost)
        await self.set_permissions(vhost, owner, OWNER_PERMISSIONS)


def vhost_url(url: str, vhost: str, credentials: Credentials | None = None) -> str:
    """``url`` pointed at ``vhost`` (and logged in as ``credentials``, if given)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if credentials is not None:
        host = netloc.rsplit("@", 1)[-1]
        netloc = f"{quote(credentials.user, safe='')}:{quote(credentials.password, safe='')}@{host}"
    return urlunsplit((parts.scheme, netloc, "/" + quote(vhost, safe=""), parts.query, ""))


class CtlAdmin(BrokerAdmin):
    """Administration through the ``rabbitmqctl`` command."""

    def __init__(self, executable: str) -> None:
        self.executable = executable

    async def run(self, *args: str, stdin: str | None = None, absent_ok: str = "") -> str:
        process = await asyncio.create_subprocess_exec(
            self.executable,
            "-q",
            *args,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        out, err = await process.communicate(None if stdin is None else stdin.encode() + b"\n")
        text = (out + err).decode(errors="replace").strip()
        if process.returncode != 0 and not (absent_ok and absent_ok in text):
            raise BrokerAdminFailed(
                f"rabbitmqctl {args[0]} {args[1] if len(args) > 1 else ''} failed "
                f"(exit {process.returncode}): {text}"
            )
        return text

    async def add_vhost(self, vhost: str) -> None:
        await self.run("add_vhost", vhost)

    async def delete_vhost(self, vhost: str) -> None:
        await self.run("delete_vhost", vhost, absent_ok="does not exist")

    async def users(self) -> frozenset[str]:
        listed = await self.run("list_users", "--no-table-headers")
        return frozenset(line.split("\t", 1)[0] for line in listed.splitlines() if line)

    async def user_vhosts(self, user: str) -> tuple[str, ...] | None:
        try:
            listed = await self.run("list_user_permissions", "--no-table-headers", user)
        except BrokerAdminFailed as exc:
            if "no_such_user" in str(exc):
                return None
            raise
        return tuple(line.split("\t", 1)[0] for line in listed.splitlines() if line)

    async def add_user(self, user: str, password: str) -> None:
        await self.run("add_user", user, stdin=password)

    async def change_password(self, user: str, password: str) -> None:
        await self.run("change_password", user, stdin=password)

    async def delete_user(self, user: str) -> None:
        await self.run("delete_user", user, absent_ok="does not exist")

    async def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        p = permissions
        await self.run("set_permissions", "-p", vhost, user, p.configure, p.write, p.read)

    async def close_connections(self, vhost: str, reason: str) -> None:
        await self.run("close_all_connections", "--vhost", vhost, reason)


class HttpAdmin(BrokerAdmin):
    """Administration through the management plugin's HTTP API."""

    def __init__(self, base: str, user: str, password: str) -> None:
        self.base = base.rstrip("/")
        self.auth = aiohttp.BasicAuth(user, password)

    async def call(self, method: str, path: str, body: Any = None, absent_ok: bool = False) -> Any:
        timeout = aiohttp.ClientTimeout(total=HTTP_TIMEOUT_S)
        async with (
            aiohttp.ClientSession(auth=self.auth, timeout=timeout) as session,
            session.request(method, self.base + path, json=body) as response,
        ):
            if response.status == 404 and absent_ok:
                return None
            if response.status >= 400:
                raise BrokerAdminFailed(
                    f"management API {method} {path} failed: HTTP {response.status} "
                    f"{(await response.text())[:200]}"
                )
            return await response.json() if response.status == 200 else None

    async def add_vhost(self, vhost: str) -> None:
        await self.call("PUT", f"/api/vhosts/{quote(vhost, safe='')}")

    async def delete_vhost(self, vhost: str) -> None:
        await self.call("DELETE", f"/api/vhosts/{quote(vhost, safe='')}", absent_ok=True)

    async def users(self) -> frozenset[str]:
        return frozenset(u["name"] for u in await self.call("GET", "/api/users") or [])

    async def user_vhosts(self, user: str) -> tuple[str, ...] | None:
        path = f"/api/users/{quote(user, safe='')}"
        if await self.call("GET", path, absent_ok=True) is None:
            return None
        granted = await self.call("GET", f"{path}/permissions")
        return tuple(p["vhost"] for p in granted or [])

    async def add_user(self, user: str, password: str) -> None:
        if await self.user_vhosts(user) is not None:
            raise BrokerAdminFailed(f"management API: user {user} already exists")
        await self._put_user(user, password)

    async def change_password(self, user: str, password: str) -> None:
        await self._put_user(user, password)

    async def _put_user(self, user: str, password: str) -> None:
        await self.call(
            "PUT", f"/api/users/{quote(user, safe='')}", {"password": password, "tags": ""}
        )

    async def delete_user(self, user: str) -> None:
        await self.call("DELETE", f"/api/users/{quote(user, safe='')}", absent_ok=True)

    async def set_permissions(self, vhost: str, user: str, permissions: Permissions) -> None:
        p = permissions
        await self.call(
            "PUT",
            f"/api/permissions/{quote(vhost, safe='')}/{quote(user, safe='')}",
            {"configure": p.configure, "write": p.write, "read": p.read},
        )

    async def close_connections(self, vhost: str, reason: str) -> None:
        found = await self.call("GET", f"/api/vhosts/{quote(vhost, safe='')}/connections")
        for connection in found or []:
            name = quote(connection["name"], safe="")
            await self.call("DELETE", f"/api/connections/{name}", absent_ok=True)


async def admin_for(amqp_url: str, management_url: str | None = None) -> BrokerAdmin:
    """rabbitmqctl if it can reach the node, else the management API if it answers."""
    problems = []
    executable = shutil.which("rabbitmqctl")
    if executable is None:
        problems.append("rabbitmqctl is not on PATH")
    else:
        ctl = CtlAdmin(executable)
        try:
            await ctl.run("list_vhosts")
            return ctl
        except BrokerAdminFailed as exc:
            problems.append(f"{exc} (run it as root or the rabbitmq user)")
    parts = urlsplit(amqp_url)
    base = management_url or f"http://{parts.hostname or 'localhost'}:{MANAGEMENT_PORT}"
    http = HttpAdmin(base, parts.username or "guest", parts.password or "guest")
    try:
        await http.call("GET", "/api/overview")
        return http
    except (aiohttp.ClientError, TimeoutError, BrokerAdminFailed) as exc:
        problems.append(f"the management API at {base} did not answer ({exc})")
    raise BrokerAdminUnavailable(
        "cannot administer RabbitMQ: "
        + "; ".join(problems)
        + ". Enable the API with `rabbitmq-plugins enable rabbitmq_management`, or create the "
        "vhost by hand: `rabbitmqctl add_vhost VHOST && rabbitmqctl set_permissions -p VHOST "
        "USER '.*' '.*' '.*'`"
    )


def new_password() -> str:
    """192 random bits in hex: never starts with '-', so no tool mistakes it for an option."""
    return secrets.token_hex(24)
