"""Transports: how an adapter meets an agency system (a folder, HTTP), each way."""

__all__ = [
    "durable",
    "filedrop",
    "http_inbound",
    "http_outbound",
    "mesh",
]
