//! The bytes of ZMTP 3.0 (rfc.zeromq.org/spec/23) that our PUB socket
//! (`publisher.rs`) reads from and writes to subscribers, as pure functions
//! with no I/O: the greeting, READY, inbound frames and subscriptions. Kept
//! apart so the fuzz target `zmtp` (fuzz/) can include this file and feed it
//! whatever a host that reaches a producer's or detector's port may send.

/// Largest frame a subscriber may send us (subscriptions are short).
pub const MAX_INBOUND_FRAME: usize = 4096;

/// How many size bytes follow a frame's flags byte (1, or 8 for a long
/// frame); reserved flag bits are refused.
pub fn size_bytes(flags: u8) -> Result<usize, &'static str> {
    if flags & 0xF8 != 0 {
        return Err("reserved flag bits set");
    }
    Ok(if flags & 0x02 != 0 { 8 } else { 1 })
}

/// The body length from the size bytes (1, or 8 big-endian), at most
/// [`MAX_INBOUND_FRAME`].
pub fn body_len(size: &[u8]) -> Result<usize, &'static str> {
    let len = match size {
        [n] => u64::from(*n),
        [..] if size.len() == 8 => {
            let mut b = [0u8; 8];
            b.copy_from_slice(size);
            u64::from_be_bytes(b)
        }
        _ => return Err("bad size field"),
    };
    if len > MAX_INBOUND_FRAME as u64 {
        return Err("frame from subscriber too large");
    }
    Ok(len as usize)
}

/// Parses one frame at the start of `buf`: the frame and the bytes it took,
/// or `None` while more bytes are needed. (`publisher.rs` reads frames from its
/// socket with the two functions above; this whole-buffer form is for the
/// fuzz target and the tests.)
#[allow(dead_code, reason = "used by the fuzz target and the tests")]
pub fn parse_frame(buf: &[u8]) -> Result<Option<(InFrame, usize)>, &'static str> {
    let Some(&flags) = buf.first() else {
        return Ok(None);
    };
    let n = size_bytes(flags)?;
    let Some(size) = buf.get(1..1 + n) else {
        return Ok(None);
    };
    let len = body_len(size)?;
    let Some(body) = buf.get(1 + n..1 + n + len) else {
        return Ok(None);
    };
    Ok(Some((InFrame::new(flags, body.to_vec()), 1 + n + len)))
}

/// Our greeting: ZMTP 3.0, NULL mechanism, not as-server.
pub fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 0;
    g[12..16].copy_from_slice(b"NULL");
    g
}

/// Checks a peer's greeting: ZMTP 3.x with the NULL mechanism.
pub fn check_greeting(g: &[u8; 64]) -> Result<(), &'static str> {
    if g[0] != 0xFF || g[9] & 0x01 != 0x01 {
        return Err("not a ZMTP 3 greeting");
    }
    if g[10] < 3 {
        return Err("ZMTP version below 3");
    }
    if &g[12..16] != b"NULL" || g[16..32].iter().any(|&b| b != 0) {
        return Err("mechanism is not NULL");
    }
    Ok(())
}

pub fn ready_command() -> Vec<u8> {
    let mut body = Vec::new();
    body.push(5);
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&3u32.to_be_bytes());
    body.extend_from_slice(b"PUB");
    let mut f = vec![0x04, body.len() as u8];
    f.extend_from_slice(&body);
    f
}

/// One frame from a peer.
#[derive(Debug, PartialEq, Eq)]
pub struct InFrame {
    pub command: bool,
    pub more: bool,
    pub body: Vec<u8>,
}

impl InFrame {
    pub fn new(flags: u8, body: Vec<u8>) -> InFrame {
        InFrame {
            command: flags & 0x04 != 0,
            more: flags & 0x01 != 0,
            body,
        }
    }
}

/// A command's name and its body after the name.
pub fn command_parts(body: &[u8]) -> Option<(&[u8], &[u8])> {
    let n = *body.first()? as usize;
    let name = body.get(1..1 + n)?;
    Some((name, &body[1 + n..]))
}

/// The `Socket-Type` property of a READY command body (after the name).
pub fn socket_type(mut props: &[u8]) -> Option<&[u8]> {
    while !props.is_empty() {
        let n = *props.first()? as usize;
        let name = props.get(1..1 + n)?;
        let len_at = 1 + n;
        let vlen = u32::from_be_bytes(props.get(len_at..len_at + 4)?.try_into().ok()?) as usize;
        let value = props.get(len_at + 4..len_at + 4 + vlen)?;
        if name.eq_ignore_ascii_case(b"Socket-Type") {
            return Some(value);
        }
        props = &props[len_at + 4 + vlen..];
    }
    None
}

/// What one inbound frame asks for, after the handshake.
#[derive(Debug, PartialEq, Eq)]
pub enum Request {
    Subscribe(Vec<u8>),
    Cancel(Vec<u8>),
    Ignore,
}

/// Interprets a frame a subscriber sent after the handshake.
pub fn request(f: &InFrame) -> Request {
    if f.command {
        match command_parts(&f.body) {
            Some((b"SUBSCRIBE", rest)) => Request::Subscribe(rest.to_vec()),
            Some((b"CANCEL", rest)) => Request::Cancel(rest.to_vec()),
            _ => Request::Ignore,
        }
    } else {
        match f.body.split_first() {
            Some((1, rest)) if !f.more => Request::Subscribe(rest.to_vec()),
            Some((0, rest)) if !f.more => Request::Cancel(rest.to_vec()),
            _ => Request::Ignore,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_parse_whole_or_wait_for_more() {
        let sub = [0x00, 4, 1, b'c', b'a', b'm'];
        for cut in 0..sub.len() {
            assert_eq!(parse_frame(&sub[..cut]), Ok(None), "cut at {cut}");
        }
        let (f, used) = parse_frame(&sub).expect("valid").expect("whole");
        assert_eq!(used, 6);
        assert_eq!(request(&f), Request::Subscribe(b"cam".to_vec()));
        let mut long = vec![0x06];
        long.extend_from_slice(&5u64.to_be_bytes());
        long.extend_from_slice(b"\x04PING");
        let (f, _) = parse_frame(&long).expect("valid").expect("whole");
        assert!(f.command);
        assert_eq!(parse_frame(&[0x08, 0]), Err("reserved flag bits set"));
        let mut huge = vec![0x02];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(parse_frame(&huge), Err("frame from subscriber too large"));
    }
}
