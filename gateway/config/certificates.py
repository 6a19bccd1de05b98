"""Which certificate files a service uses, by use: what its expiry gauges watch.

Pure: the area config in, ``{use: path}`` out. The uses are the gauge's
``use`` label: bounded names (a service's role, an agency id, a partner's
mail domain), never anything from a message.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from gateway.config.area_config import AreaConfig


def broker_certificates(config: AreaConfig) -> dict[str, Path]:
    """The CA ``[broker] ca`` verifies RabbitMQ against, and ``[broker] cert``, our client's."""
    tls = config.broker_tls
    found: dict[str, Path] = {}
    if tls is not None and tls.ca is not None:
        found["broker-ca"] = tls.ca
    if tls is not None and tls.cert is not None:
        found["broker-client"] = tls.cert
    return found


def intake_certificates(config: AreaConfig) -> dict[str, Path]:
    """The intake's SMTP pair, its relay's CA, and each partner domain's client CA."""
    intake = config.intake
    if intake is None:
        return {}
    found = {"smtp-tls": intake.tls_cert}
    if intake.relay is not None and intake.relay.ca_file is not None:
        found["relay-ca"] = intake.relay.ca_file
    for rule in intake.domains:
        if rule.client_ca is not None:
            found[f"client-ca-{rule.domain}"] = rule.client_ca
    return found


def adapter_certificates(config: AreaConfig, agencies: Iterable[str]) -> dict[str, Path]:
    """The HTTP adapters' server pairs and the MESH clients' certificates and CAs."""
    wanted = set(agencies)
    found: dict[str, Path] = {}
    for spec in config.adapters:
        if wanted and spec.agency not in wanted:
            continue
        if spec.http is not None and spec.http.tls_cert is not None:
            found[f"http-tls-{spec.agency}"] = spec.http.tls_cert
        if spec.mesh is not None:
            if spec.mesh.cert is not None:
                found[f"mesh-client-{spec.agency}"] = spec.mesh.cert
            if spec.mesh.ca is not None:
                found[f"mesh-ca-{spec.agency}"] = spec.mesh.ca
    return found
