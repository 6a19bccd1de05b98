"""Whether the broker login that published an ingress message may speak for its claimed sender.

Pure. Edges publish with the AMQP ``user_id`` property, which RabbitMQ
checks against the login of the connection (a mismatch closes the channel),
so ``user_id`` on an ingress message is the login that published it.
Each agency's login is ``<prefix><agency id>`` (``[broker] user_prefix``,
the naming of gateway/broker/definitions.agency_user).

Decisions written down here:
- The envelope's claimed sender must be the agency whose login published
  it; anything else (another agency's login, no ``user_id``) is refused
  before the signature is even checked, so a forger's envelopes reach
  nobody: no NonDelivery goes to the agency whose name was used, only the
  quarantined copy with its reason, a warning and a counter.
- The area's administrator login (the user of ``[broker] url``) may publish
  as any agency: it could create any user and grant itself anything, so
  binding it proves nothing. Without per-agency users (the demo, the tests:
  no password files) every edge logs in as that user, and only the
  signature tells agencies apart; `broker setup` is what makes the binding
  mean something. The quarantine keeper's login may too: a release
  republishes the quarantined envelope byte for byte, and the router judges
  it again (signature, replay, agreements) like any message.
- Messages the gateway itself publishes never come through ingress: the
  router and its escalator publish notices and escalations straight to the
  inboxes as the gateway principal's user, which may not write to ingress.
  The e-mail intake submits as its agencies through one edge per agency,
  each logged in as that agency's own user, so it is bound like any edge.
"""

from __future__ import annotations

from collections.abc import Collection

SENDER_LOGIN_CHECK = "sender-login"  # the FailedCheck a refusal names in quarantine and audit


def expected_login(agency: str, prefix: str) -> str:
    return f"{prefix}{agency}"


def refusal(
    claimed_sender: str, login: str | None, prefix: str, trusted: Collection[str]
) -> str | None:
    """Why ``login`` may not publish as ``claimed_sender``, or None when it may.

    ``trusted`` are the logins that may publish as any agency.
    """
    if login is None:
        return "published without naming its broker login (the AMQP user_id property)"
    if login in trusted or login == expected_login(claimed_sender, prefix):
        return None
    return (
        f"published by broker login {login!r}, which is not the claimed sender's "
        f"({expected_login(claimed_sender, prefix)!r})"
    )
