"""Firmware profiles: every shipped file loads; broken files name file and field."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from nfcpay.errors import ProfileError
from nfcpay.transport.profiles import (
    check_profiles,
    load_profile,
    load_profiles,
    match_profile,
    profile_by_name,
    profiles_dir,
)

SHIPPED = sorted(profiles_dir().glob("*.toml"))


def test_profiles_dir_is_the_repository_folder():
    assert profiles_dir().name == "firmware_profiles"
    assert (profiles_dir() / "README.md").is_file()


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.name)
def test_every_shipped_profile_loads(path):
    profile = load_profile(path)
    assert profile.quirks, "every reader has at least one documented quirk"
    assert all(q.reference for q in profile.quirks)


def test_all_required_readers_are_covered():
    ids = {p.id for p in load_profiles()}
    assert {"acr122u", "rcs380", "rcs956", "pn533", "pn532", "pn531", "loopback"} <= ids
    assert check_profiles() == []


def test_readme_documents_every_field():
    readme = (profiles_dir() / "README.md").read_text()
    for field in (
        "schema",
        "aliases",
        "driver",
        "usb",
        "firmware",
        "technologies",
        "roles",
        "modes",
        "types",
        "max_frame",
        "max_send",
        "max_recv",
        "kernel_modules",
        "pcscd",
        "preferred",
        "summary",
        "reference",
    ):
        assert f"`{field}`" in readme, field


@pytest.mark.parametrize(
    ("name", "can_listen", "can_emulate"),
    [
        ("acr122u", False, False),
        ("rcs380", True, True),
        ("rcs956", True, False),
        ("scl3711", True, True),
        ("loopback", True, True),
    ],
)
def test_abilities(name, can_listen, can_emulate):
    profile = profile_by_name(name)
    assert (profile.can_listen, profile.can_emulate_tt3) == (can_listen, can_emulate)


def test_matching():
    assert match_profile("acr122", "072f:2200", "PN532v1.6").id == "acr122u"
    assert match_profile("rcs380", None, "NFC Port-100 v1.11").id == "rcs380"
    assert match_profile("pn533", "04e6:5591", "PN533v2.7").id == "pn533"
    assert match_profile("pn532", None, "PN532v1.6").id == "pn532"
    assert match_profile("pn533", None, "PN531v4.2") is None
    assert match_profile("arygon") is None


def test_unknown_name_lists_known_ones():
    with pytest.raises(ProfileError, match="known: acr122u"):
        profile_by_name("nope")


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    shutil.copy(profiles_dir() / "sony-rcs380.toml", tmp_path / "sony-rcs380.toml")
    return tmp_path


def edit(folder: Path, old: str, new: str) -> None:
    path = folder / "sony-rcs380.toml"
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))


@pytest.mark.parametrize(
    ("old", "new", "field"),
    [
        ("schema = 1", "schema = 2", "schema"),
        ('id = "rcs380"', 'id = "RC S380"', "id"),
        ('usb = ["054c:06c1"', 'usb = ["054C-06C1"', "match.usb"),
        ('firmware = ""', 'firmware = "("', "match.firmware"),
        ('technologies = ["106A", "106B"', 'technologies = ["107A", "106B"', "poll.technologies"),
        ('roles = ["initiator", "target"]', 'roles = "both"', "p2p.roles"),
        ("max_frame = 254", "max_frame = 16", "tag_emulation.max_frame"),
        ("max_send = 290", 'max_send = "big"', "frames.max_send"),
        ("pcscd = false", 'pcscd = "no"', "host.pcscd"),
        ('preferred = ["llcp", "tt3", "tag"]', 'preferred = ["nfc"]', "carriers.preferred"),
        (
            'reference = "nfcpy 1.0.4 src/nfc/clf/rcs380.py module docstring"',
            "",
            "quirks[0].reference",
        ),
        ('driver = ["rcs380"]', "driver = []", "match.driver"),
    ],
)
def test_broken_file_names_file_and_field(folder, old, new, field):
    edit(folder, old, new)
    with pytest.raises(ProfileError) as caught:
        load_profiles(folder)
    assert caught.value.message.startswith("sony-rcs380.toml: ")
    assert f"'{field}'" in caught.value.message
    assert len(check_profiles(folder)) == 1


def test_invalid_toml(folder):
    (folder / "sony-rcs380.toml").write_text("schema = ")
    with pytest.raises(ProfileError, match=r"sony-rcs380\.toml: is not valid TOML"):
        load_profiles(folder)


def test_duplicate_ids(folder):
    shutil.copy(folder / "sony-rcs380.toml", folder / "copy.toml")
    with pytest.raises(ProfileError, match="repeats 'rcs380'"):
        load_profiles(folder)


def test_empty_folder(tmp_path):
    with pytest.raises(ProfileError, match="no firmware profiles"):
        load_profiles(tmp_path)


#: profile id → nfcpy's driver module of that reader (its Chipset's host frame size).
DRIVER_CHIPSETS = {
    "acr122u": "nfc.clf.acr122",
    "pn531": "nfc.clf.pn531",
    "pn532": "nfc.clf.pn532",
    "pn533": "nfc.clf.pn533",
    "rcs956": "nfc.clf.rcs956",
}


@pytest.mark.parametrize("profile_id", sorted(DRIVER_CHIPSETS))
def test_frame_sizes_are_what_the_pn53x_drivers_report(profile_id):
    """pn53x.Device reports host_command_frame_max_size - 2 to send and - 3 to receive."""
    import importlib

    chipset = importlib.import_module(DRIVER_CHIPSETS[profile_id]).Chipset
    profile = profile_by_name(profile_id)
    size = chipset.host_command_frame_max_size
    assert (profile.max_send, profile.max_recv) == (size - 2, size - 3)


def test_rcs380_frame_sizes_are_what_its_driver_reports():
    import nfc.clf.rcs380

    profile = profile_by_name("rcs380")
    device = nfc.clf.rcs380.Device.__new__(nfc.clf.rcs380.Device)  # sizes need no chip
    assert profile.max_send == device.get_max_send_data_size(None)
    assert profile.max_recv == device.get_max_recv_data_size(None)
