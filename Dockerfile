# The gateway image: router, intake, adapters, demo and CLI. Keys and state live in the /area volume.
FROM python:3.11-slim

RUN useradd --create-home --uid 10001 mash \
 && apt-get update && apt-get install -y --no-install-recommends gnupg \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
COPY pyproject.toml README.md ./
COPY gateway ./gateway
COPY adapters ./adapters
COPY schemas ./schemas
RUN pip install --no-cache-dir . && rm -rf /src

ENV PYTHONUNBUFFERED=1
USER mash
WORKDIR /area
# /metrics, when [metrics].listen or --metrics-listen asks for it (docker-compose.yml does).
EXPOSE 9464
ENTRYPOINT ["mash-gateway"]
CMD ["--help"]
