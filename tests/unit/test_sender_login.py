"""The claimed sender against the broker login that published it."""

from __future__ import annotations

import pytest

from gateway.broker.connection import url_login
from gateway.broker.definitions import agency_user
from gateway.core.sender_login import expected_login, refusal

pytestmark = pytest.mark.unit

PREFIX = "mash-north-"


def test_an_agency_login_may_publish_only_as_its_agency() -> None:
    assert refusal("police", "mash-north-police", PREFIX, {"admin"}) is None
    assert refusal("police", "mash-north-education", PREFIX, {"admin"}) == (
        "published by broker login 'mash-north-education', which is not the claimed sender's "
        "('mash-north-police')"
    )


def test_another_areas_login_for_the_same_agency_is_not_this_areas() -> None:
    assert refusal("police", "mash-south-police", PREFIX, {"admin"}) is not None


def test_a_message_that_names_no_login_is_refused() -> None:
    assert refusal("police", None, PREFIX, {"admin"}) == (
        "published without naming its broker login (the AMQP user_id property)"
    )
    assert refusal("police", None, PREFIX, set()) is not None


def test_the_areas_administrator_may_publish_as_any_agency() -> None:
    assert refusal("police", "admin", PREFIX, {"admin"}) is None
    assert refusal("hub", "admin", PREFIX, {"admin"}) is None


def test_the_expected_login_is_the_one_broker_setup_creates() -> None:
    assert expected_login("police", PREFIX) == agency_user("police", PREFIX)


def test_a_url_without_a_user_logs_in_as_guest_like_aiormq() -> None:
    assert url_login("amqp://127.0.0.1/x") == "guest"
    assert url_login("amqps://mash-north-police:secret@broker:5671/mash") == "mash-north-police"
