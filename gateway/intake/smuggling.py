"""SMTP smuggling: a bare LF or a bare CR in DATA is refused.

aiosmtpd 1.4.6 ends DATA only at <CR><LF>.<CR><LF>, but it hands a bare
<LF> or <CR> inside a line through to the message. A downstream MTA that
reads <LF>.<LF> as end of data would then see a second, smuggled message,
so the intake refuses any line break that is not exactly <CR><LF>.
"""

from __future__ import annotations

from gateway.intake.refusal import Refusal


def bare_line_break(data: bytes) -> str | None:
    """'bare LF' or 'bare CR' for the first line break that is not CRLF; None if all are."""
    position = 0
    while True:
        lf = data.find(b"\n", position)
        cr = data.find(b"\r", position)
        if lf == -1 and cr == -1:
            return None
        if cr == -1 or (lf != -1 and lf < cr):
            return "bare LF"
        if cr + 1 >= len(data) or data[cr + 1] != 0x0A:
            return "bare CR"
        position = cr + 2


def smuggling_refusal(data: bytes) -> Refusal | None:
    found = bare_line_break(data)
    if found is None:
        return None
    return Refusal(
        550,
        "5.6.0",
        f"Message refused: {found} in DATA; every line must end with CRLF "
        "(SMTP smuggling protection)",
        "bare-line-break",
    )
