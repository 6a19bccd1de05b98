"""What a client sent never reaches the log through a library's error (logs.py)."""

from __future__ import annotations

import logging

import pytest

from gateway.infra import logs

pytestmark = pytest.mark.unit

NHS_NUMBER = "943 476 5919"


def test_a_servers_error_quoting_client_bytes_is_cut_to_its_class(
    capsys: pytest.CaptureFixture[str],
) -> None:
    logs.configure(json=True)
    try:
        raise ValueError(f"Invalid header value char: b'X-Patient: {NHS_NUMBER}'")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request %s", NHS_NUMBER)
    logging.getLogger("aiormq.connection").warning("connection lost to %s", "broker-1")
    err = capsys.readouterr().err
    assert NHS_NUMBER not in err
    assert "aiohttp.server: a client's request failed (ValueError)" in err
    assert "connection lost to broker-1" in err  # other libraries keep their words
