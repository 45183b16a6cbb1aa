"""Hunt flaky tests before CI does: run the suite N times, each in a fresh clone, and list
every test that failed at least once.

    python scripts/flakehunt.py --runs 5                       # the default pytest, 5 times
    python scripts/flakehunt.py --runs 50 -- tests/transport/test_link_teardown.py -k stale
    python scripts/flakehunt.py --runs 5 --ci                  # the whole .ci/run, 5 times

Each run clones the committed ``HEAD`` of this repository into a new temporary directory
(uncommitted changes are not in it: commit first) and runs there, so nothing a previous
run left behind — a database file, a bound port, a ``.pytest_cache`` — can help or hurt.
Without ``--ci`` the tests run with this interpreter (its installed dependencies) on the
clone's code; with ``--ci`` each clone runs ``.ci/run`` exactly as CI does, fresh venv
included. pytest's JUnit report of each run says which tests failed; a run that ends
without one (a crash, ruff, an install error) is reported as such.

Exit status: 0 when every run passed, 1 otherwise.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import xml.etree.ElementTree as ET
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


@dataclass
class Run:
    """One run's outcome: exit status, seconds, and the ids of the tests that failed."""

    number: int
    status: int
    seconds: float
    failed: list[str]
    reported: bool


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=5, help="how many fresh runs (default 5)")
    parser.add_argument(
        "--ci", action="store_true", help="run .ci/run in each clone instead of pytest"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the clones (their paths are printed)"
    )
    parser.add_argument("pytest_args", nargs="*", help="after --: what pytest runs (not --ci)")
    args = parser.parse_args(argv)
    if args.ci and args.pytest_args:
        parser.error("--ci runs .ci/run as it stands; it takes no pytest arguments")
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    return args


def failed_tests(report: Path) -> list[str] | None:
    """Ids (``file::name``) of the failed or erroring tests in a JUnit report; None if absent."""
    if not report.exists():
        return None
    failed = []
    for case in ET.parse(report).getroot().iter("testcase"):
        if case.find("failure") is not None or case.find("error") is not None:
            path = case.get("classname", "").replace(".", "/")
            failed.append(f"{path}.py::{case.get('name')}")
    return failed


def one_run(number: int, args: argparse.Namespace, workdir: Path) -> Run:
    clone = workdir / f"run-{number}"
    subprocess.run(["git", "clone", "--quiet", str(REPO), str(clone)], check=True)
    report = workdir / f"run-{number}.xml"
    log = workdir / f"run-{number}.log"
    env = {**os.environ, "PYTEST_ADDOPTS": f"--junitxml={report}"}
    if args.ci:
        command = ["bash", ".ci/run"]
    else:
        command = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider"]
        command += args.pytest_args
        env["PYTHONPATH"] = str(clone)  # the clone's nfcpay, in its subprocesses too
    started = time.monotonic()
    with log.open("w") as out:
        status = subprocess.run(command, cwd=clone, env=env, stdout=out, stderr=out).returncode
    seconds = time.monotonic() - started
    failed = failed_tests(report)
    return Run(number, status, seconds, failed or [], failed is not None)


def summary(runs: list[Run]) -> str:
    lines = []
    for run in runs:
        verdict = "passed" if run.status == 0 else f"FAILED (exit {run.status})"
        if run.status and not run.reported:
            verdict += ", no test report: see its log"
        lines.append(f"run {run.number}: {verdict} in {run.seconds:.0f} s")
    counts = Counter(test for run in runs for test in run.failed)
    if counts:
        lines.append(f"\ntests that failed at least once (of {len(runs)} runs):")
        lines += [f"  {n}/{len(runs)}  {test}" for test, n in counts.most_common()]
    else:
        lines.append(f"\nno test failed in {len(runs)} runs")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    dirty = subprocess.run(
        ["git", "status", "--porcelain", "--untracked-files=no"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if dirty:
        print("note: uncommitted changes are not in the clones; commit to hunt them", flush=True)
    workdir = Path(tempfile.mkdtemp(prefix="nfcpay-flakehunt-"))
    runs = []
    for number in range(1, args.runs + 1):
        run = one_run(number, args, workdir)
        runs.append(run)
        print(f"run {number}/{args.runs}: exit {run.status}, {run.seconds:.0f} s", flush=True)
    print(summary(runs))
    print(f"\nlogs and JUnit reports: {workdir}")
    if not args.keep:
        for number in range(1, args.runs + 1):
            shutil.rmtree(workdir / f"run-{number}", ignore_errors=True)
    return 0 if all(run.status == 0 for run in runs) else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
