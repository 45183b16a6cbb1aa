"""Firmware profiles: what each reader (and firmware) can do, loaded from TOML data files.

A profile is data, not code: ``firmware_profiles/<vendor>-<model>.toml`` in the source tree,
``nfcpay/firmware_profiles/`` inside an installed wheel. :func:`load_profiles` reads and
validates every file; :func:`check_profiles` returns the problems as a list (for
``nfcpay doctor``); a broken file raises :class:`nfcpay.errors.ProfileError` naming the
file and the field. Field meanings are documented in ``firmware_profiles/README.md``.
"""

from __future__ import annotations

import functools
import re
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nfcpay.errors import ProfileError

SCHEMA_VERSION = 1
CARRIERS = ("llcp", "tt3", "tag")
POLL_TECHNOLOGIES = ("106A", "106B", "212F", "424F")
LISTEN_TECHNOLOGIES = ("106A", "106B", "212F", "424F")
P2P_ROLES = ("initiator", "target")
P2P_MODES = ("passive", "active")
EMULATED_TAGS = ("tt3",)
_USB_ID = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{4}$")
_PROFILE_ID = re.compile(r"^[a-z0-9][a-z0-9-]*$")


@dataclass(frozen=True)
class Quirk:
    summary: str
    reference: str


@dataclass(frozen=True)
class FirmwareProfile:
    """One reader/firmware's abilities as nfcpy 1.0.4 drives it."""

    id: str
    name: str
    source: Path
    drivers: tuple[str, ...]
    usb_ids: tuple[str, ...]
    firmware: str
    poll: tuple[str, ...]
    listen: tuple[str, ...]
    p2p_roles: tuple[str, ...]
    p2p_modes: tuple[str, ...]
    emulates: tuple[str, ...]
    emulation_max_frame: int
    max_send: int
    max_recv: int
    kernel_modules: tuple[str, ...]
    pcscd: bool
    preferred_carriers: tuple[str, ...]
    quirks: tuple[Quirk, ...]
    aliases: tuple[str, ...]

    @property
    def can_listen(self) -> bool:
        """Can be the NFC-DEP target (wait to be discovered) in peer-to-peer mode."""
        return "target" in self.p2p_roles

    @property
    def can_poll(self) -> bool:
        return "initiator" in self.p2p_roles

    @property
    def can_emulate_tt3(self) -> bool:
        return "tt3" in self.emulates

    def matches_firmware(self, firmware: str) -> bool:
        """Whether nfcpy's chipset/firmware string fits this profile's rule ('' = any)."""
        return not self.firmware or re.search(self.firmware, firmware) is not None

    def abilities(self) -> dict[str, Any]:
        """A JSON-ready summary for ``nfcpay readers``."""
        return {
            "poll": list(self.poll),
            "listen": list(self.listen),
            "p2p_roles": list(self.p2p_roles),
            "emulates": list(self.emulates),
            "carriers": list(self.preferred_carriers),
        }


class _Fields:
    """Typed access to one TOML table that reports the file and dotted field on errors."""

    def __init__(self, source: Path, table: Mapping[str, Any], prefix: str = "") -> None:
        self.source = source
        self.table = table
        self.prefix = prefix

    def fail(self, field: str, problem: str) -> ProfileError:
        return ProfileError(f"{self.source.name}: field '{self.prefix}{field}' {problem}")

    def sub(self, field: str) -> _Fields:
        value = self.table.get(field, {})
        if not isinstance(value, Mapping):
            raise self.fail(field, "must be a table")
        return _Fields(self.source, value, f"{self.prefix}{field}.")

    def text(
        self, field: str, *, pattern: re.Pattern[str] | None = None, default: str | None = None
    ) -> str:
        value = self.table.get(field, default)
        if not isinstance(value, str):
            raise self.fail(field, "is missing or not a string")
        if pattern is not None and not pattern.match(value):
            raise self.fail(field, f"value {value!r} does not match {pattern.pattern}")
        return value

    def words(self, field: str, allowed: Iterable[str] | None = None) -> tuple[str, ...]:
        value = self.table.get(field, [])
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.fail(field, "must be a list of strings")
        if allowed is not None:
            allowed = tuple(allowed)
            for item in value:
                if item not in allowed:
                    raise self.fail(
                        field, f"has unknown value {item!r} (allowed: {', '.join(allowed)})"
                    )
        return tuple(value)

    def number(self, field: str, default: int | None = None) -> int:
        value = self.table.get(field, default)
        if not isinstance(value, int) or isinstance(value, bool) or value < 0:
            raise self.fail(field, "is missing or not a non-negative integer")
        return value

    def flag(self, field: str) -> bool:
        value = self.table.get(field, False)
        if not isinstance(value, bool):
            raise self.fail(field, "must be true or false")
        return value


def parse_profile(source: Path, data: Mapping[str, Any]) -> FirmwareProfile:
    """Validate one decoded TOML document into a profile."""
    top = _Fields(source, data)
    if top.number("schema") != SCHEMA_VERSION:
        raise top.fail("schema", f"must be {SCHEMA_VERSION}")
    match, p2p, emulation = top.sub("match"), top.sub("p2p"), top.sub("tag_emulation")
    firmware = match.text("firmware", default="")
    try:
        re.compile(firmware)
    except re.error as exc:
        raise match.fail("firmware", f"is not a valid regular expression ({exc})") from None
    usb_ids = match.words("usb")
    for usb_id in usb_ids:
        if not _USB_ID.match(usb_id):
            raise match.fail("usb", f"entry {usb_id!r} is not vvvv:pppp in lowercase hex")
    profile = FirmwareProfile(
        id=top.text("id", pattern=_PROFILE_ID),
        name=top.text("name"),
        source=source,
        drivers=match.words("driver"),
        usb_ids=usb_ids,
        firmware=firmware,
        poll=top.sub("poll").words("technologies", POLL_TECHNOLOGIES),
        listen=top.sub("listen").words("technologies", LISTEN_TECHNOLOGIES),
        p2p_roles=p2p.words("roles", P2P_ROLES),
        p2p_modes=p2p.words("modes", P2P_MODES),
        emulates=emulation.words("types", EMULATED_TAGS),
        emulation_max_frame=emulation.number("max_frame", 0),
        max_send=top.sub("frames").number("max_send"),
        max_recv=top.sub("frames").number("max_recv"),
        kernel_modules=top.sub("host").words("kernel_modules"),
        pcscd=top.sub("host").flag("pcscd"),
        preferred_carriers=top.sub("carriers").words("preferred", CARRIERS),
        quirks=_quirks(top),
        aliases=top.words("aliases"),
    )
    _check_consistency(top, profile)
    return profile


def _quirks(top: _Fields) -> tuple[Quirk, ...]:
    raw = top.table.get("quirks", [])
    if not isinstance(raw, list):
        raise top.fail("quirks", "must be an array of tables ([[quirks]])")
    quirks = []
    for index, item in enumerate(raw):
        if not isinstance(item, Mapping):
            raise top.fail(f"quirks[{index}]", "must be a table")
        fields = _Fields(top.source, item, f"quirks[{index}].")
        quirks.append(Quirk(fields.text("summary"), fields.text("reference")))
    return tuple(quirks)


def _check_consistency(top: _Fields, profile: FirmwareProfile) -> None:
    if not profile.drivers:
        raise top.fail("match.driver", "must name at least one nfcpy driver")
    if profile.can_listen and not profile.listen:
        raise top.fail("listen.technologies", "is empty but p2p.roles includes 'target'")
    if profile.emulates and not profile.listen:
        raise top.fail("tag_emulation.types", "needs listen.technologies to emulate a tag")
    if profile.can_emulate_tt3 and profile.emulation_max_frame < 64:
        raise top.fail("tag_emulation.max_frame", "must be at least 64 when a tag is emulated")
    if not profile.preferred_carriers:
        raise top.fail("carriers.preferred", "must list at least one carrier")
    if "llcp" in profile.preferred_carriers and not profile.p2p_roles:
        raise top.fail("carriers.preferred", "lists 'llcp' but p2p.roles is empty")


def load_profile(path: Path) -> FirmwareProfile:
    """Read and validate one profile file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ProfileError(f"{path.name}: cannot be read ({exc})") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(f"{path.name}: is not valid TOML ({exc})") from exc
    return parse_profile(path, data)


def profiles_dir() -> Path:
    """Where the profiles live: the wheel's copy, else the source tree's."""
    package = Path(__file__).resolve().parent.parent
    installed = package / "firmware_profiles"
    return installed if installed.is_dir() else package.parent / "firmware_profiles"


def load_profiles(directory: Path | None = None) -> tuple[FirmwareProfile, ...]:
    """Every profile in ``directory`` (default :func:`profiles_dir`), sorted by id."""
    directory = directory or profiles_dir()
    profiles = [load_profile(path) for path in sorted(directory.glob("*.toml"))]
    if not profiles:
        raise ProfileError(f"no firmware profiles found in {directory}")
    seen: dict[str, Path] = {}
    for profile in profiles:
        for key in (profile.id, *profile.aliases):
            if key in seen:
                raise ProfileError(
                    f"{profile.source.name}: field 'id' or 'aliases' repeats {key!r} "
                    f"from {seen[key].name}"
                )
            seen[key] = profile.source
    return tuple(sorted(profiles, key=lambda p: p.id))


def check_profiles(directory: Path | None = None) -> list[ProfileError]:
    """Every problem in the profile folder, as values (one per broken file)."""
    directory = directory or profiles_dir()
    problems: list[ProfileError] = []
    for path in sorted(directory.glob("*.toml")):
        try:
            load_profile(path)
        except ProfileError as exc:
            problems.append(exc)
    return problems


@functools.cache
def default_profiles() -> tuple[FirmwareProfile, ...]:
    """The shipped profiles, loaded once per process."""
    return load_profiles()


def profile_by_name(
    name: str, profiles: Iterable[FirmwareProfile] | None = None
) -> FirmwareProfile:
    """The profile whose id or alias is ``name`` (case-insensitive)."""
    wanted = name.lower()
    candidates = tuple(profiles) if profiles is not None else default_profiles()
    for profile in candidates:
        if wanted == profile.id or wanted in profile.aliases:
            return profile
    known = ", ".join(sorted(p.id for p in candidates))
    raise ProfileError(f"no firmware profile named {name!r} (known: {known})")


def match_profile(
    driver: str,
    usb_id: str | None = None,
    firmware: str = "",
    profiles: Iterable[FirmwareProfile] | None = None,
) -> FirmwareProfile | None:
    """The best profile for an opened device: USB id + driver + firmware, then driver + firmware."""
    candidates = [
        p
        for p in (tuple(profiles) if profiles is not None else default_profiles())
        if driver in p.drivers and p.matches_firmware(firmware)
    ]
    if usb_id is not None:
        exact = [p for p in candidates if usb_id.lower() in p.usb_ids]
        if exact:
            return exact[0]
    return candidates[0] if candidates else None
