"""The certificates an area's services use, read from disk for the console's expiry table.

Which files: the intake's TLS certificate, each partner domain's client CA
and the relay's CA, each HTTP adapter's TLS certificate and each MESH
client's certificate and CA. A file that is missing or does not parse is
listed with that problem instead of an expiry: that is what an operator
needs to know about it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography import x509
from cryptography.x509.oid import NameOID

from gateway.config.area_config import AreaConfig


@dataclass(frozen=True)
class Certificate:
    use: str  # what the service uses it for
    path: str  # relative to the area where it lies inside it
    subject: str | None = None  # the certificate's common name: a host or an organisation
    expires: datetime | None = None
    problem: str | None = None


def used_by(config: AreaConfig) -> list[tuple[str, Path]]:
    found: list[tuple[str, Path | None]] = []
    if config.intake is not None:
        found.append(("intake TLS", config.intake.tls_cert))
        found += [(f"intake client CA ({d.domain})", d.client_ca) for d in config.intake.domains]
        if config.intake.relay is not None:
            found.append(("intake relay CA", config.intake.relay.ca_file))
    for adapter in config.adapters:
        if adapter.http is not None:
            found.append((f"{adapter.agency} HTTP adapter TLS", adapter.http.tls_cert))
        if adapter.mesh is not None:
            found.append((f"{adapter.agency} MESH client", adapter.mesh.cert))
            found.append((f"{adapter.agency} MESH CA", adapter.mesh.ca))
    return [(use, path) for use, path in found if path is not None]


def read_all(config: AreaConfig) -> list[Certificate]:
    return [read(use, path, config.base_dir) for use, path in used_by(config)]


def read(use: str, path: Path, base: Path) -> Certificate:
    shown = str(path.relative_to(base)) if path.is_relative_to(base) else str(path)
    try:
        certificate = x509.load_pem_x509_certificate(path.read_bytes())
    except FileNotFoundError:
        return Certificate(use, shown, problem="missing")
    except OSError as exc:
        return Certificate(use, shown, problem=f"unreadable: {exc.strerror}")
    except ValueError:
        return Certificate(use, shown, problem="not a PEM certificate")
    names = certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    subject = str(names[0].value) if names else None
    return Certificate(use, shown, subject, certificate.not_valid_after_utc)
