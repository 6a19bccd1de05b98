"""The RabbitMQ shell: connections, the topology, confirmed publishing and broker administration."""

__all__ = [
    "connection",
    "credentials",
    "definitions",
    "publisher",
    "topology",
    "vhost",
]
