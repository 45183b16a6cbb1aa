"""Encoded size and codec speed of every nfcpay NDEF record type.

    python scripts/bench_records.py            # table
    python scripts/bench_records.py --json     # one JSON object

Sizes are whole NDEF records (header included) of the realistic samples in
nfcpay.records.samples; times are medians of per-call timings on this machine: building a
record (validation + CBOR) and framing it, and decoding it back (ndeflib + CBOR + checks).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import replace

from nfcpay.records import decode_one, encode_message
from nfcpay.records.samples import sample_records


def median_us(call: Callable[[], object], rounds: int) -> float:
    timings = []
    for _ in range(rounds):
        start = time.perf_counter_ns()
        call()
        timings.append(time.perf_counter_ns() - start)
    return statistics.median(timings) / 1000


def measure(rounds: int) -> dict[str, dict[str, float]]:
    figures = {}
    for name, record in sample_records().items():
        octets = encode_message([record])
        figures[name] = {
            "bytes": len(octets),
            "build_encode_us": median_us(lambda r=record: encode_message([replace(r)]), rounds),
            "decode_us": median_us(lambda o=octets, c=type(record): decode_one(o, c), rounds),
        }
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2000)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    figures = measure(args.rounds)
    if args.json:
        print(json.dumps(figures))
        return
    print(f"{'record':<10} {'bytes':>5} {'build+encode µs':>16} {'decode µs':>10}")
    for name, row in figures.items():
        build, decode = row["build_encode_us"], row["decode_us"]
        print(f"{name:<10} {row['bytes']:>5} {build:>16.1f} {decode:>10.1f}")


if __name__ == "__main__":
    main()
