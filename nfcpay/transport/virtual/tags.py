"""Virtual NFC tags: stickers that sit in a virtual RF field and answer readers.

Each tag is a :class:`~nfcpay.transport.virtual.field.Responder`: attach an antenna to a
:class:`~nfcpay.transport.virtual.field.Field` and ``antenna.listen(tag)``. Frames arrive
as nfcpy's drivers hand them to a chip (no CRC; FeliCa frames start with their length
byte), and the tag answers at once or stays silent — the way a tag's hardware does. Like a
sticker, a tag keeps its memory when the field goes off; only its protocol state resets.

* :class:`Ntag21x` — NXP NTAG215 (504 bytes of user memory) or NTAG216 (888 bytes), an
  NFC Forum Type 2 Tag at 106 kbps Type A, delivered as from the factory: capability
  container, an empty NDEF TLV on page 4, lock and configuration pages at their defaults.
* :class:`FelicaLiteS` — Sony FeliCa Lite-S (RC-S966), an NFC Forum Type 3 Tag at 212 and
  424 kbps, formatted for NDEF and empty.

:func:`make_tag` builds one by name. What is not emulated is listed on each class.
"""

from __future__ import annotations

import enum
import struct
import threading
from collections.abc import Callable
from dataclasses import dataclass

from nfcpay.transport.virtual.field import SILENT, AirFrame, Reply

# -- NTAG21x ------------------------------------------------------------------------------


@dataclass(frozen=True)
class NtagModel:
    """What tells the NTAG21x products apart: their memory size and identity."""

    name: str
    pages: int  # all pages, UID to PACK
    version: bytes  # GET_VERSION answer
    cc_size: int  # capability container byte 2: the NDEF data area in units of 8 bytes

    @property
    def dynamic_lock_page(self) -> int:
        return self.pages - 5

    @property
    def cfg0(self) -> int:
        return self.pages - 4

    @property
    def cfg1(self) -> int:
        return self.pages - 3

    @property
    def pwd(self) -> int:
        return self.pages - 2

    @property
    def pack(self) -> int:
        return self.pages - 1

    @property
    def user_bytes(self) -> int:
        return (self.dynamic_lock_page - 4) * 4


NTAG215 = NtagModel("NTAG215", 135, bytes.fromhex("0004040201001103"), 0x3E)
NTAG216 = NtagModel("NTAG216", 231, bytes.fromhex("0004040201001303"), 0x6D)

ATQA = bytes.fromhex("4400")  # SENS_RES of a double-size (7-byte) UID Type 2 Tag
REQA, WUPA, HLTA = b"\x26", b"\x52", b"\x50\x00"
CASCADE_TAG = 0x88
SAK_CASCADE, SAK_COMPLETE = b"\x04", b"\x00"
#: 4-bit answers (no CRC on the air): ACK, and NAK "invalid argument" (bad page address,
#: locked or protected page, wrong password).
ACK, NAK = b"\x0a", b"\x00"

INTERNAL = 0x48  # page 2, byte 1, as NXP programs it
DYNAMIC_LOCK_RFUI = 0xBD  # byte 3 of the dynamic lock page, as delivered
CFG0_DEFAULT = bytes.fromhex("040000ff")  # STRG_MOD_EN set, no mirror, AUTH0 = FFh (off)
CFG1_DEFAULT = bytes.fromhex("00050000")  # ACCESS: no PROT, no CFGLCK
PWD_DEFAULT = bytes.fromhex("ffffffff")
EMPTY_NDEF_TLV = bytes.fromhex("0300fe00")
PROT, CFGLCK = 0x80, 0x40  # ACCESS bits
PAGES_PER_DYNAMIC_LOCK_BIT = 16  # NTAG215 and NTAG216
#: Static lock bits (LOCK0 | LOCK1 << 8) that each block-locking bit freezes: BL-CC
#: freezes L-CC, BL9-4 freezes L4-L9, BL15-10 freezes L10-L15.
BLOCK_LOCKS = {0x0001: 0x0008, 0x0002: 0x03F0, 0x0004: 0xFC00}
DEFAULT_UID = bytes.fromhex("04a1b2c3d4e580")


class Iso14443State(enum.Enum):
    """ISO/IEC 14443-3 card states (READY split by cascade level)."""

    IDLE = "idle"
    READY1 = "ready1"
    READY2 = "ready2"
    ACTIVE = "active"
    HALT = "halt"


class _Fault(Exception):
    """A command the tag refuses: it answers ``reply`` and falls back to IDLE or HALT."""

    def __init__(self, reply: Reply = SILENT) -> None:
        super().__init__(reply)
        self.reply = reply


def _bcc(data: bytes) -> int:
    return data[0] ^ data[1] ^ data[2] ^ data[3]


class Ntag21x:
    """An NTAG215/NTAG216 (see :data:`NTAG215`, :data:`NTAG216`) as a field responder.

    Activation follows ISO/IEC 14443-3 with a 7-byte UID: REQA wakes an IDLE tag, WUPA
    also a HALTed one; CL1 anticollision answers ``88 UID0-2 BCC0`` and the select SAK
    ``04`` (more UID follows), CL2 answers ``UID3-6 BCC1`` and SAK ``00``. In ACTIVE the
    tag runs READ (16 bytes, rolling over at the end of the accessible memory),
    FAST_READ, WRITE (4-bit ACK), GET_VERSION, READ_SIG, PWD_AUTH and HLTA. A frame it
    does not understand sends it back to IDLE (HALT if it was woken from HALT) without an
    answer; a command it understands but refuses gets a 4-bit NAK and does the same —
    which is why nfcpy senses the tag again after either. Lock bits (static, with their
    block-locking bits, and dynamic) are enforced, and so are CFGLCK, AUTH0 and PROT from
    the activation after they were written; PWD and PACK read as zeros.

    Not emulated: COMPATIBILITY_WRITE, READ_CNT and the NFC counter, the UID mirror,
    AUTHLIM (failed PWD_AUTH attempts are not counted), the dynamic block-locking bits,
    the bit-oriented anticollision frames below a full UID (nfcpy never sends them).
    The originality signature is whatever ``signature`` is (NXP's key signs real ones).
    """

    def __init__(
        self,
        model: NtagModel = NTAG215,
        *,
        uid: bytes = DEFAULT_UID,
        signature: bytes = bytes(32),
    ) -> None:
        if len(uid) != 7 or uid[0] == CASCADE_TAG:
            raise ValueError("an NTAG21x UID is 7 bytes and does not start with 88h")
        if len(signature) != 32:
            raise ValueError("the originality signature is 32 bytes")
        self.model = model
        self.uid = bytes(uid)
        self.signature = bytes(signature)
        self._lock = threading.Lock()
        self._memory = bytearray(_factory_image(model, self.uid))
        self._state = Iso14443State.IDLE
        self._woken_from_halt = False
        self._authenticated = False
        self._auth0, self._access = self._configuration()
        self._commands: dict[int, Callable[[bytes], Reply]] = {
            0x30: self._read,
            0x3A: self._fast_read,
            0xA2: self._write,
            0x60: self._get_version,
            0x3C: self._read_sig,
            0x1B: self._pwd_auth,
            0x50: self._halt,
        }

    @property
    def memory(self) -> bytes:
        """All pages as stored (PWD and PACK included, which READ never shows)."""
        with self._lock:
            return bytes(self._memory)

    @memory.setter
    def memory(self, image: bytes) -> None:
        """Load a whole memory image (a sticker carried over from another field)."""
        with self._lock:
            if len(image) != len(self._memory):
                raise ValueError(f"{len(self._memory)} bytes of memory, not {len(image)}")
            self._memory[:] = image

    @property
    def state(self) -> Iso14443State:
        with self._lock:
            return self._state

    # -- field.Responder ------------------------------------------------------------------

    def respond(self, frame: AirFrame, exchange_id: int) -> Reply:
        if frame.brty != "106A":
            return SILENT
        with self._lock:
            try:
                return self._hear(frame.data)
            except _Fault as fault:
                self._fall_back()
                return fault.reply

    def field_changed(self, on: bool) -> None:
        with self._lock:
            self._state = Iso14443State.IDLE
            self._woken_from_halt = False
            self._authenticated = False

    # -- ISO/IEC 14443-3 ----------------------------------------------------------------------

    def _hear(self, data: bytes) -> Reply:
        if self._state is Iso14443State.IDLE:
            return self._wake(data, REQA, WUPA)
        if self._state is Iso14443State.HALT:
            return self._wake(data, WUPA)
        if self._state is Iso14443State.READY1:
            return self._anticollision(data, 0x93, self._cl1, Iso14443State.READY2, SAK_CASCADE)
        if self._state is Iso14443State.READY2:
            return self._anticollision(data, 0x95, self._cl2, Iso14443State.ACTIVE, SAK_COMPLETE)
        command = self._commands.get(data[0]) if data else None
        if command is None:
            raise _Fault()
        return command(data)

    def _wake(self, data: bytes, *wake_up: bytes) -> Reply:
        if data not in wake_up:
            return SILENT
        self._woken_from_halt = self._state is Iso14443State.HALT
        self._state = Iso14443State.READY1
        self._auth0, self._access = self._configuration()
        return ATQA

    def _anticollision(
        self, data: bytes, sel: int, uid_cln: bytes, selected: Iso14443State, sak: bytes
    ) -> Reply:
        if data == bytes([sel, 0x20]):
            return uid_cln
        if data == bytes([sel, 0x70]) + uid_cln:
            self._state = selected
            return sak
        raise _Fault()  # another tag's UID, or a frame out of sequence

    @property
    def _cl1(self) -> bytes:
        part = bytes([CASCADE_TAG]) + self.uid[0:3]
        return part + bytes([_bcc(part)])

    @property
    def _cl2(self) -> bytes:
        part = self.uid[3:7]
        return part + bytes([_bcc(part)])

    def _fall_back(self) -> None:
        self._state = Iso14443State.HALT if self._woken_from_halt else Iso14443State.IDLE
        self._authenticated = False

    # -- NTAG commands ----------------------------------------------------------------------

    def _read(self, data: bytes) -> Reply:
        (page,) = _arguments(data, 1)
        end = self._readable_end()
        if page >= end:
            raise _Fault(NAK)
        return b"".join(self._page_out((page + i) % end) for i in range(4))

    def _fast_read(self, data: bytes) -> Reply:
        start, stop = _arguments(data, 2)
        if not start <= stop < self._readable_end():
            raise _Fault(NAK)
        return b"".join(self._page_out(page) for page in range(start, stop + 1))

    def _write(self, data: bytes) -> Reply:
        if len(data) != 6:
            raise _Fault()
        page, content = data[1], data[2:6]
        if not 2 <= page < self.model.pages or self._write_protected(page):
            raise _Fault(NAK)
        self._store(page, content)
        return ACK

    def _get_version(self, data: bytes) -> Reply:
        _arguments(data, 0)
        return self.model.version

    def _read_sig(self, data: bytes) -> Reply:
        (address,) = _arguments(data, 1)
        if address != 0:
            raise _Fault(NAK)
        return self.signature

    def _pwd_auth(self, data: bytes) -> Reply:
        if len(data) != 5:
            raise _Fault()
        if data[1:5] != self._page(self.model.pwd):
            raise _Fault(NAK)
        self._authenticated = True
        return self._page(self.model.pack)[0:2]

    def _halt(self, data: bytes) -> Reply:
        if data != HLTA:
            raise _Fault()
        self._state = Iso14443State.HALT
        self._authenticated = False
        return SILENT

    # -- memory -------------------------------------------------------------------------------

    def _page(self, page: int) -> bytes:
        return bytes(self._memory[page * 4 : page * 4 + 4])

    def _page_out(self, page: int) -> bytes:
        """A page as READ shows it: PWD and PACK always read as zeros."""
        return bytes(4) if page in (self.model.pwd, self.model.pack) else self._page(page)

    def _configuration(self) -> tuple[int, int]:
        """AUTH0 and ACCESS as stored; the tag latches them when it wakes up, so a
        configuration written now counts from the next activation (nfcpy's ``protect``
        writes AUTH0 before the pages after it, and relies on that)."""
        return self._memory[self.model.cfg0 * 4 + 3], self._memory[self.model.cfg1 * 4]

    def _readable_end(self) -> int:
        """One past the last page READ may show (AUTH0 when read access needs PWD_AUTH)."""
        if self._access & PROT and not self._authenticated:
            return min(self._auth0, self.model.pages)
        return self.model.pages

    def _write_protected(self, page: int) -> bool:
        if page >= self._auth0 and not self._authenticated:
            return True
        if 3 <= page <= 15:
            return bool(self._static_lock >> page & 1)
        if 16 <= page < self.model.dynamic_lock_page:
            return bool(self._dynamic_lock >> (page - 16) // PAGES_PER_DYNAMIC_LOCK_BIT & 1)
        if page in (self.model.cfg0, self.model.cfg1):
            return bool(self._access & CFGLCK)
        return False

    @property
    def _static_lock(self) -> int:
        """LOCK0 | LOCK1 << 8: bit n (3 to 15) locks page n; bits 0-2 block-lock."""
        return int.from_bytes(self._memory[10:12], "little")

    @property
    def _dynamic_lock(self) -> int:
        """LOCK2 | LOCK3 << 8: bit n locks 16 pages from page 16 + 16n."""
        return int.from_bytes(self._page(self.model.dynamic_lock_page)[0:2], "little")

    def _store(self, page: int, content: bytes) -> None:
        old = self._page(page)
        if page == 2:
            new = old[0:2] + self._lock_bits(int.from_bytes(content[2:4], "little"))
        elif page == 3:  # the capability container is one-time programmable
            new = bytes(a | b for a, b in zip(old, content, strict=True))
        elif page == self.model.dynamic_lock_page:
            new = bytes(a | b for a, b in zip(old[0:3], content, strict=False)) + old[3:4]
        elif page == self.model.pack:
            new = content[0:2] + old[2:4]
        else:
            new = content
        self._memory[page * 4 : page * 4 + 4] = new

    def _lock_bits(self, requested: int) -> bytes:
        """Static lock bits only ever set, and not those a block-locking bit froze."""
        current = self._static_lock
        frozen = 0
        for block_lock, locks in BLOCK_LOCKS.items():
            if current & block_lock:
                frozen |= locks
        return (current | requested & ~frozen).to_bytes(2, "little")


def _arguments(data: bytes, count: int) -> bytes:
    """A command's argument bytes; a frame of the wrong length is not understood."""
    if len(data) != 1 + count:
        raise _Fault()
    return data[1:]


def _factory_image(model: NtagModel, uid: bytes) -> bytes:
    """The memory as NXP delivers it, NDEF-formatted and empty."""
    cl1, cl2 = bytes([CASCADE_TAG]) + uid[0:3], uid[3:7]
    pages = [
        uid[0:3] + bytes([_bcc(cl1)]),
        cl2,
        bytes([_bcc(cl2), INTERNAL, 0, 0]),
        bytes([0xE1, 0x10, model.cc_size, 0x00]),
        EMPTY_NDEF_TLV,
    ]
    pages += [bytes(4)] * (model.dynamic_lock_page - len(pages))
    pages += [
        bytes([0, 0, 0, DYNAMIC_LOCK_RFUI]),
        CFG0_DEFAULT,
        CFG1_DEFAULT,
        PWD_DEFAULT,
        bytes(4),
    ]
    return b"".join(pages)


# -- FeliCa Lite-S ------------------------------------------------------------------------

#: PMm of a FeliCa Lite-S: IC type F1h in byte 1; bytes 5 and 6 set the response times
#: nfcpy derives its read and write timeouts from.
LITE_S_PMM = bytes.fromhex("00f1000000014300")
DEFAULT_IDM = bytes.fromhex("012e4cd3a1b2c3d4")
NDEF_SYSTEM_CODE, LITE_S_SYSTEM_CODE = 0x12FC, 0x88B4
NDEF_READ_SERVICE, NDEF_WRITE_SERVICE = 0x000B, 0x0009
POLLING, READ, WRITE = 0x00, 0x06, 0x08
USER_BLOCKS = range(0x00, 0x0E)  # S_PAD0 to S_PAD13; block 0 holds the NDEF attributes
REG, ID, D_ID, SER_C, SYS_C, CKV, MC = 0x0E, 0x82, 0x83, 0x84, 0x85, 0x86, 0x88
MAX_READ_BLOCKS, MAX_WRITE_BLOCKS = 4, 1
#: Memory configuration with NDEF enabled (SYS_OP = 01h): every S_PAD readable and
#: writable without MAC, system blocks writable, RF parameter 07h.
MC_NDEF = bytes.fromhex("ffffff01070000000000000000000000")
#: Communication performance (polling request code 2): 212 and 424 kbps.
COMMUNICATION_PERFORMANCE = bytes.fromhex("0003")
# Status flag 2 values.
ILLEGAL_SERVICE_COUNT, ILLEGAL_BLOCK_COUNT, ILLEGAL_BLOCK_LIST = 0xA1, 0xA2, 0xA3
ILLEGAL_SERVICE_CODE, ILLEGAL_BLOCK_NUMBER = 0xA6, 0xA8


class _Status(Exception):
    """A FeliCa command that fails with status flags (flag 1: FFh or the failing block)."""

    def __init__(self, flag2: int, flag1: int = 0xFF) -> None:
        super().__init__(f"{flag1:02X} {flag2:02X}")
        self.flags = bytes([flag1, flag2])


def ndef_attribute_block(*, nbr: int, nbw: int, nmaxb: int, ln: int = 0) -> bytes:
    """A Type 3 Tag attribute information block (version 1.0, not writing, read/write)."""
    head = struct.pack(">BBBH4xBB", 0x10, nbr, nbw, nmaxb, 0x00, 0x01) + ln.to_bytes(3, "big")
    return head + struct.pack(">H", sum(head))


class FelicaLiteS:
    """A FeliCa Lite-S (RC-S966) formatted for NDEF, as a field responder.

    It answers Polling at 212F and 424F for its system code (12FCh while MC's SYS_OP
    enables NDEF, else 88B4h, FFh a wildcard per byte) with request codes 0-2, and Read
    Without Encryption (services 000Bh and 0009h, one to four blocks) and Write Without
    Encryption (service 0009h, one block) addressed to its IDm. Readable blocks: S_PAD0-13
    (block 0 is the NDEF attribute block, nbr 4, nbw 1, nmaxb 13), REG, ID, D_ID, SER_C,
    SYS_C, CKV and MC; writable: S_PADs whose MC read/write bit is set and whose MC
    write-with-MAC bit is clear, and CKV and MC while MC byte 2 is FFh. A FeliCa card has
    no selection state, so the field going off changes nothing.

    Not emulated: MAC and mutual authentication (RC, MAC, CK, WCNT, MAC_A, STATE: a
    password-protected nfcpy ``protect`` fails), REG's subtraction (REG reads back, writes
    are refused), MC's one-way bits, time slots (the field's lowest answer stands in).
    """

    def __init__(self, *, idm: bytes = DEFAULT_IDM, pmm: bytes = LITE_S_PMM) -> None:
        if len(idm) != 8 or len(pmm) != 8:
            raise ValueError("IDm and PMm are 8 bytes each")
        self.idm, self.pmm = bytes(idm), bytes(pmm)
        self._lock = threading.Lock()
        self._blocks = {number: bytearray(16) for number in (*USER_BLOCKS, REG)}
        self._blocks[0][:] = ndef_attribute_block(nbr=4, nbw=1, nmaxb=len(USER_BLOCKS) - 1)
        self._blocks[ID] = bytearray(self.idm + bytes(8))  # IDd, DFC 0000h, free bytes
        self._blocks[D_ID] = bytearray(self.idm + self.pmm)
        self._blocks[SER_C] = bytearray(NDEF_READ_SERVICE.to_bytes(2, "little") + bytes(14))
        self._blocks[CKV] = bytearray(16)
        self._blocks[MC] = bytearray(MC_NDEF)

    @property
    def memory(self) -> bytes:
        """S_PAD0 to S_PAD13: the NDEF attribute block and the 13 NDEF data blocks."""
        with self._lock:
            return b"".join(bytes(self._blocks[number]) for number in USER_BLOCKS)

    @memory.setter
    def memory(self, image: bytes) -> None:
        """Load S_PAD0 to S_PAD13 (a card carried over from another field)."""
        with self._lock:
            if len(image) != 16 * len(USER_BLOCKS):
                raise ValueError(f"{16 * len(USER_BLOCKS)} bytes of memory, not {len(image)}")
            for index, number in enumerate(USER_BLOCKS):
                self._blocks[number][:] = image[16 * index : 16 * index + 16]

    def block(self, number: int) -> bytes:
        """One block as Read Without Encryption would show it (KeyError if none)."""
        with self._lock:
            return self._read_block(number)

    @property
    def system_code(self) -> int:
        return NDEF_SYSTEM_CODE if self._blocks[MC][3] & 0x01 else LITE_S_SYSTEM_CODE

    # -- field.Responder ------------------------------------------------------------------

    def respond(self, frame: AirFrame, exchange_id: int) -> Reply:
        data = frame.data
        if frame.brty not in ("212F", "424F") or len(data) < 2 or data[0] != len(data):
            return SILENT
        with self._lock:
            if data[1] == POLLING:
                return self._polling(data)
            if len(data) < 10 or data[2:10] != self.idm or data[1] not in (READ, WRITE):
                return SILENT
            try:
                body = self._read(data[10:]) if data[1] == READ else self._write(data[10:])
            except _Status as status:
                body = status.flags
            except (IndexError, ValueError):
                return SILENT  # a truncated frame: the card does not answer it
        return _frame(data[1] + 1, self.idm + body)

    def field_changed(self, on: bool) -> None:
        """Nothing to do: a FeliCa card keeps no activation state."""

    # -- commands -------------------------------------------------------------------------

    def _polling(self, data: bytes) -> Reply:
        if len(data) != 6:
            return SILENT
        wanted, have = data[2:4], self.system_code.to_bytes(2, "big")
        if any(want not in (0xFF, mine) for want, mine in zip(wanted, have, strict=True)):
            return SILENT
        extra = {1: have, 2: COMMUNICATION_PERFORMANCE}.get(data[4], b"")
        return _frame(POLLING + 1, self.idm + self.pmm + extra)

    def _read(self, params: bytes) -> bytes:
        blocks, rest = _block_list(params, (NDEF_READ_SERVICE, NDEF_WRITE_SERVICE))
        if not 1 <= len(blocks) <= MAX_READ_BLOCKS or rest:
            raise _Status(ILLEGAL_BLOCK_COUNT)
        data = b""
        for index, number in enumerate(blocks):
            if not self._readable(number):
                raise _Status(ILLEGAL_BLOCK_NUMBER, 1 << index)
            data += self._read_block(number)
        return b"\x00\x00" + bytes([len(blocks)]) + data

    def _write(self, params: bytes) -> bytes:
        blocks, data = _block_list(params, (NDEF_WRITE_SERVICE,))
        if not 1 <= len(blocks) <= MAX_WRITE_BLOCKS or len(data) != 16 * len(blocks):
            raise _Status(ILLEGAL_BLOCK_COUNT)
        for index, number in enumerate(blocks):
            if not self._writable(number):
                raise _Status(ILLEGAL_BLOCK_NUMBER, 1 << index)
        for index, number in enumerate(blocks):
            self._blocks[number][:] = data[16 * index : 16 * index + 16]
        return b"\x00\x00"

    # -- memory -------------------------------------------------------------------------------

    def _read_block(self, number: int) -> bytes:
        if number == SYS_C:
            return self.system_code.to_bytes(2, "big") + bytes(14)
        return bytes(self._blocks[number])

    def _mc_bits(self, offset: int) -> int:
        return int.from_bytes(self._blocks[MC][offset : offset + 2], "little")

    def _readable(self, number: int) -> bool:
        if number in USER_BLOCKS:
            return not self._mc_bits(6) >> number & 1  # set: reads need a MAC
        return number == SYS_C or number in self._blocks

    def _writable(self, number: int) -> bool:
        if number in USER_BLOCKS:
            return bool(self._mc_bits(0) >> number & 1) and not self._mc_bits(8) >> number & 1
        return number in (CKV, MC) and self._blocks[MC][2] == 0xFF


def _block_list(params: bytes, services: tuple[int, ...]) -> tuple[list[int], bytes]:
    """Block numbers of a one-service block list, and the bytes after it.

    Raises IndexError/ValueError when the list is truncated, :class:`_Status` when it
    names services or blocks the card does not have.
    """
    if params[0] != 1:
        raise _Status(ILLEGAL_SERVICE_COUNT)
    if int.from_bytes(params[1:3], "little") not in services:
        raise _Status(ILLEGAL_SERVICE_CODE, 0x01)
    count, offset = params[3], 4
    numbers = []
    for index in range(count):
        head = params[offset]
        if head & 0x7F:  # access mode or a service index other than the one service
            raise _Status(ILLEGAL_BLOCK_LIST, 1 << index % 8)
        size = 2 if head & 0x80 else 3
        if offset + size > len(params):
            raise ValueError("truncated block list")
        numbers.append(int.from_bytes(params[offset + 1 : offset + size], "little"))
        offset += size
    return numbers, params[offset:]


def _frame(code: int, body: bytes) -> bytes:
    return bytes([len(body) + 2, code]) + body


# -- by name ------------------------------------------------------------------------------

Tag = Ntag21x | FelicaLiteS

_KINDS: dict[str, Callable[[], Tag]] = {
    "ntag215": lambda: Ntag21x(NTAG215),
    "ntag216": lambda: Ntag21x(NTAG216),
    "felica-lite-s": FelicaLiteS,
}
KINDS = tuple(_KINDS)


def make_tag(kind: str) -> Tag:
    """A factory-fresh, NDEF-formatted, empty tag of ``kind`` (one of :data:`KINDS`)."""
    try:
        return _KINDS[kind]()
    except KeyError:
        raise ValueError(f"unknown tag kind {kind!r}; known kinds: {', '.join(KINDS)}") from None
