//! The few Matroska (EBML) elements a recording needs, written and read by
//! hand: an MJPEG video track (`V_MJPEG`) whose blocks are the bus's JPEGs
//! byte for byte, in clusters of about a second, with millisecond
//! timestamps taken from the capture times. ffmpeg, ffprobe and VLC play
//! such a file as it is.
//!
//! Why not libavformat: the recorder needs the byte offset of every JPEG it
//! writes (the index that `frame?at=` and `stream?from=` read from without
//! demuxing), and it needs every cluster on disk in one `write` so that a
//! killed recorder leaves a file that ends at a whole cluster. libavformat's
//! Matroska muxer builds each cluster in a buffer of its own and reports
//! neither where a packet landed nor when a cluster reached the file. What
//! is written here is small and fixed: an EBML header, a Segment of unknown
//! size (legal, as in live streams), Info (with a Duration patched in when
//! the segment is finished), Tracks, then Clusters of known size holding
//! SimpleBlocks.
//!
//! [`scan`] reads such a file back cluster by cluster, stopping at the first
//! one that is not whole: that is how a segment cut short by a kill is
//! repaired (truncated there, its index rebuilt).

use std::fs::File;
use std::os::unix::fs::FileExt;

const EBML: u32 = 0x1A45_DFA3;
const EBML_VERSION: u32 = 0x4286;
const EBML_READ_VERSION: u32 = 0x42F7;
const EBML_MAX_ID_LENGTH: u32 = 0x42F2;
const EBML_MAX_SIZE_LENGTH: u32 = 0x42F3;
const DOC_TYPE: u32 = 0x4282;
const DOC_TYPE_VERSION: u32 = 0x4287;
const DOC_TYPE_READ_VERSION: u32 = 0x4285;
const SEGMENT: u32 = 0x1853_8067;
const INFO: u32 = 0x1549_A966;
const TIMESTAMP_SCALE: u32 = 0x2A_D7B1;
const MUXING_APP: u32 = 0x4D80;
const WRITING_APP: u32 = 0x5741;
const DURATION: u32 = 0x4489;
const DATE_UTC: u32 = 0x4461;
const TRACKS: u32 = 0x1654_AE6B;
const TRACK_ENTRY: u32 = 0xAE;
const TRACK_NUMBER: u32 = 0xD7;
const TRACK_UID: u32 = 0x73C5;
const TRACK_TYPE: u32 = 0x83;
const FLAG_LACING: u32 = 0x9C;
const CODEC_ID: u32 = 0x86;
const VIDEO: u32 = 0xE0;
const PIXEL_WIDTH: u32 = 0xB0;
const PIXEL_HEIGHT: u32 = 0xBA;
const CLUSTER: u32 = 0x1F43_B675;
const CLUSTER_TIMESTAMP: u32 = 0xE7;
const SIMPLE_BLOCK: u32 = 0xA3;

/// A Segment whose size is not known (every size bit set, 8 bytes).
const UNKNOWN_SIZE: [u8; 8] = [0x01, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF];
/// Nanoseconds from the Unix epoch to Matroska's (2001-01-01T00:00:00 UTC).
const MATROSKA_EPOCH_NS: i64 = 978_307_200 * 1_000_000_000;
/// Most a block's timestamp may differ from its cluster's (a signed 16-bit field, in ms).
pub const MAX_BLOCK_OFFSET_MS: u64 = 30_000;
/// The 4 bytes before a JPEG in a SimpleBlock: track 1, 16-bit offset, flags.
const BLOCK_HEAD: u64 = 4;

fn put_id(out: &mut Vec<u8>, id: u32) {
    let bytes = id.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count();
    out.extend_from_slice(&bytes[skip..]);
}

/// An EBML size in as few bytes as it takes (never the all-ones "unknown").
fn put_size(out: &mut Vec<u8>, size: u64) {
    let len = (1..=8u32)
        .find(|l| size < (1u64 << (7 * l)) - 1)
        .unwrap_or(8);
    let marked = size | (1u64 << (7 * len));
    out.extend_from_slice(&marked.to_be_bytes()[8 - len as usize..]);
}

fn put_element(out: &mut Vec<u8>, id: u32, body: &[u8]) {
    put_id(out, id);
    put_size(out, body.len() as u64);
    out.extend_from_slice(body);
}

fn put_uint(out: &mut Vec<u8>, id: u32, v: u64) {
    let bytes = v.to_be_bytes();
    let skip = bytes.iter().take_while(|b| **b == 0).count().min(7);
    put_element(out, id, &bytes[skip..]);
}

/// What a segment's header says about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Capture time of the segment's first frame, in ms since the Unix
    /// epoch; block timestamps count from it.
    pub start_ms: u64,
    pub width: u32,
    pub height: u32,
}

/// The bytes every segment (and clip) starts with, and where in them the
/// Duration's 8-byte float sits (to be patched when the length is known).
pub fn header(h: &Header, duration_ms: f64) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(256);
    let mut ebml = Vec::new();
    put_uint(&mut ebml, EBML_VERSION, 1);
    put_uint(&mut ebml, EBML_READ_VERSION, 1);
    put_uint(&mut ebml, EBML_MAX_ID_LENGTH, 4);
    put_uint(&mut ebml, EBML_MAX_SIZE_LENGTH, 8);
    put_element(&mut ebml, DOC_TYPE, b"matroska");
    put_uint(&mut ebml, DOC_TYPE_VERSION, 4);
    put_uint(&mut ebml, DOC_TYPE_READ_VERSION, 2);
    put_element(&mut out, EBML, &ebml);

    put_id(&mut out, SEGMENT);
    out.extend_from_slice(&UNKNOWN_SIZE);

    let mut info = Vec::new();
    put_uint(&mut info, TIMESTAMP_SCALE, 1_000_000);
    put_element(&mut info, MUXING_APP, b"frame-recorder");
    put_element(&mut info, WRITING_APP, b"frame-recorder");
    let date = (h.start_ms as i64)
        .saturating_mul(1_000_000)
        .saturating_sub(MATROSKA_EPOCH_NS);
    put_element(&mut info, DATE_UTC, &date.to_be_bytes());
    // Last in Info, so its value's place is simple to compute.
    put_element(&mut info, DURATION, &duration_ms.to_be_bytes());
    put_element(&mut out, INFO, &info);
    let duration_at = out.len() as u64 - 8;

    let mut video = Vec::new();
    put_uint(&mut video, PIXEL_WIDTH, u64::from(h.width.max(1)));
    put_uint(&mut video, PIXEL_HEIGHT, u64::from(h.height.max(1)));
    let mut track = Vec::new();
    put_uint(&mut track, TRACK_NUMBER, 1);
    put_uint(&mut track, TRACK_UID, 1);
    put_uint(&mut track, TRACK_TYPE, 1);
    put_uint(&mut track, FLAG_LACING, 0);
    put_element(&mut track, CODEC_ID, b"V_MJPEG");
    put_element(&mut track, VIDEO, &video);
    let mut tracks = Vec::new();
    put_element(&mut tracks, TRACK_ENTRY, &track);
    put_element(&mut out, TRACKS, &tracks);
    (out, duration_at)
}

/// One cluster: `frames` are (ms since the segment's start, JPEG), in
/// order, all within [`MAX_BLOCK_OFFSET_MS`] of the first. Returns the
/// bytes and where each JPEG starts in them.
pub fn cluster(frames: &[(u64, &[u8])]) -> (Vec<u8>, Vec<u64>) {
    let base = frames.first().map_or(0, |f| f.0);
    let mut body = Vec::with_capacity(frames.iter().map(|f| f.1.len() + 16).sum::<usize>() + 16);
    put_uint(&mut body, CLUSTER_TIMESTAMP, base);
    let mut at = Vec::with_capacity(frames.len());
    for (ms, jpeg) in frames {
        let rel = ms.saturating_sub(base).min(MAX_BLOCK_OFFSET_MS) as i16;
        put_id(&mut body, SIMPLE_BLOCK);
        put_size(&mut body, jpeg.len() as u64 + BLOCK_HEAD);
        body.push(0x81); // track 1
        body.extend_from_slice(&rel.to_be_bytes());
        body.push(0x80); // keyframe
        at.push(body.len() as u64);
        body.extend_from_slice(jpeg);
    }
    let mut out = Vec::with_capacity(body.len() + 12);
    put_id(&mut out, CLUSTER);
    put_size(&mut out, body.len() as u64);
    let head = out.len() as u64;
    out.extend_from_slice(&body);
    (out, at.into_iter().map(|a| a + head).collect())
}

/// Writes the Duration of a segment that has just been finished.
pub fn patch_duration(file: &File, at: u64, duration_ms: f64) -> std::io::Result<()> {
    file.write_all_at(&duration_ms.to_be_bytes(), at)
}

/// One JPEG found in a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// ms since the segment's start.
    pub ms: u64,
    pub offset: u64,
    pub len: u32,
}

/// What [`scan`] found.
#[derive(Debug, Default)]
pub struct Scan {
    pub header: Option<Header>,
    pub blocks: Vec<Block>,
    /// Length up to the end of the last whole cluster (or of the headers).
    pub good_len: u64,
    pub duration_at: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("not a recording (no EBML header or Segment)")]
    NotMatroska,
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

/// Reads an element head at `pos`: (id, size, bytes the head took). `None`
/// when the file ends within it or it is malformed. Unknown size is `u64::MAX`.
fn element_at(file: &File, pos: u64, len: u64) -> Option<(u32, u64, u64)> {
    let mut buf = [0u8; 12];
    let n = (len.saturating_sub(pos)).min(12) as usize;
    if n < 2 {
        return None;
    }
    file.read_exact_at(&mut buf[..n], pos).ok()?;
    let id_len = (buf[0].leading_zeros() + 1) as usize;
    if id_len > 4 || id_len >= n {
        return None;
    }
    let id = buf[..id_len]
        .iter()
        .fold(0u32, |a, b| (a << 8) | u32::from(*b));
    let first = buf[id_len];
    let size_len = (first.leading_zeros() + 1) as usize;
    if size_len > 8 || id_len + size_len > n {
        return None;
    }
    let mut size = u64::from(first) & ((1u64 << (8 - size_len)) - 1);
    for b in &buf[id_len + 1..id_len + size_len] {
        size = (size << 8) | u64::from(*b);
    }
    if size == (1u64 << (7 * size_len)) - 1 {
        size = u64::MAX;
    }
    Some((id, size, (id_len + size_len) as u64))
}

fn read_uint(file: &File, pos: u64, size: u64) -> Option<u64> {
    if size == 0 || size > 8 {
        return None;
    }
    let mut buf = [0u8; 8];
    file.read_exact_at(&mut buf[..size as usize], pos).ok()?;
    Some(
        buf[..size as usize]
            .iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b)),
    )
}

/// Reads a recording's clusters up to the first one that is not whole.
pub fn scan(file: &File) -> Result<Scan, ScanError> {
    let len = file.metadata()?.len();
    let (id, size, head) = element_at(file, 0, len).ok_or(ScanError::NotMatroska)?;
    if id != EBML || size == u64::MAX {
        return Err(ScanError::NotMatroska);
    }
    let pos = head + size;
    let (id, _, head) = element_at(file, pos, len).ok_or(ScanError::NotMatroska)?;
    if id != SEGMENT {
        return Err(ScanError::NotMatroska);
    }
    let mut scan = Scan::default();
    let mut pos = pos + head;
    let (mut start_ms, mut width, mut height) = (None, 0u32, 0u32);
    while let Some((id, size, head)) = element_at(file, pos, len) {
        let body = pos + head;
        if size == u64::MAX || body.saturating_add(size) > len {
            break;
        }
        let end = body + size;
        match id {
            INFO => {
                let mut p = body;
                while let Some((cid, csize, chead)) = element_at(file, p, end) {
                    if cid == DATE_UTC && csize == 8 {
                        let mut b = [0u8; 8];
                        file.read_exact_at(&mut b, p + chead)?;
                        let ns = i64::from_be_bytes(b).saturating_add(MATROSKA_EPOCH_NS);
                        start_ms = Some((ns.max(0) / 1_000_000) as u64);
                    }
                    if cid == DURATION && csize == 8 {
                        scan.duration_at = Some(p + chead);
                    }
                    p += chead + csize;
                }
            }
            TRACKS => {
                // TrackEntry → Video → PixelWidth/PixelHeight.
                let mut stack = vec![(body, end)];
                while let Some((mut p, e)) = stack.pop() {
                    while let Some((cid, csize, chead)) = element_at(file, p, e) {
                        match cid {
                            TRACK_ENTRY | VIDEO => stack.push((p + chead, p + chead + csize)),
                            PIXEL_WIDTH => {
                                width = read_uint(file, p + chead, csize).unwrap_or(0) as u32
                            }
                            PIXEL_HEIGHT => {
                                height = read_uint(file, p + chead, csize).unwrap_or(0) as u32
                            }
                            _ => {}
                        }
                        p += chead + csize;
                    }
                }
            }
            CLUSTER => {
                let mut p = body;
                let mut base = 0u64;
                let mut blocks = Vec::new();
                while let Some((cid, csize, chead)) = element_at(file, p, end) {
                    if csize == u64::MAX || p + chead + csize > end {
                        break;
                    }
                    if cid == CLUSTER_TIMESTAMP {
                        base = read_uint(file, p + chead, csize).unwrap_or(0);
                    } else if cid == SIMPLE_BLOCK && csize > BLOCK_HEAD {
                        let mut bh = [0u8; 4];
                        file.read_exact_at(&mut bh, p + chead)?;
                        let rel = i16::from_be_bytes([bh[1], bh[2]]);
                        blocks.push(Block {
                            ms: base.saturating_add_signed(i64::from(rel)),
                            offset: p + chead + BLOCK_HEAD,
                            len: (csize - BLOCK_HEAD) as u32,
                        });
                    }
                    p += chead + csize;
                }
                scan.blocks.extend(blocks);
            }
            _ => {}
        }
        pos = end;
        scan.good_len = pos;
    }
    if let Some(start_ms) = start_ms {
        scan.header = Some(Header {
            start_ms,
            width,
            height,
        });
    }
    Ok(scan)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn sizes_take_as_few_bytes_as_they_can() {
        let enc = |n| {
            let mut v = Vec::new();
            put_size(&mut v, n);
            v
        };
        assert_eq!(enc(0), [0x80]);
        assert_eq!(enc(126), [0xFE]);
        // 127 would be "unknown" in one byte.
        assert_eq!(enc(127), [0x40, 0x7F]);
        assert_eq!(enc(1 << 20), [0x30, 0x00, 0x00]);
    }

    #[test]
    fn written_and_scanned_back_and_cut_short() {
        let path = std::env::temp_dir().join(format!("mkv-test-{}.mkv", std::process::id()));
        let h = Header {
            start_ms: 1_700_000_000_123,
            width: 320,
            height: 240,
        };
        let (mut bytes, duration_at) = header(&h, 0.0);
        let a = vec![0xAAu8; 300];
        let b = vec![0xBBu8; 50];
        let (c1, at1) = cluster(&[(0, &a), (66, &b)]);
        let first = bytes.len() as u64;
        bytes.extend_from_slice(&c1);
        let (c2, _) = cluster(&[(1000, &b)]);
        let whole = bytes.len() as u64 + c2.len() as u64;
        bytes.extend_from_slice(&c2);
        // A third cluster cut in the middle, as a kill would leave it.
        let (c3, _) = cluster(&[(2000, &a)]);
        bytes.extend_from_slice(&c3[..100]);
        std::fs::File::create(&path)
            .and_then(|mut f| f.write_all(&bytes))
            .expect("write");
        let f = File::open(&path).expect("open");
        let s = scan(&f).expect("scan");
        assert_eq!(s.header, Some(h));
        assert_eq!(s.duration_at, Some(duration_at));
        assert_eq!(s.good_len, whole);
        let ms: Vec<u64> = s.blocks.iter().map(|b| b.ms).collect();
        assert_eq!(ms, [0, 66, 1000]);
        assert_eq!(s.blocks[0].offset, first + at1[0]);
        assert_eq!(s.blocks[1].len, 50);
        let mut got = vec![0u8; 300];
        f.read_exact_at(&mut got, s.blocks[0].offset).expect("read");
        assert_eq!(got, a);
        let _ = std::fs::remove_file(path);
    }
}
