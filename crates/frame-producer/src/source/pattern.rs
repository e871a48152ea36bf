//! The simulated camera from the seed tutorial, made useful for testing: a
//! gray canvas with the wall-clock time to the millisecond, the stream name,
//! the frame number, and a bar that sweeps across so stutter is visible.

use std::time::Duration;

use stream_common::canvas::Canvas;

use super::{Captured, Demand, Picture, Source, SourceError};
use crate::units::Size;

const GRAY: [u8; 3] = [128, 128, 128];
const TEXT: [u8; 3] = [255, 255, 0];
const BAR: [u8; 3] = [40, 160, 255];

pub struct TestPattern {
    canvas: Canvas,
    stream: String,
    frame: u64,
    /// False while nobody would see the picture: frames are counted, not drawn.
    wanted: bool,
}

impl TestPattern {
    pub fn new(size: Size, stream: &str) -> Self {
        TestPattern {
            canvas: Canvas::new(size.width, size.height),
            stream: stream.to_string(),
            frame: 0,
            wanted: true,
        }
    }

    /// Draws frame `frame` for time `now_ns` into the canvas.
    pub fn draw(&mut self, now_ns: u64) {
        let (w, h) = (
            i64::from(self.canvas.width()),
            i64::from(self.canvas.height()),
        );
        let scale = (self.canvas.width() / 160).max(1);
        let small = (scale / 2).max(1);
        let c = &mut self.canvas;
        c.fill(GRAY);

        let line = 8 * i64::from(scale) + 8;
        c.draw_text(16, 16, scale, TEXT, &stream_common::clock_text(now_ns));
        c.draw_text(
            16,
            16 + line,
            small,
            [255, 255, 255],
            &format!("{}  frame {}", self.stream, self.frame),
        );
        c.draw_text(
            16,
            16 + line + 12 * i64::from(small),
            small,
            [220, 220, 220],
            &format!("{w}x{h}"),
        );

        // A bar sweeping left to right once every 64 frames.
        let bar_w = (w / 16).max(4);
        let x = ((self.frame % 64) as i64 * (w - bar_w)) / 63;
        c.fill_rect(x, h * 2 / 3, bar_w, h / 6, BAR);
        self.frame += 1;
    }

    #[cfg(test)]
    pub fn canvas(&self) -> &Canvas {
        &self.canvas
    }
}

impl Source for TestPattern {
    fn describe(&self) -> String {
        format!(
            "test-pattern {}x{}",
            self.canvas.width(),
            self.canvas.height()
        )
    }

    fn set_demand(&mut self, demand: Demand) {
        self.wanted = demand.picture;
    }

    fn next_frame(&mut self, _timeout: Duration) -> Result<Option<Captured<'_>>, SourceError> {
        let now = stream_common::unix_now_ns();
        if self.wanted {
            self.draw(now);
        } else {
            // The bar keeps its pace for the next frame someone sees.
            self.frame += 1;
        }
        Ok(Some(Captured {
            picture: Picture::Rgb(&self.canvas),
            capture_ts_ns: now,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_differ_and_the_bar_moves() {
        let mut p = TestPattern::new(
            Size {
                width: 320,
                height: 240,
            },
            "cam0",
        );
        p.draw(1_000_000_000);
        let a = p.canvas().clone();
        p.draw(1_000_000_000); // same time: only the frame number and bar differ
        let b = p.canvas().clone();
        assert_ne!(a.pixels(), b.pixels());
        let bar_row = 240 * 2 / 3 + 5;
        let first_bar_x = |c: &Canvas| (0..320).find(|&x| c.pixel(x, bar_row) == Some(BAR));
        assert_eq!(first_bar_x(&a), Some(0));
        assert!(first_bar_x(&b).expect("bar drawn") > 0);
        // Mostly the seed's gray.
        let gray = a.pixels().chunks_exact(3).filter(|p| *p == GRAY).count();
        assert!(gray > 320 * 240 * 3 / 4);
    }

    #[test]
    fn frames_nobody_sees_are_counted_not_drawn() {
        let size = Size {
            width: 320,
            height: 240,
        };
        let mut p = TestPattern::new(size, "cam0");
        let seen = |p: &mut TestPattern| match p.next_frame(Duration::ZERO) {
            Ok(Some(Captured {
                picture: Picture::Rgb(c),
                ..
            })) => c.clone(),
            _ => panic!("the pattern always has a frame"),
        };
        let first = seen(&mut p);
        let demand = |picture| Demand {
            full_rate: false,
            picture,
        };
        p.set_demand(demand(false));
        assert_eq!(seen(&mut p).pixels(), first.pixels(), "not drawn");
        p.set_demand(demand(true));
        seen(&mut p);
        // Frame 2 was drawn: frame 1 went by unseen, the bar kept its pace.
        let mut expect = TestPattern::new(size, "cam0");
        expect.frame = 2;
        let bar_row = 240 * 2 / 3 + 5;
        let bar_x = |c: &Canvas| (0..320).find(|&x| c.pixel(x, bar_row) == Some(BAR));
        expect.draw(0);
        assert_eq!(bar_x(p.canvas()), bar_x(expect.canvas()));
        assert_eq!(p.frame, 3);
    }
}
