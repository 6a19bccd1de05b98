"""The long-running shells: router, edge, escalator, audit log, metrics serving.

They carry out what the core decides, over the broker and the store.
"""

__all__ = [
    "audit_log",
    "certificate_watch",
    "edge",
    "escalator",
    "health",
    "ingress_consumers",
    "metrics",
    "metrics_server",
    "partner_bundle",
    "piece_relay",
    "quarantine_keeper",
    "queue_depths",
    "router",
    "tracking",
    "transfer_sender",
    "transfer_staging",
]
