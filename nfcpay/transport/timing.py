"""Every timeout nfcpay sets on nfcpy, in one place (seconds unless noted).

nfcpy's defaults are tuned for a human holding a phone: the ``connect()`` loops listen for
1 s and poll 5 iterations 0.5 s apart, so a terminal that serves back-to-back taps would
spend about a second per cycle doing nothing. nfcpay drives the layers below ``connect()``
directly and uses the values below instead:

* the tapping side polls once at 106A and retries after ``POLL_PAUSE`` instead of nfcpy's
  DEP search (active mode, then 2x106A and 2x212F polls 100 ms apart);
* the waiting side listens in ``LISTEN_SLICE`` windows and re-arms at once after a tap;
* the loopback reader shortens the udp driver's 1 s wait for a poll answer to 20 ms
  (``nfcpy.LOOPBACK_SENSE_TIMEOUT``), as RF hardware gives up after milliseconds;
* the LLC answers a queued PDU at once and naps at most ``LLCP_IDLE_PACE`` when idle,
  instead of nfcpy's 50 ms, and the NFC-DEP target answers the final DISC without making
  the initiator wait one RWT (:mod:`nfcpay.transport.llc`).

What stays: NFC-DEP RWT of 77 ms (nfcpy's default wt=8), the limit for the target's answer
to each request; the idle pace stays far below it. LLCP LTO 500 ms (nfcpy's default).
Measured figures: ``scripts/bench_nfc.py`` and ``scripts/bench_charge.py``.
"""

from __future__ import annotations

#: One listen call (NFC-DEP target or Type 3 tag) before re-checking the tap deadline.
#: A tapping peer ends the call at once, so this only bounds how late a cancel is noticed.
LISTEN_SLICE = 0.5

#: Pause between two unanswered polls of a tapping (polling) side.
POLL_PAUSE = 0.01

#: A tapping side whose reader can listen listens this long after each unanswered poll,
#: so it also meets a waiting reader that can only poll (several of its polls fall in).
ALTERNATE_LISTEN = 0.1

#: LLCP link timeout announced to the peer (ms). nfcpy's default; the target's run loop
#: waits LTO + 10 ms for each PDU, so this is also how fast a vanished peer is noticed.
LLCP_LTO_MS = 500

#: Longest nap of an idle LLC before its next SYMM (nfcpy naps 50 ms once the link has
#: seen 10 SYMMs). A PDU queued meanwhile ends the nap at once, so this bounds how long a
#: side waits for the peer's turn: the tapping side's next SYMM is what lets the waiting
#: side send. Far inside the NFC-DEP RWT (77 ms) and the LTO; costs ~100 extra SYMM
#: exchanges a second on an idle link (loopback: under 5% of a core per side).
LLCP_IDLE_PACE = 0.005

#: LLCP link MIU announced (bytes). With a matching socket receive MIU a 600-byte message
#: crosses in one I-PDU (NFC-DEP chains it into 254-byte frames), instead of five
#: 128-byte I-PDUs each waiting for its acknowledgement.
LLCP_MIU = 1024

#: LLCP receive window of our data-link connections (1..15 I-PDUs in flight).
LLCP_RECV_WINDOW = 4

#: From link up to the peer opening (or accepting) our LLCP service.
LLCP_CONNECT_TIMEOUT = 2.0

#: Default wait for the peer to acknowledge a sent message (LLCP RR, or tag read done).
SEND_TIMEOUT = 3.0

#: A Type 3 tag emulation gives up on a reader that sends no command for this long.
TT3_COMMAND_TIMEOUT = 0.5

#: How often the Type 3 reader re-reads the attribute block while the tag is busy.
TT3_READ_PAUSE = 0.002

#: Granularity of blocking waits on nfcpy sockets, to notice a dead link promptly.
WAIT_SLICE = 0.05
