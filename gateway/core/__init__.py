"""The pure core: values in, values out; no IO, no clock, no asyncio.

Envelope format, attachments and their limits, schemas, the sharing
decision, routing and its plan of effects, the message lifecycle,
deadlines and their rules, the audit chain, notices and identifiers. It
imports nothing of the gateway's outside itself (tests/unit/test_layers.py).
"""

__all__ = [
    "area_directory",
    "attachments",
    "audit_chain",
    "deadline_rules",
    "deadlines",
    "envelope",
    "errors",
    "identifiers",
    "lifecycle",
    "message_search",
    "notices",
    "partner_documents",
    "payload_facts",
    "quarantine",
    "records",
    "registry",
    "reply_rules",
    "resources",
    "routing",
    "routing_plan",
    "schemas",
    "sender_login",
    "sharing",
    "signed_json",
    "vocabulary",
    "xmlsafe",
]
