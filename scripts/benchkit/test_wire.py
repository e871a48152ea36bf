"""The wire module against bytes that crates/frame-wire's encoder made.

REFERENCE is the output of `cargo run -p frame-wire --example wire_reference`
(fixed key, times and nonce); if the format changes there, this fails until
wire.py follows.

    python3 -m unittest discover -s scripts -p "test_*.py"
"""
import pathlib
import sys
import unittest

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent))

from benchkit import wire  # noqa: E402

REFERENCE = {
    "key_id": "9523be8a",
    "frame_topic": "662f63616d302f",
    "frame_header": ("032a0000000000000015cd853dfe9c971700050000d0020000efbeadde000000"
                     "00040000000000000063616d30"),
    "frame_mac": ("019523be8a216ab026fa13f00d736d1bb895d6bc82d36be5424a3eecf35e507d"
                  "906ac94097"),
    "preview_topic": "702f63616d302f",
    "detections_topic": "642f63616d302f",
    "detections_payload": ("0d0000000000000062656e63682d6f7665726c61790200000000000000060000"
                           "0000000000706572736f6ec3f5683fcdcccc3dcdcc4c3ecdcc4c3e9a99193f03"
                           "00000000000000646f670000003f0000403f0000003f0000803e0000803e"),
    "detections_mac": ("019523be8a4d3912cc89a4b9c7eb61d7b5254f99c52c952699a105ce44c43e95"
                       "f65aaa134a"),
    "token": ("006d6a70662d6175746831203935323362653861303066313533363530303030"
              "3030303033303331333233333334333533363337333833393631363236333634"
              "3635363665666333336135653035333036343430613436333638303930366332"
              "3231323232663432653864363835646364313065653332303463656237393139"
              "35663933"),
}
KEY_FILE = "# reference key\n00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff\n"
JPEG = bytes([0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 0xFF, 0xD9])
HEAD = wire.Header(seq=42, capture_ts_ns=1_700_000_000_123_456_789, width=1280, height=720,
                   producer_id=0xDEADBEEF, stream="cam0")
BOXES = [("person", 0.91, 0.1, 0.2, 0.2, 0.6), ("dog", 0.5, 0.75, 0.5, 0.25, 0.25)]


def ref(name):
    return bytes.fromhex(REFERENCE[name])


class WireTest(unittest.TestCase):
    def setUp(self):
        self.keys = wire.parse_keys(KEY_FILE)
        self.key = self.keys[0]

    def test_header_is_the_rust_one(self):
        self.assertEqual(HEAD.encode(), ref("frame_header"))
        self.assertEqual(len(HEAD.encode()), 45)
        self.assertEqual(wire.Header.decode(ref("frame_header")), HEAD)

    def test_topics(self):
        self.assertEqual(wire.topic(wire.FRAME, "cam0"), ref("frame_topic"))
        self.assertEqual(wire.topic(wire.PREVIEW, "cam0"), ref("preview_topic"))
        self.assertEqual(wire.topic(wire.DETECTIONS, "cam0"), ref("detections_topic"))
        self.assertEqual(wire.subscription(wire.FRAME), b"f/")
        self.assertEqual(wire.parse_topic(b"d/cam0/"), (b"d", "cam0"))
        for bad in (b"cam0", b"f/cam0", b"f//", b"f/a b/"):
            with self.assertRaises(wire.WireError):
                wire.parse_topic(bad)

    def test_signed_frame_is_the_rust_one(self):
        self.assertEqual(wire.key_id(self.key), ref("key_id"))
        parts = wire.message(wire.FRAME, HEAD, JPEG, self.key)
        self.assertEqual(parts, [ref("frame_topic"), ref("frame_header"), JPEG, ref("frame_mac")])
        self.assertEqual(wire.decode_message(parts, self.keys), (wire.FRAME, HEAD, JPEG))

    def test_detections_are_the_rust_ones(self):
        payload = wire.encode_detections("bench-overlay", BOXES)
        self.assertEqual(payload, ref("detections_payload"))
        parts = wire.message(wire.DETECTIONS, HEAD, payload, self.key)
        self.assertEqual(parts[3], ref("detections_mac"))
        model, boxes = wire.decode_detections(payload)
        self.assertEqual(model, "bench-overlay")
        self.assertEqual([b.label for b in boxes], ["person", "dog"])
        self.assertAlmostEqual(boxes[0].score, 0.91, places=6)
        with self.assertRaises(wire.WireError):
            wire.decode_detections(payload + b"\0")
        with self.assertRaises(wire.WireError):
            wire.decode_detections(payload[:-1])

    def test_subscription_token_is_the_rust_one(self):
        token = wire.subscription_token(self.key, 1_700_000_000, b"0123456789abcdef")
        self.assertEqual(token, ref("token"))

    def test_receiver_checks(self):
        parts = wire.message(wire.FRAME, HEAD, JPEG, self.key)
        other = wire.parse_keys("ff" * 32)
        cases = [
            (parts[:3], self.keys, "unsigned"),
            (parts, None, "no_key"),
            (parts, other, "unknown_key"),
            (parts[:2] + [JPEG + b"x", parts[3]], self.keys, "bad_mac"),
            (parts[:2], None, "part_count"),
            ([b"f/cam1/", parts[1], JPEG], None, "topic_mismatch"),
            ([parts[0], parts[1] + b"x", JPEG], None, "bad_header"),
            ([parts[0], b"\x02" + parts[1][1:], JPEG], None, "version"),
        ]
        for msg, keys, reason in cases:
            with self.subTest(reason=reason):
                with self.assertRaises(wire.WireError) as e:
                    wire.decode_message(msg, keys)
                self.assertEqual(e.exception.reason, reason)

    def test_key_files(self):
        self.assertEqual(len(wire.parse_keys("# a\n\n" + "11" * 16 + "\n" + "22" * 32)), 2)
        for bad in ("", "# only a comment", "abc", "11" * 15, "\n".join(["11" * 16] * 3)):
            with self.subTest(text=bad), self.assertRaises(ValueError):
                wire.parse_keys(bad)


if __name__ == "__main__":
    unittest.main()
