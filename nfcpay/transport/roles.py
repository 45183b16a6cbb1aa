"""Who listens, who polls, and over which carrier: decided from the firmware profile.

A peer-to-peer link needs one side that listens (NFC-DEP target, or the emulated tag) and
one that polls. nfcpay's rule is simple and the same on every reader: **the side that
waits (offer=True) listens, the side that taps polls** — unless ``mode`` says otherwise.
A reader that cannot take the role it is given (the ACR122U cannot listen) fails here,
before any RF activity, with the options spelled out — never nfcpy's silent ``False``.
A tapping side whose reader can listen also listens between its polls (``also_listen``),
so a waiting side on a poll-only reader (an ACR122U merchant) is met too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from nfcpay.errors import UnsupportedByReader
from nfcpay.transport.profiles import FirmwareProfile, default_profiles

Mode = Literal["auto", "listen", "poll"]
Carrier = Literal["auto", "llcp", "tt3"]
Role = Literal["listen", "poll"]
MODES: tuple[Mode, ...] = ("auto", "listen", "poll")
TAP_CARRIERS: tuple[Carrier, ...] = ("auto", "llcp", "tt3")


@dataclass(frozen=True)
class TapPlan:
    carrier: Literal["llcp", "tt3"]
    role: Role
    #: A polling side that listens between polls (tapping, auto mode, listen-capable reader,
    #: LLCP), so a waiting reader that can only poll still finds it.
    also_listen: bool = False


def plan_tap(profile: FirmwareProfile, *, offer: bool, mode: Mode, carrier: Carrier) -> TapPlan:
    """The carrier and role this reader takes for one tap, or UnsupportedByReader."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, not {mode!r}")
    if carrier not in TAP_CARRIERS:
        raise ValueError(f"carrier must be one of {TAP_CARRIERS}, not {carrier!r}")
    role: Role = ("listen" if offer else "poll") if mode == "auto" else mode
    alternate = mode == "auto" and not offer and profile.can_listen
    if carrier != "auto":
        _require(profile, carrier, role)
        return TapPlan(carrier, role, alternate and carrier == "llcp")
    for candidate in profile.preferred_carriers:
        if candidate in ("llcp", "tt3") and can_do(profile, candidate, role):
            return TapPlan(candidate, role, alternate and candidate == "llcp")  # type: ignore[arg-type]
    _require(profile, "llcp", role)
    raise AssertionError("unreachable: _require raises")  # pragma: no cover


def can_do(profile: FirmwareProfile, carrier: str, role: Role) -> bool:
    if carrier == "llcp":
        return profile.can_listen if role == "listen" else profile.can_poll
    if role == "listen":
        return profile.can_emulate_tt3
    return "212F" in profile.poll or "424F" in profile.poll


def _require(profile: FirmwareProfile, carrier: str, role: Role) -> None:
    if can_do(profile, carrier, role):
        return
    raise role_error(profile, carrier, role)


def role_error(
    profile: FirmwareProfile, carrier: str, role: Role, cause: str | None = None
) -> UnsupportedByReader:
    """The clear error for a reader asked to do what it cannot, with the ways out."""
    if role == "listen":
        what = "cannot listen" if carrier == "llcp" else "cannot emulate a Type 3 tag"
        cause = cause or "UnsupportedTargetError"
        capable = ", ".join(
            p.name
            for p in default_profiles()
            if can_do(p, carrier, "listen") and "udp" not in p.drivers
        )
        options = (
            f"use a listen-capable reader on this side ({capable}); or let the other "
            "terminal wait and tap it from here (this side polls: mode='poll' / --poll, "
            "the other listens); or hand the grant over through an NFC tag (--carrier tag)"
        )
        doing = "wait for a tap (the waiting side listens)"
    else:
        what = "cannot poll for a peer" if carrier == "llcp" else "cannot read Type 3 tags"
        cause = cause or "unsupported by the profile"
        options = "use another reader on this side, or let this side wait (mode='listen')"
        doing = "tap a waiting peer"
    message = (
        f"{profile.name} {what} (nfcpy: {cause}), so it cannot {doing} over the "
        f"{carrier} carrier. Options: {options}."
    )
    return UnsupportedByReader(message)
