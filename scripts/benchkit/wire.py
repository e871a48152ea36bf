"""The frame bus's wire format, version 3, in Python (docs/wire-format.md).

The one copy for every script that publishes to or reads the bus: topics
(`f/<stream>/`, `p/<stream>/`, `d/<stream>/`), the binary header, the
detections payload, bus key files, the HMAC-SHA-256 4th part and the
subscription token. `crates/frame-wire` is the reference; `test_wire.py`
holds this module to bytes that crate's encoder made.

    head = wire.Header(seq, time.time_ns(), 640, 480, producer_id, "cam0")
    sock.send_multipart(wire.message(wire.FRAME, head, jpeg, key))
    kind, head, payload = wire.decode_message(sock.recv_multipart(), keys)
"""
import dataclasses
import hashlib
import hmac
import os
import pathlib
import secrets
import struct
import time

VERSION = 3
FRAME, PREVIEW, DETECTIONS = b"f", b"p", b"d"
KINDS = {FRAME: "frame", PREVIEW: "preview", DETECTIONS: "detections"}

# version, seq, capture_ts_ns, width, height, producer_id, name length; then the name.
_HEADER = struct.Struct("<BQQIIQQ")
MAX_HEADER_BYTES = 256
MAX_STREAM_NAME = 64
MAX_DIMENSION = 16384
MAX_BOXES = 256
MAX_LABEL = 64
MAX_DETECTIONS_BYTES = 32 * 1024

MIN_KEY_BYTES, MAX_KEY_BYTES, MAX_KEYS = 16, 256, 2
SCHEME_HMAC_SHA256 = 1
MAC_PART_BYTES = 1 + 4 + 32
TOKEN_PREFIX = b"\0mjpf-auth1 "
_FRAME_DOMAIN = b"mjpeg-fanout frame v2\0"
_TOKEN_DOMAIN = b"mjpeg-fanout subscribe v1\0"
_KEY_ID_DOMAIN = b"mjpeg-fanout key id\0"
_NAME_CHARS = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-.")


class WireError(ValueError):
    """A message a receiver drops; `reason` is the gateway's counter label."""

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def valid_stream_name(name: str) -> bool:
    raw = name.encode()
    return 1 <= len(raw) <= MAX_STREAM_NAME and all(b in _NAME_CHARS for b in raw)


def topic(kind: bytes, stream: str) -> bytes:
    """The topic of `kind` messages of `stream`: b"f/cam1/"."""
    return kind + b"/" + stream.encode() + b"/"


def subscription(kind: bytes, stream: str | None = None) -> bytes:
    """What to subscribe to for `kind` messages of one stream, or of all."""
    return topic(kind, stream) if stream is not None else kind + b"/"


def parse_topic(raw: bytes) -> tuple[bytes, str]:
    """(kind tag, stream name) of a version 3 topic."""
    if len(raw) < 4 or raw[1:2] != b"/" or not raw.endswith(b"/"):
        raise WireError("bad_topic", repr(raw[:80]))
    try:
        name = raw[2:-1].decode()
    except UnicodeDecodeError:
        raise WireError("bad_topic", repr(raw[:80])) from None
    if not valid_stream_name(name):
        raise WireError("stream_name", repr(name[:80]))
    return raw[:1], name


@dataclasses.dataclass(frozen=True)
class Header:
    """What is known about a frame besides its pixels (also the frame that
    a detections message was found in)."""

    seq: int
    capture_ts_ns: int
    width: int
    height: int
    producer_id: int
    stream: str
    version: int = VERSION

    def encode(self) -> bytes:
        name = self.stream.encode()
        return _HEADER.pack(self.version, self.seq, self.capture_ts_ns, self.width, self.height,
                            self.producer_id, len(name)) + name

    @staticmethod
    def decode(raw: bytes) -> "Header":
        """Parses a header completely (no trailing bytes), any version."""
        if len(raw) > MAX_HEADER_BYTES:
            raise WireError("header_too_large", f"{len(raw)} bytes")
        if len(raw) < _HEADER.size:
            raise WireError("bad_header", f"{len(raw)} bytes")
        version, seq, ts, w, h, pid, n = _HEADER.unpack_from(raw)
        if len(raw) != _HEADER.size + n:
            raise WireError("bad_header", f"name length {n} in {len(raw)} bytes")
        try:
            stream = raw[_HEADER.size:].decode()
        except UnicodeDecodeError:
            raise WireError("stream_name", "not UTF-8") from None
        return Header(seq, ts, w, h, pid, stream, version)


@dataclasses.dataclass(frozen=True)
class Box:
    """One detection: coordinates are fractions of the frame from its top-left."""

    label: str
    score: float
    x: float
    y: float
    w: float
    h: float


def _label(s: str) -> bytes:
    raw = s.encode()
    if not (1 <= len(raw) <= MAX_LABEL and all(0x20 <= b < 0x7F for b in raw)):
        raise WireError("bad_detections", f"label {s[:80]!r} is not 1-{MAX_LABEL} printable ASCII")
    return struct.pack("<Q", len(raw)) + raw


def encode_detections(model: str, boxes) -> bytes:
    """A detections payload; `boxes` are Box or (label, score, x, y, w, h)."""
    boxes = [b if isinstance(b, Box) else Box(*b) for b in boxes]
    if len(boxes) > MAX_BOXES:
        raise WireError("bad_detections", f"{len(boxes)} boxes")
    out = [_label(model), struct.pack("<Q", len(boxes))]
    for b in boxes:
        out += [_label(b.label), struct.pack("<fffff", b.score, b.x, b.y, b.w, b.h)]
    return b"".join(out)


def decode_detections(raw: bytes) -> tuple[str, list[Box]]:
    """(model, boxes) of a detections payload, read completely."""
    if len(raw) > MAX_DETECTIONS_BYTES:
        raise WireError("bad_detections", f"{len(raw)} bytes")
    at = 0

    def take(n):
        nonlocal at
        if at + n > len(raw):
            raise WireError("bad_detections", "truncated")
        at += n
        return raw[at - n:at]

    def label():
        (n,) = struct.unpack("<Q", take(8))
        if not 1 <= n <= MAX_LABEL:
            raise WireError("bad_detections", f"label of {n} bytes")
        return take(n).decode("ascii", "replace")

    model = label()
    (count,) = struct.unpack("<Q", take(8))
    if count > MAX_BOXES:
        raise WireError("bad_detections", f"{count} boxes")
    boxes = [Box(label(), *struct.unpack("<fffff", take(20))) for _ in range(count)]
    if at != len(raw):
        raise WireError("bad_detections", f"{len(raw) - at} trailing bytes")
    return model, boxes


# Keys: one hex key per line, at most two, blank lines and # comments skipped;
# the first signs, every one verifies.

def parse_keys(text: str) -> list[bytes]:
    keys = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = bytes.fromhex(line)
        except ValueError:
            key = b""
        if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
            raise ValueError(f"line {number}: a bus key is {MIN_KEY_BYTES}-{MAX_KEY_BYTES} bytes written as hex")
        if len(keys) == MAX_KEYS:
            raise ValueError(f"more than {MAX_KEYS} keys (one line each; the first signs)")
        keys.append(key)
    if not keys:
        raise ValueError("no key: the key file or variable is empty")
    return keys


def read_keys(path) -> list[bytes]:
    return parse_keys(pathlib.Path(path).read_text())


def new_key() -> bytes:
    return secrets.token_bytes(32)


def write_key_file(path, *keys: bytes) -> pathlib.Path:
    """Writes a key file by rename, so a service re-reading it never sees half."""
    path = pathlib.Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    tmp.write_text("".join(k.hex() + "\n" for k in keys))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path


def key_id(key: bytes) -> bytes:
    """The key's public 4-byte fingerprint."""
    return hashlib.sha256(_KEY_ID_DOMAIN + key).digest()[:4]


def _frame_mac(key: bytes, topic_: bytes, head: bytes, payload: bytes) -> bytes:
    m = hmac.new(key, _FRAME_DOMAIN, hashlib.sha256)
    for part in (topic_, head, payload):
        m.update(struct.pack("<Q", len(part)))
        m.update(part)
    return m.digest()


def mac_part(key: bytes, topic_: bytes, head: bytes, payload: bytes) -> bytes:
    """The 4th part of a signed message: scheme 1, key id, HMAC-SHA-256 tag."""
    return bytes([SCHEME_HMAC_SHA256]) + key_id(key) + _frame_mac(key, topic_, head, payload)


def verify_mac(keys, topic_: bytes, head: bytes, payload: bytes, mac: bytes) -> None:
    if len(mac) != MAC_PART_BYTES or mac[0] != SCHEME_HMAC_SHA256:
        raise WireError("bad_mac", "malformed MAC part")
    key = next((k for k in keys if key_id(k) == mac[1:5]), None)
    if key is None:
        raise WireError("unknown_key", mac[1:5].hex())
    if not hmac.compare_digest(_frame_mac(key, topic_, head, payload), mac[5:]):
        raise WireError("bad_mac")


def subscription_token(key: bytes, unix_secs: int | None = None, nonce: bytes | None = None) -> bytes:
    """The subscription a subscriber sends a keyed frame-producer to prove it holds `key`."""
    ts = struct.pack("<Q", int(time.time()) if unix_secs is None else unix_secs)
    nonce = secrets.token_bytes(16) if nonce is None else nonce
    tag = hmac.new(key, _TOKEN_DOMAIN + ts + nonce, hashlib.sha256).digest()
    return TOKEN_PREFIX + (key_id(key) + ts + nonce + tag).hex().encode()


def message(kind: bytes, head: Header, payload: bytes, key: bytes | None = None) -> list[bytes]:
    """One message of `kind` for `head`'s stream: 3 parts, or 4 signed with `key`."""
    topic_, raw = topic(kind, head.stream), head.encode()
    parts = [topic_, raw, payload]
    return parts if key is None else parts + [mac_part(key, topic_, raw, payload)]


def decode_message(parts, keys=None) -> tuple[bytes, Header, bytes]:
    """(kind, header, payload) of a version 3 message. With `keys` it must be
    signed by one of them; without, unsigned. Checks what a gateway checks,
    except the payload (a JPEG, or see decode_detections)."""
    parts = [bytes(p) for p in parts]
    if len(parts) not in (3, 4):
        raise WireError("part_count", str(len(parts)))
    if keys and len(parts) == 3:
        raise WireError("unsigned")
    if not keys and len(parts) == 4:
        raise WireError("no_key")
    if keys:
        verify_mac(keys, *parts)
    kind, name = parse_topic(parts[0])
    head = Header.decode(parts[1])
    if head.version != VERSION:
        raise WireError("version", str(head.version))
    if head.stream != name:
        raise WireError("topic_mismatch", f"{name!r} vs {head.stream!r}")
    if kind not in KINDS:
        raise WireError("unknown_kind", repr(kind))
    return kind, head, parts[2]
