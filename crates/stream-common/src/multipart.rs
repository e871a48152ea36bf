//! An incremental parser for `multipart/x-mixed-replace` MJPEG streams.
//!
//! Used by the producer to relay an IP camera's stream, and by the tests and
//! load generator to read the gateway exactly as a client would. In strict mode
//! every part must carry a right `Content-Length` and be followed by CRLF and
//! the next boundary; lenient mode accepts what real cameras send (no
//! Content-Length, bare LF, a preamble before the first boundary).

use bytes::{Buf, Bytes, BytesMut};

/// The boundary the gateway (and the benchmark's floor server) uses.
pub const BOUNDARY: &str = "frame";
/// Written once at the start of a stream; every part then ends with the next boundary.
pub const PREAMBLE: &[u8] = b"--frame\r\n";
const TRAILER: &[u8] = b"\r\n--frame\r\n";

/// Builds one whole part: headers, the JPEG, then CRLF and the *next*
/// boundary at once, so a browser shows the frame as soon as it arrives
/// instead of waiting for the following one. Returns the bytes and where the
/// JPEG sits in them.
pub fn build_part(
    jpeg: &[u8],
    capture_ts_ns: u64,
    online: bool,
) -> (Bytes, std::ops::Range<usize>) {
    let head = format!(
        "Content-Type: image/jpeg\r\nContent-Length: {}\r\nX-Timestamp: {}\r\nX-Source-Online: {online}\r\n\r\n",
        jpeg.len(),
        timestamp_text(capture_ts_ns),
    );
    let mut buf = BytesMut::with_capacity(head.len() + jpeg.len() + TRAILER.len());
    buf.extend_from_slice(head.as_bytes());
    buf.extend_from_slice(jpeg);
    buf.extend_from_slice(TRAILER);
    (buf.freeze(), head.len()..head.len() + jpeg.len())
}

/// `X-Timestamp` value: Unix seconds with microseconds.
pub fn timestamp_text(unix_ns: u64) -> String {
    format!(
        "{}.{:06}",
        unix_ns / 1_000_000_000,
        (unix_ns % 1_000_000_000) / 1000
    )
}

/// Headers of one part larger than this are an error, not a reason to buffer.
pub const MAX_PART_HEADERS: usize = 8 * 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    /// Header names lower-cased, values trimmed, in order.
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

impl Part {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }
}

/// The value of header `name` (any case) in a list of name/value pairs.
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MultipartError {
    #[error("expected boundary {expected:?}, found {found:?}")]
    Boundary { expected: String, found: String },
    #[error("part headers longer than {MAX_PART_HEADERS} bytes")]
    HeadersTooLong,
    #[error("malformed part header line {0:?}")]
    HeaderLine(String),
    #[error("part has no Content-Length")]
    MissingLength,
    #[error("bad Content-Length {0:?}")]
    BadLength(String),
    #[error("part of {size} bytes exceeds the {max} byte limit")]
    TooLarge { size: usize, max: usize },
    #[error("part body not followed by CRLF")]
    MissingCrlf,
}

/// Extracts the boundary token from a Content-Type header value.
pub fn boundary_from_content_type(value: &str) -> Option<String> {
    let (kind, params) = value.split_once(';')?;
    if !kind.trim().to_ascii_lowercase().starts_with("multipart/") {
        return None;
    }
    params.split(';').find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case("boundary")).then(|| v.trim().trim_matches('"').to_string())
    })
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Boundary,
    Headers,
    Body { len: Option<usize> },
    Done,
}

/// Feed bytes with [`push`](Self::push), take parts with [`next_part`](Self::next_part).
#[derive(Debug)]
pub struct MultipartParser {
    delimiter: Vec<u8>,
    buf: BytesMut,
    strict: bool,
    max_part: usize,
    state: State,
    headers: Vec<(String, String)>,
    first: bool,
}

impl MultipartParser {
    /// `boundary` as given in the Content-Type (without the leading `--`).
    pub fn new(boundary: &str, strict: bool, max_part: usize) -> Self {
        MultipartParser {
            delimiter: format!("--{boundary}").into_bytes(),
            buf: BytesMut::with_capacity(64 * 1024),
            strict,
            max_part,
            state: State::Boundary,
            headers: Vec::new(),
            first: true,
        }
    }

    pub fn push(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    /// Bytes received but not yet part of a returned part.
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// True once the closing `--boundary--` was seen.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// The next complete part, `Ok(None)` when more bytes are needed.
    pub fn next_part(&mut self) -> Result<Option<Part>, MultipartError> {
        loop {
            match self.state {
                State::Done => return Ok(None),
                State::Boundary => {
                    if !self.take_boundary()? {
                        return Ok(None);
                    }
                }
                State::Headers => {
                    if !self.take_headers()? {
                        return Ok(None);
                    }
                }
                State::Body { len } => return self.take_body(len),
            }
        }
    }

    fn take_boundary(&mut self) -> Result<bool, MultipartError> {
        if !self.strict || self.first {
            // Skip a preamble (lenient) or blank lines before the first boundary.
            match find(&self.buf, &self.delimiter) {
                Some(0) => {}
                Some(at)
                    if !self.strict || self.buf[..at].iter().all(|b| b.is_ascii_whitespace()) =>
                {
                    self.buf.advance(at)
                }
                Some(_) => return Err(self.boundary_error()),
                None => {
                    if self.strict && self.buf.len() >= self.delimiter.len() {
                        return Err(self.boundary_error());
                    }
                    let keep = self.delimiter.len();
                    if self.buf.len() > keep + MAX_PART_HEADERS {
                        let drop = self.buf.len() - keep;
                        self.buf.advance(drop);
                    }
                    return Ok(false);
                }
            }
        }
        let need = self.delimiter.len() + 2;
        if self.buf.len() < need {
            if self.strict
                && !self
                    .delimiter
                    .starts_with(&self.buf[..self.buf.len().min(self.delimiter.len())])
            {
                return Err(self.boundary_error());
            }
            return Ok(false);
        }
        if !self.buf.starts_with(&self.delimiter) {
            return Err(self.boundary_error());
        }
        let tail = &self.buf[self.delimiter.len()..need];
        match tail {
            b"--" => {
                self.state = State::Done;
                return Ok(true);
            }
            b"\r\n" => self.buf.advance(need),
            [b'\n', _] if !self.strict => self.buf.advance(need - 1),
            _ => return Err(self.boundary_error()),
        }
        self.first = false;
        self.state = State::Headers;
        Ok(true)
    }

    fn take_headers(&mut self) -> Result<bool, MultipartError> {
        let crlf = find(&self.buf, b"\r\n\r\n").map(|at| (at, 4));
        let lf = if self.strict {
            None
        } else {
            find(&self.buf, b"\n\n").map(|at| (at, 2))
        };
        let (end, sep) = match (crlf, lf) {
            (Some(a), Some(b)) => a.min(b),
            (Some(a), None) | (None, Some(a)) => a,
            (None, None) => return self.headers_pending(),
        };
        if end > MAX_PART_HEADERS {
            return Err(MultipartError::HeadersTooLong);
        }
        let block = self.buf.split_to(end + sep);
        let text = String::from_utf8_lossy(&block[..end]);
        self.headers.clear();
        for line in text
            .split('\n')
            .map(|l| l.trim_end_matches('\r'))
            .filter(|l| !l.is_empty())
        {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| MultipartError::HeaderLine(line.chars().take(100).collect()))?;
            self.headers
                .push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let len = match self.headers.iter().find(|(k, _)| k == "content-length") {
            Some((_, v)) => Some(
                v.parse::<usize>()
                    .map_err(|_| MultipartError::BadLength(v.clone()))?,
            ),
            None if self.strict => return Err(MultipartError::MissingLength),
            None => None,
        };
        if let Some(len) = len
            && len > self.max_part
        {
            return Err(MultipartError::TooLarge {
                size: len,
                max: self.max_part,
            });
        }
        self.state = State::Body { len };
        Ok(true)
    }

    fn headers_pending(&self) -> Result<bool, MultipartError> {
        if self.buf.len() > MAX_PART_HEADERS {
            Err(MultipartError::HeadersTooLong)
        } else {
            Ok(false)
        }
    }

    fn take_body(&mut self, len: Option<usize>) -> Result<Option<Part>, MultipartError> {
        let body = match len {
            Some(len) => {
                if self.buf.len() < len + 2 {
                    return Ok(None);
                }
                let body = self.buf.split_to(len).freeze();
                if self.buf.starts_with(b"\r\n") {
                    self.buf.advance(2);
                } else if self.buf.starts_with(b"\n") && !self.strict {
                    self.buf.advance(1);
                } else if self.strict {
                    return Err(MultipartError::MissingCrlf);
                }
                body
            }
            None => {
                let mut marker = b"\r\n".to_vec();
                marker.extend_from_slice(&self.delimiter);
                match find(&self.buf, &marker) {
                    Some(at) => {
                        let body = self.buf.split_to(at).freeze();
                        self.buf.advance(2);
                        body
                    }
                    None if self.buf.len() > self.max_part => {
                        return Err(MultipartError::TooLarge {
                            size: self.buf.len(),
                            max: self.max_part,
                        });
                    }
                    None => return Ok(None),
                }
            }
        };
        self.state = State::Boundary;
        Ok(Some(Part {
            headers: std::mem::take(&mut self.headers),
            body,
        }))
    }

    fn boundary_error(&self) -> MultipartError {
        MultipartError::Boundary {
            expected: String::from_utf8_lossy(&self.delimiter).into_owned(),
            found: String::from_utf8_lossy(&self.buf[..self.buf.len().min(40)]).into_owned(),
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    if needle.is_empty() || haystack.len() < needle.len() {
        return None;
    }
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    const JPEG: &[u8] = b"\xFF\xD8abc\xFF\xD9";

    fn part(len: usize) -> Vec<u8> {
        let mut v = format!(
            "Content-Type: image/jpeg\r\nContent-Length: {len}\r\nX-Timestamp: 1.5\r\n\r\n"
        )
        .into_bytes();
        v.extend_from_slice(JPEG);
        v.extend_from_slice(b"\r\n--frame\r\n");
        v
    }

    fn stream(n: usize) -> Vec<u8> {
        let mut v = b"--frame\r\n".to_vec();
        for _ in 0..n {
            v.extend(part(JPEG.len()));
        }
        v
    }

    #[test]
    fn boundary_parsing() {
        assert_eq!(
            boundary_from_content_type("multipart/x-mixed-replace; boundary=frame").as_deref(),
            Some("frame")
        );
        assert_eq!(
            boundary_from_content_type("multipart/x-mixed-replace;boundary=\"a b\"").as_deref(),
            Some("a b")
        );
        assert_eq!(boundary_from_content_type("image/jpeg"), None);
    }

    #[test]
    fn strict_parse_byte_by_byte() {
        let data = stream(3);
        let mut p = MultipartParser::new("frame", true, 1 << 20);
        let mut parts = Vec::new();
        for b in data {
            p.push(&[b]);
            while let Some(part) = p.next_part().expect("valid stream") {
                parts.push(part);
            }
        }
        assert_eq!(parts.len(), 3);
        assert!(
            parts
                .iter()
                .all(|p| p.body == JPEG && p.header("x-timestamp") == Some("1.5"))
        );
    }

    #[test]
    fn strict_rejects_wrong_length_and_missing_length() {
        let mut data = b"--frame\r\n".to_vec();
        data.extend(part(JPEG.len() - 1));
        let mut p = MultipartParser::new("frame", true, 1 << 20);
        p.push(&data);
        assert_eq!(p.next_part(), Err(MultipartError::MissingCrlf));

        let mut p = MultipartParser::new("frame", true, 1 << 20);
        p.push(b"--frame\r\nContent-Type: image/jpeg\r\n\r\nxx\r\n");
        assert_eq!(p.next_part(), Err(MultipartError::MissingLength));

        let mut p = MultipartParser::new("frame", true, 4);
        p.push(&stream(1));
        assert!(matches!(
            p.next_part(),
            Err(MultipartError::TooLarge { .. })
        ));

        let mut p = MultipartParser::new("frame", true, 1 << 20);
        p.push(b"--other\r\n");
        assert!(matches!(
            p.next_part(),
            Err(MultipartError::Boundary { .. })
        ));
    }

    #[test]
    fn lenient_accepts_camera_quirks() {
        let data = b"preamble\r\n--cam\nContent-Type: image/jpeg\n\n\xFF\xD8x\xFF\xD9\r\n--cam\r\nContent-Type: image/jpeg\r\n\r\n\xFF\xD8y\xFF\xD9\r\n--cam--";
        let mut p = MultipartParser::new("cam", false, 1 << 20);
        p.push(data);
        let a = p.next_part().expect("ok").expect("part");
        let b = p.next_part().expect("ok").expect("part");
        assert_eq!(&a.body[..], b"\xFF\xD8x\xFF\xD9");
        assert_eq!(&b.body[..], b"\xFF\xD8y\xFF\xD9");
        assert_eq!(p.next_part(), Ok(None));
        assert!(p.is_done());
    }
}
