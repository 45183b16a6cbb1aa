"""The virtual RF field's rules (nfcpay/transport/virtual/field.py), chips aside."""

from __future__ import annotations

import threading

import pytest

from nfcpay.transport.virtual.field import (
    LATER,
    SILENT,
    AirCollision,
    AirError,
    AirFrame,
    AirTimeout,
    Field,
    air_time,
)


class Echo:
    """Answers every frame with a prefix, and remembers the carrier events."""

    def __init__(self, prefix: bytes, reply: object = None) -> None:
        self.prefix = prefix
        self.reply = reply
        self.heard: list[AirFrame] = []
        self.events: list[bool] = []

    def respond(self, frame: AirFrame, exchange_id: int):
        self.heard.append(frame)
        return self.reply if self.reply is not None else self.prefix + frame.data

    def field_changed(self, on: bool) -> None:
        self.events.append(on)


def test_a_frame_reaches_the_listener_and_its_answer_comes_back():
    field = Field(model_air_time=False)
    poller, tag = field.attach("poller"), field.attach("tag")
    echo = Echo(b"\x01")
    tag.listen(echo)
    poller.carrier(True)
    assert poller.exchange(AirFrame("106A", b"\x26"), 0.01) == b"\x01\x26"
    assert echo.events == [True]
    poller.carrier(False)
    assert echo.events == [True, False]


def test_nobody_answering_costs_the_timeout_and_raises():
    field = Field(model_air_time=False)
    poller = field.attach("poller")
    field.attach("quiet").listen(Echo(b"", reply=SILENT))
    poller.carrier(True)
    with pytest.raises(AirTimeout):
        poller.exchange(AirFrame("106A", b"\x26"), 0.001)


def test_sending_without_a_carrier_is_a_chip_bug():
    field = Field(model_air_time=False)
    with pytest.raises(AirError):
        field.attach("poller").exchange(AirFrame("106A", b"\x26"), 0.01)


def test_two_carriers_garble_every_frame():
    field = Field(model_air_time=False)
    first, second, tag = field.attach("a"), field.attach("b"), field.attach("tag")
    echo = Echo(b"\x01")
    tag.listen(echo)
    first.carrier(True)
    second.carrier(True)
    with pytest.raises(AirCollision):
        first.exchange(AirFrame("106A", b"\x26"), 0.01)
    assert echo.heard == []


def test_lowest_immediate_answer_wins():
    field = Field(model_air_time=False)
    poller = field.attach("poller")
    field.attach("high").listen(Echo(b"\x09"))
    field.attach("low").listen(Echo(b"\x02"))
    poller.carrier(True)
    assert poller.exchange(AirFrame("212F", b"\x00"), 0.01) == b"\x02\x00"


def test_a_deferred_answer_arrives_through_the_antenna():
    field = Field(model_air_time=False)
    poller, target = field.attach("poller"), field.attach("target")
    ids: list[int] = []

    class Host:
        def respond(self, frame, exchange_id):
            ids.append(exchange_id)
            threading.Timer(0.01, target.answer, (exchange_id, b"late-but-in-time")).start()
            return LATER

        def field_changed(self, on):
            pass

    target.listen(Host())
    poller.carrier(True)
    assert poller.exchange(AirFrame("424F", b"req"), 1.0) == b"late-but-in-time"


def test_an_answer_after_the_timeout_is_lost():
    field = Field(model_air_time=False)
    poller, target = field.attach("poller"), field.attach("target")
    ids: list[int] = []

    class Host:
        def respond(self, frame, exchange_id):
            ids.append(exchange_id)
            return LATER

        def field_changed(self, on):
            pass

    target.listen(Host())
    poller.carrier(True)
    with pytest.raises(AirTimeout):
        poller.exchange(AirFrame("424F", b"req"), 0.02)
    assert target.answer(ids[0], b"too late") is False


def test_air_time_follows_the_bit_rate():
    frame = bytes(254)
    slow, fast = air_time(AirFrame("106A", frame)), air_time(AirFrame("424F", frame))
    assert 0.020 < slow < 0.023
    assert 0.004 < fast < 0.006


class AnswersFromAnotherThread:
    """Says LATER, but its host answers on another thread before ``respond`` returns."""

    def __init__(self, antenna) -> None:
        self.antenna = antenna
        self.accepted: list[bool] = []

    def respond(self, frame: AirFrame, exchange_id: int):
        host = threading.Thread(
            target=lambda: self.accepted.append(self.antenna.answer(exchange_id, b"\x90\x00"))
        )
        host.start()
        host.join()
        return LATER

    def field_changed(self, on: bool) -> None:
        pass


def test_a_host_may_answer_before_its_chip_has_said_later():
    field = Field(model_air_time=False)
    poller, card = field.attach("poller"), field.attach("card")
    host = AnswersFromAnotherThread(card)
    card.listen(host)
    poller.carrier(True)
    assert poller.exchange(AirFrame("106A", b"\x00"), 0.5) == b"\x90\x00"
    assert host.accepted == [True]


def test_only_an_antenna_that_deferred_may_answer():
    field = Field(model_air_time=False)
    poller, card, bystander = field.attach("poller"), field.attach("card"), field.attach("x")
    exchange_ids: list[int] = []

    class Deferring(Echo):
        def respond(self, frame: AirFrame, exchange_id: int):
            exchange_ids.append(exchange_id)
            return LATER

    card.listen(Deferring(b""))
    bystander.listen(Echo(b"", reply=SILENT))
    poller.carrier(True)
    done: list[bytes] = []
    sender = threading.Thread(
        target=lambda: done.append(poller.exchange(AirFrame("106A", b"\x00"), 2.0))
    )
    sender.start()
    while not exchange_ids:
        threading.Event().wait(0.001)
    assert bystander.answer(exchange_ids[0], b"forged") is False
    assert poller.answer(exchange_ids[0], b"forged") is False
    assert card.answer(exchange_ids[0], b"\x90\x00") is True
    sender.join(5)
    assert done == [b"\x90\x00"]
