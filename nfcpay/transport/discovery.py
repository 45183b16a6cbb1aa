"""Finding readers on this host and checking what stands in their way (``readers``/``doctor``).

Checks come back as values (:class:`Check`), each with the exact command that fixes it, so
the CLI only renders them. Nothing here needs root; nothing here changes the host.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from nfcpay import errors
from nfcpay.transport.profiles import FirmwareProfile, check_profiles, default_profiles

UDEV_RULES = Path("/etc/udev/rules.d/60-nfcpay.rules")
BLACKLIST = Path("/etc/modprobe.d/blacklist-nfcpay.conf")
SETUP_SCRIPT = "scripts/setup-linux.sh"
LIBUSB_FIX = (
    "sudo apt-get install libusb-1.0-0   (Fedora: dnf install libusb1; macOS: brew install libusb)"
)


@dataclass(frozen=True)
class UsbReader:
    """A supported reader seen on USB (not opened)."""

    usb_id: str
    bus: int
    address: int
    driver: str
    profile: FirmwareProfile | None

    @property
    def devnode(self) -> Path:
        return Path(f"/dev/bus/usb/{self.bus:03d}/{self.address:03d}")

    @property
    def path(self) -> str:
        return f"usb:{self.bus:03d}:{self.address:03d}"

    @property
    def accessible(self) -> bool:
        return os.access(self.devnode, os.R_OK | os.W_OK)


@dataclass(frozen=True)
class Check:
    """One doctor finding: ``status`` is "ok", "problem" or "info"."""

    name: str
    status: str
    detail: str
    fixes: tuple[str, ...] = field(default=())


def libusb_version() -> str:
    """libusb's version; raises ReaderNotFound (with the fix) when libusb is missing."""
    try:
        import usb1

        with usb1.USBContext():
            version = usb1.getVersion()
    except (ImportError, OSError) as exc:
        raise errors.ReaderNotFound(
            f"libusb-1.0 is not available ({exc.__class__.__name__}), so no USB reader can be "
            f"found; install it: {LIBUSB_FIX}"
        ) from exc
    return f"{version.major}.{version.minor}.{version.micro}"


def usb_readers() -> list[UsbReader]:
    """Supported readers on USB, by nfcpy's own vendor/product table."""
    libusb_version()
    import usb1
    from nfc.clf.device import usb_device_map

    found = []
    with usb1.USBContext() as context:
        for device in context.getDeviceIterator(skip_on_error=True):
            key = (device.getVendorID(), device.getProductID())
            if key in usb_device_map:
                usb_id = f"{key[0]:04x}:{key[1]:04x}"
                driver = usb_device_map[key]
                profile = next((p for p in default_profiles() if usb_id in p.usb_ids), None)
                found.append(
                    UsbReader(
                        usb_id, device.getBusNumber(), device.getDeviceAddress(), driver, profile
                    )
                )
    return found


def loaded_modules(proc_modules: Path = Path("/proc/modules")) -> set[str]:
    """Kernel modules loaded right now (what ``lsmod`` shows)."""
    try:
        return {line.split()[0] for line in proc_modules.read_text().splitlines() if line}
    except OSError:
        return set()


def pcscd_running() -> bool:
    pgrep = shutil.which("pgrep")
    if pgrep is None:
        return False
    probe = subprocess.run([pgrep, "-x", "pcscd"], capture_output=True, check=False)  # noqa: S603
    return probe.returncode == 0


def udev_rule(usb_id: str) -> str:
    vendor, product = usb_id.split(":")
    return (
        f'SUBSYSTEM=="usb", ATTRS{{idVendor}}=="{vendor}", ATTRS{{idProduct}}=="{product}", '
        'MODE="0660", GROUP="plugdev", TAG+="uaccess"'
    )


def nfc_kernel_modules() -> list[str]:
    """Every kernel module some profile says claims a reader."""
    return sorted({m for p in default_profiles() for m in p.kernel_modules})


def doctor_checks(runtime_dir: Path | None) -> list[Check]:
    """Everything that keeps nfcpy from a reader on this host, with fixes."""
    checks = [_check_profiles()]
    try:
        version = libusb_version()
    except errors.ReaderNotFound:
        checks.append(Check("libusb", "problem", "libusb-1.0 is not installed", (LIBUSB_FIX,)))
        readers: list[UsbReader] = []
    else:
        checks.append(Check("libusb", "ok", f"libusb {version}"))
        readers = usb_readers()
        checks.append(_check_presence(readers))
        checks += [_check_access(reader) for reader in readers]
    checks.append(_check_modules(readers))
    checks.append(_check_pcscd(readers))
    checks.append(_check_virtual_fields(runtime_dir))
    return checks


def _check_virtual_fields(runtime_dir: Path | None) -> Check:
    """Virtual readers need a private directory for their fields' sockets, nothing else."""
    from nfcpay.transport.virtual.broker import default_field_dir

    try:
        directory = default_field_dir(runtime_dir)
    except (OSError, ValueError) as exc:
        return Check(
            "virtual readers",
            "problem",
            f"no private directory for virtual fields: {exc}",
            ("set XDG_RUNTIME_DIR (or TMPDIR) to a directory only you can write",),
        )
    running = sorted(p.stem for p in directory.glob("*.sock"))
    detail = f"fields in {directory}" + (f"; running: {', '.join(running)}" if running else "")
    return Check("virtual readers", "ok", f"{detail} (--device virtual:acr122u@NAME)")


def _check_profiles() -> Check:
    problems = check_profiles()
    if problems:
        return Check(
            "profiles",
            "problem",
            "; ".join(p.message for p in problems),
            ("fix the named field (see firmware_profiles/README.md)",),
        )
    return Check("profiles", "ok", f"{len(default_profiles())} firmware profiles valid")


def _check_presence(readers: list[UsbReader]) -> Check:
    if not readers:
        return Check(
            "readers",
            "info",
            "no supported USB reader found",
            (
                "plug in an RC-S380, ACR122U, SCL3711 or another supported reader",
                "serial PN532 boards are not auto-detected: use --device tty:USB0:pn532",
                "no reader at all? use a virtual one: --device virtual:acr122u@counter "
                "(or the fast loopback reader: --device loopback:54321)",
            ),
        )
    names = ", ".join(f"{r.profile.name if r.profile else r.driver} at {r.path}" for r in readers)
    unmatched = [r for r in readers if r.profile is None]
    if unmatched:
        return Check(
            "readers",
            "problem",
            f"no firmware profile for {unmatched[0].usb_id}",
            ("add a profile to firmware_profiles/ (see its README)",),
        )
    return Check("readers", "ok", names)


def _check_access(reader: UsbReader) -> Check:
    name = f"permissions {reader.path}"
    if reader.accessible:
        return Check(name, "ok", f"{reader.devnode} is readable and writable")
    return Check(
        name,
        "problem",
        f"no read/write access to {reader.devnode}",
        (
            f"sudo {SETUP_SCRIPT}   (installs {UDEV_RULES})",
            f"or: echo '{udev_rule(reader.usb_id)}' | sudo tee -a {UDEV_RULES} && "
            "sudo udevadm control -R && sudo udevadm trigger   # then re-plug the reader",
        ),
    )


def _check_modules(readers: list[UsbReader]) -> Check:
    claiming = sorted(loaded_modules() & set(nfc_kernel_modules()) - {"nfc"})
    if not claiming:
        return Check("kernel modules", "ok", "no NFC kernel driver (pn533_usb, port100) loaded")
    status = "problem" if readers else "info"
    unload = " ".join(claiming)
    return Check(
        "kernel modules",
        status,
        f"loaded: {unload} — they claim the reader before nfcpy can",
        (f"sudo modprobe -r {unload}", f"sudo {SETUP_SCRIPT}   (blacklists them in {BLACKLIST})"),
    )


def _check_pcscd(readers: list[UsbReader]) -> Check:
    if not pcscd_running():
        return Check("pcscd", "ok", "pcscd is not running")
    grabbed = [r.profile.name for r in readers if r.profile and r.profile.pcscd]
    return Check(
        "pcscd",
        "problem" if grabbed else "info",
        "pcscd is running" + (f" and holds {grabbed[0]}" if grabbed else ""),
        (
            "sudo systemctl stop pcscd.socket pcscd.service",
            "sudo systemctl disable pcscd.socket pcscd.service   # while nfcpay uses the reader",
        ),
    )
