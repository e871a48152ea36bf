//! Choosing what to ask a V4L2 camera for, as a pure function of what the
//! camera offers, so it is tested without a camera. Preference: the camera's
//! own MJPEG (passed through, no re-encode), then YUYV, then NV12 / I420
//! (encoded from YUV). Size: the smallest one that covers `--size` at a usable
//! rate, else the largest. Rate: the slowest one that reaches `--fps`.

/// Pixel formats the producer can use, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelKind {
    Mjpeg,
    Yuyv,
    Nv12,
    I420,
}

impl PixelKind {
    pub const PREFERENCE: [PixelKind; 4] = [Self::Mjpeg, Self::Yuyv, Self::Nv12, Self::I420];

    pub fn fourcc(self) -> [u8; 4] {
        match self {
            Self::Mjpeg => *b"MJPG",
            Self::Yuyv => *b"YUYV",
            Self::Nv12 => *b"NV12",
            Self::I420 => *b"YU12",
        }
    }

    pub fn from_fourcc(code: [u8; 4]) -> Option<Self> {
        match &code {
            b"MJPG" | b"JPEG" => Some(Self::Mjpeg),
            _ => Self::PREFERENCE.into_iter().find(|k| k.fourcc() == code),
        }
    }
}

/// One format at one size, with the frame rates offered there.
#[derive(Debug, Clone, PartialEq)]
pub struct Offer {
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
    /// Empty when the driver does not list rates.
    pub fps: Vec<f64>,
}

#[derive(Debug, Clone, Copy, Default)]
pub struct Want {
    pub size: Option<(u32, u32)>,
    pub fps: Option<f64>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Choice {
    pub kind: PixelKind,
    pub fourcc: [u8; 4],
    pub width: u32,
    pub height: u32,
    /// `None`: leave the camera's rate alone (it lists none).
    pub fps: Option<f64>,
}

/// Below this a camera is a slideshow; used when `--fps` is not given.
const USABLE_FPS: f64 = 15.0;

pub fn choose(offers: &[Offer], want: Want) -> Option<Choice> {
    let (kind, fourcc) = PixelKind::PREFERENCE.into_iter().find_map(|k| {
        offers
            .iter()
            .find(|o| PixelKind::from_fourcc(o.fourcc) == Some(k))
            .map(|o| (k, o.fourcc))
    })?;
    let sizes: Vec<&Offer> = offers.iter().filter(|o| o.fourcc == fourcc).collect();
    let min_fps = want.fps.unwrap_or(USABLE_FPS) - 0.01;
    let max_fps = |o: &Offer| o.fps.iter().copied().fold(f64::NAN, f64::max);
    let fast: Vec<&Offer> = sizes
        .iter()
        .copied()
        .filter(|o| o.fps.is_empty() || max_fps(o) >= min_fps)
        .collect();
    let pool = if fast.is_empty() { &sizes } else { &fast };
    let area = |o: &&&Offer| u64::from(o.width) * u64::from(o.height);
    let covering = want.size.and_then(|(w, h)| {
        pool.iter()
            .filter(|o| o.width >= w && o.height >= h)
            .min_by_key(area)
    });
    let best = covering.or_else(|| pool.iter().max_by_key(area))?;
    let fps = if best.fps.is_empty() {
        None
    } else {
        let reaching = best.fps.iter().copied().filter(|f| *f >= min_fps);
        match want.fps {
            Some(_) => reaching.fold(None, |m: Option<f64>, f| Some(m.map_or(f, |m| m.min(f)))),
            None => None,
        }
        .or(Some(max_fps(best)))
    };
    Some(Choice {
        kind,
        fourcc,
        width: best.width,
        height: best.height,
        fps,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(fourcc: &[u8; 4], w: u32, h: u32, fps: &[f64]) -> Offer {
        Offer {
            fourcc: *fourcc,
            width: w,
            height: h,
            fps: fps.to_vec(),
        }
    }

    /// A typical UVC webcam: MJPEG at every size at 30 fps, YUYV slow when large.
    fn webcam() -> Vec<Offer> {
        vec![
            offer(b"YUYV", 640, 480, &[30.0, 15.0]),
            offer(b"YUYV", 1280, 720, &[10.0, 5.0]),
            offer(b"YUYV", 1920, 1080, &[5.0]),
            offer(b"MJPG", 640, 480, &[30.0, 15.0]),
            offer(b"MJPG", 1280, 720, &[30.0, 15.0]),
            offer(b"MJPG", 1920, 1080, &[30.0, 15.0]),
        ]
    }

    #[test]
    fn prefers_the_cameras_own_mjpeg() {
        let c = choose(&webcam(), Want::default()).expect("a choice");
        assert_eq!(
            (c.kind, c.width, c.height, c.fps),
            (PixelKind::Mjpeg, 1920, 1080, Some(30.0))
        );
    }

    #[test]
    fn picks_the_smallest_size_covering_the_request_and_the_slowest_rate_reaching_fps() {
        let want = Want {
            size: Some((1280, 720)),
            fps: Some(12.0),
        };
        let c = choose(&webcam(), want).expect("a choice");
        assert_eq!((c.width, c.height, c.fps), (1280, 720, Some(15.0)));
        let odd = Want {
            size: Some((800, 600)),
            fps: None,
        };
        let c = choose(&webcam(), odd).expect("a choice");
        assert_eq!((c.width, c.height), (1280, 720), "scaled down afterwards");
    }

    #[test]
    fn raw_only_cameras_avoid_slideshow_sizes() {
        let raw: Vec<Offer> = webcam()
            .into_iter()
            .filter(|o| &o.fourcc == b"YUYV")
            .collect();
        let c = choose(&raw, Want::default()).expect("a choice");
        assert_eq!(
            (c.kind, c.width, c.height, c.fps),
            (PixelKind::Yuyv, 640, 480, Some(30.0))
        );
        // Asked for 1080p: nothing covers it fast enough, so the largest fast one.
        let c = choose(
            &raw,
            Want {
                size: Some((1920, 1080)),
                fps: None,
            },
        )
        .expect("a choice");
        assert_eq!((c.width, c.height), (640, 480));
        // Asked for 5 fps: now 1080p qualifies.
        let c = choose(
            &raw,
            Want {
                size: Some((1920, 1080)),
                fps: Some(5.0),
            },
        )
        .expect("a choice");
        assert_eq!((c.width, c.height, c.fps), (1920, 1080, Some(5.0)));
    }

    #[test]
    fn nv12_capture_cards_and_unknown_formats() {
        let card = vec![
            offer(b"H264", 1920, 1080, &[30.0]),
            offer(b"NV12", 1920, 1080, &[]),
        ];
        let c = choose(&card, Want::default()).expect("a choice");
        assert_eq!((c.kind, c.fps), (PixelKind::Nv12, None));
        assert_eq!(
            choose(&[offer(b"H264", 640, 480, &[30.0])], Want::default()),
            None
        );
        assert_eq!(choose(&[], Want::default()), None);
    }
}
