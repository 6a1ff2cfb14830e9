"""Amount normalisation, `Prefer` parsing and the payload codec: the small pieces every request goes through."""

from __future__ import annotations

import os

import pytest
from temporalio.api.common.v1 import Payload

from api.prefer import parse_prefer
from mojaflow.codec import EncryptionCodec
from mojaflow.logs import redact_path
from mojaflow.models import normalise_amount


@pytest.mark.parametrize(
    ("given", "sent"), [("150.00", "150"), ("150", "150"), ("0.50", "0.5"), ("10.1230", "10.123"), ("007", "7")]
)
def test_amounts_are_sent_in_mojaloop_format(given: str, sent: str) -> None:
    assert normalise_amount(given) == sent


@pytest.mark.parametrize("bad", ["0", "0.00", "-1", "1e3", "1.23456", "", " 1", "1,5"])
def test_bad_amounts_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        normalise_amount(bad)


@pytest.mark.parametrize(
    ("header", "wait", "applied"),
    [
        (None, 30, None),
        ("wait=5", 5, "wait=5"),
        ("wait=600", 60, "wait=60"),
        ("respond-async", 0, "respond-async"),
        ("respond-async, wait=10", 0, "respond-async"),
        ("wait=abc", 30, None),
        ("handling=lenient, wait=2.5", 2.5, "wait=2.5"),
    ],
)
def test_prefer(header: str | None, wait: float, applied: str | None) -> None:
    preference = parse_prefer(header, 30)
    assert (preference.wait_s, preference.applied) == (wait, applied)


async def test_codec_round_trips_and_hides_the_plaintext() -> None:
    codec = EncryptionCodec(os.urandom(32))
    payload = Payload(metadata={"encoding": b"json/plain"}, data=b'{"idValue": "25644444444"}')

    [encoded] = await codec.encode([payload])
    [decoded] = await codec.decode([encoded])

    assert b"25644444444" not in encoded.SerializeToString()
    assert encoded.metadata["encoding"] == b"binary/encrypted"
    assert decoded == payload


async def test_codec_refuses_a_payload_of_another_key() -> None:
    [encoded] = await EncryptionCodec(os.urandom(32)).encode([Payload(data=b"x")])
    with pytest.raises(ValueError):
        await EncryptionCodec(os.urandom(32)).decode([encoded])


def test_party_ids_are_redacted_from_paths() -> None:
    assert redact_path("/parties/MSISDN/25644444444") == "/parties/MSISDN/***"
    assert redact_path("DELETE /accounts/MSISDN/25644444444 HTTP/1.1") == "DELETE /accounts/MSISDN/*** HTTP/1.1"
    assert redact_path("POST /accounts HTTP/1.1") == "POST /accounts HTTP/1.1"
    assert redact_path("GET /parties/MSISDN/25644444444/77 HTTP/1.1") == "GET /parties/MSISDN/*** HTTP/1.1"
    assert redact_path("/transfers/abc") == "/transfers/abc"
