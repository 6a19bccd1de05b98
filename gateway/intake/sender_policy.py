"""Who may send to whom: the envelope checks, deny by default.

Pure: addresses and the intake config in, a DomainRule / agency id or a
Refusal out. The intake relays nothing: a recipient outside its own host
name is refused as relaying, and a sender domain must be on the allowlist.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import getaddresses

from gateway.config.intake_config import DomainRule, IntakeConfig
from gateway.intake import reply_tokens
from gateway.intake.refusal import Refusal
from gateway.intake.reply_tokens import ReplyToken


def split_address(address: str) -> tuple[str, str] | None:
    """(local part, lower-case domain), or None when it is not one plain address."""
    local, at, domain = address.strip().rpartition("@")
    if not at or not local or not domain or "@" in local or any(c.isspace() for c in address):
        return None
    return local, domain.lower()


def sender_rule(mail_from: str, config: IntakeConfig) -> DomainRule | Refusal:
    """The allowlisted domain rule for the envelope sender (MAIL FROM)."""
    parts = split_address(mail_from)
    if parts is None:
        return Refusal(
            550, "5.7.1", "Sender refused: a named sender address is required", "sender-address"
        )
    rule = config.rule_for(parts[1])
    if rule is None:
        return Refusal(
            550,
            "5.7.1",
            f"Sender domain {parts[1]} is not on this intake's allowlist",
            "sender-domain",
        )
    return rule


@dataclass(frozen=True)
class Recipient:
    agency: str  # who the message goes to on the exchange
    reply: ReplyToken | None = None  # set for a reply-token address: the request it answers


def recipient(
    rcpt_to: str, config: IntakeConfig, sender: DomainRule, reply_key: bytes | None
) -> Recipient | Refusal:
    """The agency a recipient address names: a mailbox, or the asker behind a reply token."""
    parts = split_address(rcpt_to)
    if parts is None or parts[1] != config.hostname:
        return Refusal(
            550,
            "5.7.1",
            f"Relaying denied: this intake accepts mail only for addresses @{config.hostname}",
            "relay",
        )
    local = parts[0].lower()
    if reply_tokens.looks_like_token(local):
        token = reply_tokens.read(reply_key, local, sender.agency) if reply_key else None
        if token is None:
            return Refusal(
                550,
                "5.1.1",
                "This reply address is not valid for mail from your domain; "
                "reply to the request mail you were sent",
                "reply-token",
            )
        return Recipient(token.requester, token)
    if local not in config.mailboxes:
        return Refusal(
            550,
            "5.1.1",
            f"No such mailbox here; addresses are "
            f"{', '.join(sorted(b + '@' + config.hostname for b in config.mailboxes))}",
            "mailbox",
        )
    return Recipient(local)


def header_from(values: list[str], rule: DomainRule) -> str | Refusal:
    """The single From address, which must belong to the envelope sender's domain."""
    addresses = [a for _, a in getaddresses(values) if a]
    if len(addresses) != 1:
        return Refusal(
            550, "5.7.1", "Message refused: exactly one From address is required", "from-header"
        )
    parts = split_address(addresses[0])
    if parts is None or parts[1] != rule.domain:
        return Refusal(
            550,
            "5.7.1",
            f"Message refused: the From address must be at {rule.domain}, "
            "the domain of the envelope sender",
            "from-domain",
        )
    return addresses[0].lower()


def addressing(
    recipients: tuple[Recipient, ...], message_type: str, stated_in_reply_to: str | None
) -> tuple[tuple[str, ...], str | None] | Refusal:
    """(recipient agencies, InReplyTo): a reply-token mail answers its request and nothing else."""
    agencies = tuple(dict.fromkeys(r.agency for r in recipients))
    tokens_given = [r.reply for r in recipients if r.reply is not None]
    if not tokens_given:
        return agencies, stated_in_reply_to
    if len(recipients) != 1:
        return Refusal(
            550,
            "5.5.3",
            "Send a reply to its reply address alone, with no other recipient",
            "reply-mixed",
        )
    token = tokens_given[0]
    if message_type != "InformationResponse":
        return Refusal(
            550,
            "5.6.0",
            "A reply to an information request must be an InformationResponse",
            "reply-type",
        )
    if stated_in_reply_to is not None and stated_in_reply_to != token.request_id:
        return Refusal(
            550,
            "5.6.0",
            "Form field Request-Id: does not match the request this reply answers",
            "reply-request",
        )
    return agencies, token.request_id
