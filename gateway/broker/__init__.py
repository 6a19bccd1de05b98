"""The RabbitMQ shell: connections, the topology, confirmed publishing and broker administration."""
