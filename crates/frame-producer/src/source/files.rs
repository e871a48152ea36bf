//! Images from disk, looped: a directory of `.jpg`/`.png` files (re-listed on
//! every pass, so files can be added or removed while it runs) or one `.mjpeg`
//! file of concatenated JPEGs. JPEGs pass through without re-encoding; PNGs are
//! decoded and encoded once per frame. A bad file is skipped with one warning.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use stream_common::canvas::Canvas;

use super::{Captured, FrameFault, Picture, Source, SourceError, Unavailable};

pub struct FileSource {
    path: PathBuf,
    items: Vec<Item>,
    next: usize,
    warned: HashSet<String>,
    canvas: Canvas,
}

#[derive(Clone)]
enum Item {
    File(PathBuf),
    /// One JPEG cut out of a `.mjpeg` file.
    Jpeg(Bytes),
}

impl FileSource {
    pub fn new(path: PathBuf) -> Self {
        FileSource {
            path,
            items: Vec::new(),
            next: 0,
            warned: HashSet::new(),
            canvas: Canvas::new(2, 2),
        }
    }

    fn reload(&mut self) -> Result<(), SourceError> {
        let path = self.path.display().to_string();
        let unavailable = |source: std::io::Error| Unavailable::Io {
            doing: "reading",
            path: path.clone(),
            source,
            hint: "",
        };
        let meta = std::fs::metadata(&self.path).map_err(unavailable)?;
        self.items = if meta.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&self.path)
                .map_err(unavailable)?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| matches!(extension(p).as_str(), "jpg" | "jpeg" | "png"))
                .collect();
            files.sort();
            files.into_iter().map(Item::File).collect()
        } else {
            let data = Bytes::from(std::fs::read(&self.path).map_err(unavailable)?);
            stream_common::jpeg::split_concatenated(&data)
                .into_iter()
                .map(|r| Item::Jpeg(data.slice(r)))
                .collect()
        };
        self.next = 0;
        if self.items.is_empty() {
            return Err(Unavailable::NoImages(self.path.clone()).into());
        }
        Ok(())
    }

    fn load(&mut self, item: Item) -> Result<Option<(Bytes, u32, u32)>, SourceError> {
        let (what, data) = match item {
            Item::Jpeg(data) => (self.path.display().to_string(), data),
            Item::File(path) => {
                let what = path.display().to_string();
                let data = std::fs::read(&path)
                    .map_err(|e| SourceError::bad(what.clone(), FrameFault::Read(e)))?;
                if extension(&path) == "png" {
                    decode_png(&data, &mut self.canvas)
                        .map_err(|fault| SourceError::bad(what, fault))?;
                    return Ok(None);
                }
                (what, Bytes::from(data))
            }
        };
        if !frame_wire::looks_like_jpeg(&data) {
            return Err(SourceError::bad(what, FrameFault::NotJpeg));
        }
        let (width, height) = stream_common::jpeg::dimensions(&data)
            .ok_or_else(|| SourceError::bad(what, FrameFault::JpegHeader))?;
        Ok(Some((data, width, height)))
    }
}

fn extension(p: &Path) -> String {
    p.extension()
        .and_then(|e| e.to_str())
        .unwrap_or_default()
        .to_ascii_lowercase()
}

/// Decodes a PNG of any colour type into the canvas as RGB.
fn decode_png(data: &[u8], canvas: &mut Canvas) -> Result<(), FrameFault> {
    let mut decoder = png::Decoder::new(std::io::Cursor::new(data));
    decoder.set_transformations(png::Transformations::normalize_to_color8());
    let mut reader = decoder.read_info()?;
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf)?;
    let (w, h) = (info.width, info.height);
    if w == 0 || h == 0 || w > frame_wire::MAX_DIMENSION || h > frame_wire::MAX_DIMENSION {
        return Err(FrameFault::Size {
            width: w,
            height: h,
        });
    }
    if canvas.width() != w || canvas.height() != h {
        *canvas = Canvas::new(w, h);
    }
    let channels = info.color_type.samples();
    let src = &buf[..info.buffer_size()];
    let mut rgb = Vec::with_capacity((w * h * 3) as usize);
    for px in src.chunks_exact(channels) {
        match channels {
            1 | 2 => rgb.extend_from_slice(&[px[0], px[0], px[0]]),
            _ => rgb.extend_from_slice(&px[..3]),
        }
    }
    canvas.set_pixels(&rgb);
    Ok(())
}

impl Source for FileSource {
    fn describe(&self) -> String {
        format!("files {}", self.path.display())
    }

    fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Captured<'_>>, SourceError> {
        // Try each item at most once per call so one bad file costs one frame.
        if self.next >= self.items.len() {
            self.reload()?;
        }
        let item = self.items[self.next].clone();
        self.next += 1;
        let capture_ts_ns = stream_common::unix_now_ns();
        match self.load(item) {
            Ok(loaded) => {
                let picture = match loaded {
                    Some((data, width, height)) => Picture::Jpeg {
                        data,
                        width,
                        height,
                    },
                    None => Picture::Rgb(&self.canvas),
                };
                Ok(Some(Captured {
                    picture,
                    capture_ts_ns,
                }))
            }
            Err(SourceError::BadFrame { what, fault, .. }) => {
                // One warning per bad file, not one per loop.
                let repeat = !self.warned.insert(what.clone());
                Err(SourceError::BadFrame {
                    what,
                    fault,
                    repeat,
                })
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write_png(path: &Path, w: u32, h: u32) {
        let file = std::fs::File::create(path).expect("create png");
        let mut enc = png::Encoder::new(file, w, h);
        enc.set_color(png::ColorType::Rgba);
        let mut writer = enc.write_header().expect("png header");
        let data: Vec<u8> = (0..w * h).flat_map(|_| [200u8, 10, 10, 255]).collect();
        writer.write_image_data(&data).expect("png data");
    }

    #[test]
    fn directory_loops_skips_bad_files_and_decodes_png() {
        let dir = std::env::temp_dir().join(format!("fp-files-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let mut c = Canvas::new(32, 16);
        c.fill([1, 2, 3]);
        let jpeg = stream_common::jpeg::JpegEncoder::new(80)
            .expect("enc")
            .encode(&c)
            .expect("jpeg");
        std::fs::write(dir.join("a.jpg"), &jpeg).expect("write");
        std::fs::write(dir.join("b.jpg"), b"not a jpeg").expect("write");
        write_png(&dir.join("c.png"), 8, 6);
        std::fs::write(dir.join("notes.txt"), b"ignored").expect("write");

        let mut src = FileSource::new(dir.clone());
        let t = Duration::ZERO;
        match src.next_frame(t).expect("a.jpg").expect("frame").picture {
            Picture::Jpeg {
                data,
                width,
                height,
            } => assert_eq!((&data[..], width, height), (&jpeg[..], 32, 16)),
            _ => panic!("jpeg must pass through"),
        }
        assert!(
            matches!(src.next_frame(t), Err(SourceError::BadFrame { ref what, fault: FrameFault::NotJpeg, repeat: false }) if what.ends_with("b.jpg"))
        );
        match src.next_frame(t).expect("c.png").expect("frame").picture {
            Picture::Rgb(canvas) => assert_eq!(
                (canvas.width(), canvas.pixel(0, 0)),
                (8, Some([200, 10, 10]))
            ),
            _ => panic!("png must be decoded"),
        }
        // Looped; the second fault of b.jpg is marked a repeat (not logged again).
        assert!(src.next_frame(t).is_ok());
        assert!(
            matches!(src.next_frame(t), Err(SourceError::BadFrame { ref what, repeat: true, .. }) if what.ends_with("b.jpg"))
        );

        std::fs::remove_dir_all(&dir).expect("cleanup");
        let _ = src.next_frame(t);
        assert!(matches!(
            src.next_frame(t),
            Err(SourceError::Unavailable(Unavailable::Io { .. }))
        ));
    }
}
