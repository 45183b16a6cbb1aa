#!/usr/bin/env python3
"""Benchmark the NFC transport over the loopback reader (two real processes, real nfcpy).

For each carrier it reports, over N back-to-back taps (the first tap of each run, which
waits for the other process to start, is left out):
  hand-off   channel ready -> one grant message sent -> the peer's acknowledgement message
             received (tapping side; excludes link-up and tear-down)
  link-up    tap() called, i.e. the tapping side starts polling -> channel ready (LLCP:
             poll, NFC-DEP activation, LLCP CONNECT/CC), the peer already waiting
  tap cycle  time between two consecutive completed taps on the waiting side: tear-down,
             re-listen, the tapper's next poll, link-up and the conversation
The tag hand-off is a write tap plus a read tap against an emulated Type 3 tag. The same
LLCP figures follow over virtual chips (an RC-S380 waiting, an ACR122U tapping, each
behind nfcpy's own driver, air time modelled) with NFC-DEP at 424 and at 106 kbps.
Targets: hand-off median <= 30 ms (virtual 106 kbps: <= 60 ms), tap cycle <= 150 ms.

    python scripts/bench_nfc.py [--taps 30] [--json]

``--json`` ends the output with one line ``{"handoff_p50_ms": …, "tap_cycle_p50_ms": …, …}``
(LLCP figures, the default carrier; Type 3 figures under ``tt3_…``; virtual chips under
``virtual424_…`` and ``virtual106_…``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from benchlib import free_udp_port

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from nfcpay.records import encode_message  # noqa: E402
from nfcpay.records.samples import sample_records  # noqa: E402
from nfcpay.transport import open_reader, read_tag, write_tag  # noqa: E402
from nfcpay.transport.rundir import runtime_dir_in  # noqa: E402

#: Where the virtual fields live, for this process and the peers it starts alike.
RUNTIME_DIR = runtime_dir_in(os.environ)


def peer(*args: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "nfcpay.transport.peer", *args]
    if RUNTIME_DIR is not None:
        command += ["--runtime-dir", str(RUNTIME_DIR)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def taps_of(process: subprocess.Popen[str]) -> list[dict]:
    out, _ = process.communicate(timeout=300)
    events = [json.loads(line) for line in out.splitlines()]
    taps = [e for e in events if e["event"] == "tap"]
    failed = [t for t in taps if not t["ok"]]
    if failed:
        raise SystemExit(f"taps failed: {failed[:3]}")
    return taps


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def bench_carrier(
    carrier: str, grant: bytes, taps: int, devices: tuple[str, str] | None = None
) -> dict[str, list[float]]:
    """Back-to-back taps between two peer processes; ``devices``: (waiting, tapping),
    by default one loopback port played as an RC-S380 and an ACR122U."""
    port = free_udp_port()
    waiting, tapping = devices or (f"loopback:{port}?as=rcs380", f"loopback:{port}?as=acr122u")
    waiter = peer(
        "--device",
        waiting,
        "--offer",
        "--carrier",
        carrier,
        "--taps",
        str(taps + 1),
        "--step",
        "recv",
        "--step",
        "send=text:ack",
    )
    time.sleep(0.3)
    tapper = peer(
        "--device",
        tapping,
        "--carrier",
        carrier,
        "--taps",
        str(taps + 1),
        "--step",
        f"send=hex:{grant.hex()}",
        "--step",
        "recv",
    )
    tapped, waited = taps_of(tapper)[1:], taps_of(waiter)
    stamps = [t["at"] for t in waited[1:]]
    return {
        "handoff": [t["talk_ms"] for t in tapped],
        "link": [t["link_ms"] for t in tapped],
        "cycle": [1000 * (b - a) for a, b in itertools.pairwise(stamps)],
    }


def bench_virtual(grant: bytes, taps: int, rate: int) -> dict[str, list[float]]:
    """LLCP between a virtual RC-S380 (waiting) and a virtual ACR122U polling at ``rate``."""
    from nfcpay.transport.virtual.broker import default_field_dir, stop_field

    field = f"bench-{os.getpid()}-{rate}"
    devices = (f"virtual:rcs380@{field}", f"virtual:acr122u@{field}?rate={rate}")
    try:
        return bench_carrier("llcp", grant, taps, devices)
    finally:
        stop_field(field, directory=default_field_dir(RUNTIME_DIR))


def bench_tag(grant: bytes, taps: int) -> dict[str, list[float]]:
    port = free_udp_port()
    tag = peer("--device", f"loopback:{port}", "--tag", "serve", "--taps", str(2 * taps))
    time.sleep(0.5)
    handoffs = []
    with open_reader(f"loopback:{port}?as=acr122u", runtime_dir=RUNTIME_DIR) as reader:
        for _ in range(taps):
            started = time.perf_counter()
            write_tag(reader, grant, timeout=5)
            assert read_tag(reader, timeout=5) == grant
            handoffs.append(1000 * (time.perf_counter() - started))
    tag.communicate(timeout=30)
    return {"handoff": handoffs, "link": [], "cycle": []}


def row(name: str, data: dict[str, list[float]]) -> list[str]:
    def fmt(values: list[float], q: float) -> str:
        return f"{pct(values, q):.1f}" if values else "-"

    return [
        name,
        fmt(data["handoff"], 0.5),
        fmt(data["handoff"], 0.95),
        fmt(data["link"], 0.5),
        fmt(data["cycle"], 0.5),
        fmt(data["cycle"], 0.95),
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--taps", type=int, default=30)
    parser.add_argument("--json", action="store_true", help="end with one JSON summary line")
    args = parser.parse_args()
    records = sample_records()
    grant = encode_message([records["grant"]])
    print(
        f"loopback reader, {args.taps} taps per carrier, grant message {len(grant)} bytes, "
        "waiting side as RC-S380, tapping side as ACR122U\n"
    )
    results = [(c, bench_carrier(c, grant, args.taps)) for c in ("llcp", "tt3")]
    results.append(("tag (write+read)", bench_tag(grant, max(5, args.taps // 3))))
    for rate in (424, 106):
        results.append((f"llcp, virtual chips {rate} kbps", bench_virtual(grant, args.taps, rate)))
    headers = [
        "carrier",
        "hand-off p50 ms",
        "p95 ms",
        "link-up p50 ms",
        "tap cycle p50 ms",
        "p95 ms",
    ]
    rows = [headers] + [row(name, data) for name, data in results]
    widths = [max(len(r[i]) for r in rows) for i in range(len(headers))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)))
    print("\nencoded size of each record type (one-record NDEF message):")
    for name, record in records.items():
        print(f"  {name:10} {len(encode_message([record])):4d} bytes")
    if args.json:
        print(json.dumps(summary(dict(results))))


def summary(results: dict[str, dict[str, list[float]]]) -> dict[str, float]:
    """The JSON line: LLCP figures unprefixed, Type 3 figures as ``tt3_…``, virtual chips as
    ``virtual424_…``/``virtual106_…`` (ms)."""
    out = {}
    named = [("llcp", ""), ("tt3", "tt3_")]
    named += [(f"llcp, virtual chips {rate} kbps", f"virtual{rate}_") for rate in (424, 106)]
    for carrier, prefix in named:
        data = results[carrier]
        for name, key in (("handoff", "handoff"), ("link", "link_up"), ("cycle", "tap_cycle")):
            for q in (0.5, 0.95):
                out[f"{prefix}{key}_p{round(100 * q)}_ms"] = round(pct(data[name], q), 1)
    return out


if __name__ == "__main__":
    main()
