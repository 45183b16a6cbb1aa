"""`nfcpay readers` and `nfcpay doctor` on a host without (or with) readers."""

from __future__ import annotations

import json

from click.testing import CliRunner

from nfcpay.cli import cli
from nfcpay.transport import discovery


def run(*args: str):
    return CliRunner().invoke(cli, list(args), catch_exceptions=False)


def test_readers_without_hardware_is_helpful():
    result = run("readers")
    assert result.exit_code == 0
    assert "No NFC readers found" in result.output or "device" in result.output
    if "No NFC readers found" in result.output:
        assert "a virtual reader (below)" in result.output
        assert "nfcpay doctor" in result.output
    assert "virtual:acr122u@FIELD" in result.output  # listed apart, with no hardware


def test_readers_json_keeps_virtual_readers_apart():
    data = json.loads(run("--json", "readers").output)
    virtual = {row["path"]: row["profile"] for row in data["virtual"]}
    assert virtual == {
        "virtual:acr122u@FIELD": "acr122u",
        "virtual:pn533@FIELD": "pn533",
        "virtual:rcs380@FIELD": "rcs380",
    }
    assert not any(row["path"].startswith("virtual:") for row in data["readers"])


def test_a_named_virtual_reader_is_matched_to_its_profile_through_its_driver(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    result = run("--json", "--device", "virtual:rcs380@readers-test", "readers")
    assert result.exit_code == 0, result.output
    [row] = json.loads(result.output)["readers"]
    assert (row["path"], row["profile"]) == ("virtual:rcs380@readers-test", "rcs380")
    assert "nfc.clf.rcs380" in row["detail"]
    run("field", "stop", "--field", "readers-test")


def test_readers_json_lists_a_named_loopback_reader(port=50999):
    result = run("--json", "--device", f"loopback:{port}?as=acr122u", "readers")
    assert result.exit_code == 0
    [row] = json.loads(result.output)["readers"]
    assert row["profile"] == "acr122u"
    assert row["abilities"]["p2p_roles"] == ["initiator"]


def test_readers_human_table_for_loopback():
    result = run("--device", "loopback:50998?as=rcs380", "readers")
    assert "Sony RC-S380" in result.output and "listen+poll" in result.output


def test_doctor_reports_every_check_with_fixes():
    result = run("--json", "doctor")
    report = json.loads(result.output.splitlines()[0])
    names = [c["name"] for c in report["checks"]]
    assert names[:2] == ["profiles", "libusb"]
    assert {"kernel modules", "pcscd"} <= set(names)
    for check in report["checks"]:
        assert check["status"] in ("ok", "problem", "info")
        if check["status"] == "problem":
            assert check["fixes"], check
    assert result.exit_code == (0 if report["ok"] else 4)


def test_kernel_modules_come_from_proc_modules(tmp_path):
    modules = tmp_path / "modules"
    modules.write_text("pn533_usb 20480 0 - Live 0x0\nnfc 131072 2 pn533, Live 0x0\n")
    assert discovery.loaded_modules(modules) == {"pn533_usb", "nfc"}
    assert discovery.loaded_modules(tmp_path / "missing") == set()
    assert {"pn533_usb", "port100"} <= set(discovery.nfc_kernel_modules())


def test_udev_rule_names_vendor_and_product():
    rule = discovery.udev_rule("072f:2200")
    assert 'ATTRS{idVendor}=="072f"' in rule and 'ATTRS{idProduct}=="2200"' in rule
