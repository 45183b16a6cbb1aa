"""Two OS processes talk through the loopback reader with the real nfcpy stack."""

from __future__ import annotations

import pytest

from nfcpay.transport.peer import payload
from tests.support.loopback import loop, steps

pytestmark = pytest.mark.nfc_sim


@pytest.mark.parametrize("carrier", ["llcp", "tt3"])
@pytest.mark.parametrize("size", [40, 700])
def test_request_and_answer_within_one_tap(spawn, port, carrier, size):
    waiter = spawn(
        "--device",
        loop(port),
        "--offer",
        "--carrier",
        carrier,
        *steps(f"send=ndef:{size}", "recv", "send=text:done"),
    )
    tapper = spawn("--device", loop(port), "--carrier", carrier, *steps("recv", "echo", "recv"))
    [waited] = waiter.taps(1)
    [tapped] = tapper.taps(1)
    assert waited["ok"] and tapped["ok"], (waited, tapped, tapper.stderr())
    sent = payload(f"ndef:{size}").hex()
    assert tapped["received"] == [sent, payload("text:done").hex()]
    assert waited["received"] == [sent]
    assert (waited["carrier"], waited["role"]) == (carrier, "listen")
    assert (tapped["carrier"], tapped["role"]) == (carrier, "poll")


@pytest.mark.parametrize("carrier", ["llcp", "tt3"])
def test_tapping_side_may_speak_first(spawn, port, carrier):
    waiter = spawn("--device", loop(port), "--offer", "--carrier", carrier, *steps("recv", "echo"))
    tapper = spawn("--device", loop(port), "--carrier", carrier, *steps("send=ndef:300", "recv"))
    assert waiter.taps(1)[0]["received"] == [payload("ndef:300").hex()]
    assert tapper.taps(1)[0]["received"] == [payload("ndef:300").hex()]


@pytest.mark.parametrize("carrier", ["llcp", "tt3"])
def test_killed_sender_leaves_nothing_and_the_next_tap_works(spawn, port, carrier):
    waiter = spawn(
        "--device",
        loop(port),
        "--offer",
        "--carrier",
        carrier,
        "--taps",
        "2",
        *steps("recv", "send=text:ok"),
    )
    dying = spawn("--device", loop(port), "--carrier", carrier, *steps("partial=ndef:2000"))
    assert dying.next(event="partial")["event"] == "partial"
    dying.kill()
    [broken] = waiter.taps(1)
    assert broken["ok"] is False
    assert broken["error"] in ("link_lost", "exchange_timeout")
    assert "received" not in broken
    healthy = spawn("--device", loop(port), "--carrier", carrier, *steps("send=ndef:2000", "recv"))
    [served] = waiter.taps(1)
    assert served["ok"], served
    assert served["received"] == [payload("ndef:2000").hex()]
    assert healthy.taps(1)[0]["received"] == [payload("text:ok").hex()]


@pytest.mark.slow
@pytest.mark.parametrize("carrier", ["llcp", "tt3"])
def test_twenty_back_to_back_taps_are_all_delivered(spawn, port, carrier):
    waiter = spawn(
        "--device",
        loop(port),
        "--offer",
        "--carrier",
        carrier,
        "--taps",
        "20",
        *steps("recv", "send=text:ack"),
    )
    tapper = spawn(
        "--device",
        loop(port),
        "--carrier",
        carrier,
        "--taps",
        "20",
        *steps("send=ndef:200", "recv"),
    )
    waited = waiter.taps(20, timeout=30)
    tapped = tapper.taps(20, timeout=30)
    assert all(t["ok"] for t in waited + tapped), [t for t in waited + tapped if not t["ok"]]
    assert {t["received"][0] for t in waited} == {payload("ndef:200").hex()}
    assert {t["received"][0] for t in tapped} == {payload("text:ack").hex()}


def test_two_acr122u_cannot_meet_and_are_told_why(spawn, port):
    waiter = spawn("--device", loop(port, "acr122u"), "--offer", *steps("recv"))
    tapper = spawn("--device", loop(port, "acr122u"), "--timeout", "1", *steps("send=text:x"))
    [refused] = waiter.taps(1)
    assert refused["error"] == "unsupported_by_reader"
    message = refused["message"]
    assert "ACS ACR122U cannot listen (nfcpy: UnsupportedTargetError" in message
    assert "Sony RC-S380" in message and "--carrier tag" in message and "mode='poll'" in message
    [lonely] = tapper.taps(1)
    assert lonely["error"] == "exchange_timeout"


def test_acr122u_cannot_be_the_emulated_tag(spawn, port):
    waiter = spawn("--device", loop(port, "acr122u"), "--offer", "--carrier", "tt3", *steps("recv"))
    [refused] = waiter.taps(1)
    assert refused["error"] == "unsupported_by_reader"
    assert "cannot emulate a Type 3 tag" in refused["message"]


@pytest.mark.parametrize("carrier", ["llcp", "tt3"])
@pytest.mark.parametrize(("waiting", "tapping"), [("rcs380", "acr122u"), ("rcs380", "rcs380")])
def test_reader_pairs_that_work(spawn, port, carrier, waiting, tapping):
    waiter = spawn(
        "--device",
        loop(port, waiting),
        "--offer",
        "--carrier",
        carrier,
        *steps("recv", "send=text:ok"),
    )
    tapper = spawn(
        "--device", loop(port, tapping), "--carrier", carrier, *steps("send=ndef:250", "recv")
    )
    assert waiter.taps(1)[0]["received"] == [payload("ndef:250").hex()]
    assert tapper.taps(1)[0]["received"] == [payload("text:ok").hex()]


def test_poll_only_reader_can_wait_when_the_tapper_listens(spawn, port):
    waiter = spawn(
        "--device",
        loop(port, "acr122u"),
        "--mode",
        "poll",
        "--offer",
        *steps("send=text:grant", "recv"),
    )
    tapper = spawn(
        "--device", loop(port, "rcs380"), "--mode", "listen", *steps("recv", "send=text:thanks")
    )
    [waited] = waiter.taps(1)
    [tapped] = tapper.taps(1)
    assert (waited["role"], tapped["role"]) == ("poll", "listen")
    assert tapped["received"] == [payload("text:grant").hex()]
    assert waited["received"] == [payload("text:thanks").hex()]


def test_two_acr122us_meet_through_a_tag(spawn, port):
    tag = spawn("--device", loop(port), "--tag", "serve", "--taps", "2")
    tag.next(event="ready")
    writer = spawn("--device", loop(port, "acr122u"), "--tag", "write", *steps("send=ndef:400"))
    assert writer.taps(1)[0]["ok"]
    assert writer.wait() == 0
    reader = spawn("--device", loop(port, "acr122u"), "--tag", "read")
    assert reader.taps(1)[0]["received"] == [payload("ndef:400").hex()]
    assert tag.next(event="tag-done")["event"] == "tag-done"
