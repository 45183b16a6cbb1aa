"""Every nfcpay record type crosses the loopback reader between two processes, per carrier."""

from __future__ import annotations

import pytest

from nfcpay.records import decode_message, encode_message
from nfcpay.records.samples import sample_records
from tests.support.loopback import loop, steps

pytestmark = pytest.mark.nfc_sim

SAMPLES = sample_records()


@pytest.mark.parametrize("carrier", ["llcp", "tt3"])
def test_every_record_type_in_one_tap(spawn, port, carrier):
    wires = {name: encode_message([record]) for name, record in SAMPLES.items()}
    waiter_steps, tapper_steps = [], []
    for wire in wires.values():
        waiter_steps += steps("recv", "echo")
        tapper_steps += steps(f"send=hex:{wire.hex()}", "recv")
    waiter = spawn("--device", loop(port, "rcs380"), "--offer", "--carrier", carrier, *waiter_steps)
    tapper = spawn("--device", loop(port, "acr122u"), "--carrier", carrier, *tapper_steps)
    [waited] = waiter.taps(1)
    [tapped] = tapper.taps(1)
    assert waited["ok"] and tapped["ok"], (waited, tapped)
    for received in (waited["received"], tapped["received"]):
        decoded = [decode_message(bytes.fromhex(h)) for h in received]
        assert decoded == [[record] for record in SAMPLES.values()]


def test_every_record_type_through_a_tag(spawn, port):
    wire = encode_message(list(SAMPLES.values()))
    tag = spawn("--device", loop(port), "--tag", "serve", "--taps", "2")
    tag.next(event="ready")
    writer = spawn(
        "--device", loop(port, "acr122u"), "--tag", "write", *steps(f"send=hex:{wire.hex()}")
    )
    assert writer.taps(1)[0]["ok"]
    writer.wait()
    reader = spawn("--device", loop(port, "acr122u"), "--tag", "read")
    [read] = reader.taps(1)
    assert decode_message(bytes.fromhex(read["received"][0])) == list(SAMPLES.values())
