"""The web console for the hub's ops team and manager: `mash-gateway console`.

Server-rendered pages (aiohttp, Jinja2), metadata only: ids, agencies,
types, states, times and reasons, never a payload or personal data (the
store holds none, but for quarantined envelopes, sealed, which no page
reads). Local accounts with argon2id hashes and two roles (viewer,
operator); sessions in memory with a CSRF token each; a strict
Content-Security-Policy with no script at all; TLS off loopback; every
operator's action on an audit chain with the operator's account name
(sign-ins and accounts on the console's own, quarantine actions on the
quarantine keeper's; the audit page shows both).

``server`` runs it, ``app`` wires the routes, ``guard`` holds the
middlewares, ``pages``, ``quarantine_pages`` and ``sign_in`` the handlers,
``readiness`` the other services' /readyz, ``accounts`` and ``sessions``
who is signed in, ``throttle`` failed sign-ins, ``operator_audit`` the
chains, ``certificates`` the expiry table, ``rendering`` the templates.
"""

__all__ = [
    "accounts",
    "app",
    "certificates",
    "guard",
    "operator_audit",
    "pages",
    "quarantine_pages",
    "readiness",
    "rendering",
    "server",
    "sessions",
    "sign_in",
    "state",
    "throttle",
]
