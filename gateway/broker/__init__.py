"""The RabbitMQ shell: connections, the topology, confirmed publishing and broker administration."""

__all__ = [
    "connection",
    "credentials",
    "definitions",
    "inbox_room",
    "piece_headers",
    "publisher",
    "topology",
    "vhost",
]
