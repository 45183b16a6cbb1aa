"""scripts/setup-linux.sh: shows its plan, applies it idempotently, covers every profile."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

from nfcpay.transport.profiles import load_profiles

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "setup-linux.sh"


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", str(SCRIPT), *args], capture_output=True, text=True, timeout=30)


def test_dry_run_shows_the_plan_and_changes_nothing(tmp_path):
    result = run("--root", str(tmp_path), "--dry-run")
    assert result.returncode == 0
    assert "write    " in result.stdout and "blacklist pn533_usb" in result.stdout
    assert "Dry run: nothing changed." in result.stdout
    assert not any(tmp_path.iterdir())


def test_apply_then_rerun_is_a_no_op(tmp_path):
    first = run("--root", str(tmp_path), "--yes")
    assert first.returncode == 0, first.stderr
    rules = (tmp_path / "etc/udev/rules.d/60-nfcpay.rules").read_text()
    blacklist = (tmp_path / "etc/modprobe.d/blacklist-nfcpay.conf").read_text()
    assert 'ATTRS{idVendor}=="072f", ATTRS{idProduct}=="2200"' in rules
    assert {"blacklist pn533_usb", "blacklist port100"} <= set(blacklist.splitlines())
    second = run("--root", str(tmp_path), "--yes")
    assert "Nothing to do." in second.stdout
    assert (tmp_path / "etc/udev/rules.d/60-nfcpay.rules").read_text() == rules


def test_script_covers_every_usb_reader_and_kernel_module():
    text = SCRIPT.read_text()
    ids = set(re.findall(r'^\s+"([0-9a-f]{4}:[0-9a-f]{4}) ', text, re.MULTILINE))
    profiles = load_profiles()
    assert ids == {usb for p in profiles for usb in p.usb_ids}
    modules = set(re.search(r"^MODULES=\((.*)\)$", text, re.MULTILINE).group(1).split())
    assert modules == {m for p in profiles for m in p.kernel_modules} - {"nfc"}
