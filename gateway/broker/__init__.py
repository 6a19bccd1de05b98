"""The RabbitMQ shell: connections, the topology, confirmed publishing and broker administration."""

__all__ = [
    "connection",
    "credentials",
    "definitions",
    "piece_headers",
    "publisher",
    "topology",
    "vhost",
]
