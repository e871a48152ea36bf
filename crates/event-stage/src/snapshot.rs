//! The last few full-size frames of each followed stream, to find an
//! event's best frame in: the detector analyses a frame and says so by its
//! capture time; the frame itself came straight from the producer and is
//! kept here, a bounded number per stream, only while something is followed.

use std::collections::{HashMap, VecDeque};

use frame_wire::Frame;

pub struct Frames {
    kept: usize,
    streams: HashMap<String, VecDeque<Frame>>,
}

impl Frames {
    pub fn new(kept: usize) -> Frames {
        Frames {
            kept: kept.max(1),
            streams: HashMap::new(),
        }
    }

    /// Keeps `frame`, forgetting the oldest of its stream beyond the bound.
    pub fn put(&mut self, frame: Frame) {
        let ring = self.streams.entry(frame.header.stream.clone()).or_default();
        if ring.len() >= self.kept {
            ring.pop_front();
        }
        ring.push_back(frame);
    }

    /// The frame of `stream` captured at exactly `ts`.
    pub fn exact(&self, stream: &str, ts: u64) -> Option<&Frame> {
        self.streams
            .get(stream)?
            .iter()
            .rev()
            .find(|f| f.header.capture_ts_ns == ts)
    }

    /// The frame of `stream` captured nearest to `ts`, if within `within_ns`.
    pub fn nearest(&self, stream: &str, ts: u64, within_ns: u64) -> Option<&Frame> {
        self.streams
            .get(stream)?
            .iter()
            .map(|f| (f.header.capture_ts_ns.abs_diff(ts), f))
            .filter(|(d, _)| *d <= within_ns)
            .min_by_key(|(d, _)| *d)
            .map(|(_, f)| f)
    }

    /// Drops every frame of `stream` (nothing followed there any more).
    pub fn forget(&mut self, stream: &str) {
        self.streams.remove(stream);
    }

    /// Frames held, all streams together.
    pub fn len(&self) -> usize {
        self.streams.values().map(VecDeque::len).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use frame_wire::FrameHeader;

    fn frame(stream: &str, ts: u64) -> Frame {
        Frame {
            header: FrameHeader {
                version: frame_wire::KIND_VERSION,
                seq: ts,
                capture_ts_ns: ts,
                width: 4,
                height: 4,
                producer_id: 1,
                stream: stream.into(),
            },
            jpeg: bytes::Bytes::from_static(&[0xFF, 0xD8, 0xFF, 0xD9]),
        }
    }

    #[test]
    fn keeps_a_bounded_number_per_stream_and_finds_by_capture_time() {
        let mut f = Frames::new(3);
        for ts in 1..=5 {
            f.put(frame("a", ts * 100));
        }
        f.put(frame("b", 250));
        assert_eq!(f.len(), 4);
        assert!(f.exact("a", 200).is_none(), "forgotten");
        assert_eq!(f.exact("a", 400).map(|x| x.header.seq), Some(400));
        assert_eq!(f.nearest("a", 420, 50).map(|x| x.header.seq), Some(400));
        assert!(f.nearest("a", 1000, 50).is_none());
        f.forget("a");
        assert_eq!(f.len(), 1);
    }
}
