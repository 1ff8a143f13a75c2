//! A small raster canvas for the History plot: lines and boxes into an RGB
//! buffer, anti-aliased text from the DejaVu Sans font shipped in
//! `assets/fonts/` (rasterised by `ab_glyph`), encoded by the `png` crate.

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};

/// DejaVu Sans (see `assets/fonts/README.md` for its license).
const FONT_BYTES: &[u8] = include_bytes!("../../assets/fonts/DejaVuSans.ttf");

fn font() -> FontRef<'static> {
    FontRef::try_from_slice(FONT_BYTES).expect("the shipped font parses")
}

/// An RGB image.
pub(crate) struct Canvas {
    width: usize,
    height: usize,
    rgb: Vec<u8>,
}

impl Canvas {
    pub(crate) fn new(width: usize, height: usize) -> Self {
        Canvas {
            width,
            height,
            rgb: vec![255; width * height * 3],
        }
    }

    fn put(&mut self, x: i64, y: i64, color: [u8; 3]) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            self.rgb[i..i + 3].copy_from_slice(&color);
        }
    }

    /// A line `width` pixels thick; `dash` draws every other 6-pixel run.
    pub(crate) fn line(
        &mut self,
        (x0, y0): (f64, f64),
        (x1, y1): (f64, f64),
        color: [u8; 3],
        width: i64,
        dash: bool,
    ) {
        let steps = ((x1 - x0).abs().max((y1 - y0).abs()).ceil() as usize).max(1);
        for s in 0..=steps {
            if dash && (s / 6) % 2 == 1 {
                continue;
            }
            let t = s as f64 / steps as f64;
            let (x, y) = (
                (x0 + t * (x1 - x0)).round() as i64,
                (y0 + t * (y1 - y0)).round() as i64,
            );
            for dy in 0..width {
                for dx in 0..width {
                    self.put(x + dx - width / 2, y + dy - width / 2, color);
                }
            }
        }
    }

    /// The width in pixels of `s` in the plot's font at `px` pixels.
    pub(crate) fn text_width(s: &str, px: f64) -> f64 {
        let font = font();
        let scaled = font.as_scaled(PxScale::from(px as f32));
        let mut width = 0.0;
        let mut previous = None;
        for c in s.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                width += scaled.kern(p, id);
            }
            width += scaled.h_advance(id);
            previous = Some(id);
        }
        f64::from(width)
    }

    /// Text `px` pixels high whose baseline starts at `(x, y)`,
    /// anti-aliased (each pixel blended towards `color` by the glyph's
    /// coverage).
    pub(crate) fn text(&mut self, x: f64, y: f64, s: &str, px: f64, color: [u8; 3]) {
        let font = font();
        let px = px as f32;
        let scaled = font.as_scaled(PxScale::from(px));
        let mut pen = x as f32;
        let mut previous = None;
        for c in s.chars() {
            let id = scaled.glyph_id(c);
            if let Some(p) = previous {
                pen += scaled.kern(p, id);
            }
            let glyph = id.with_scale_and_position(px, ab_glyph::point(pen, y as f32));
            pen += scaled.h_advance(id);
            previous = Some(id);
            let Some(outline) = font.outline_glyph(glyph) else {
                continue; // a space
            };
            let bounds = outline.px_bounds();
            outline.draw(|gx, gy, coverage| {
                let (px, py) = (
                    bounds.min.x as i64 + i64::from(gx),
                    bounds.min.y as i64 + i64::from(gy),
                );
                self.blend(px, py, color, coverage);
            });
        }
    }

    fn blend(&mut self, x: i64, y: i64, color: [u8; 3], coverage: f32) {
        if x >= 0 && y >= 0 && (x as usize) < self.width && (y as usize) < self.height {
            let i = (y as usize * self.width + x as usize) * 3;
            let a = coverage.clamp(0.0, 1.0);
            for (dst, &src) in self.rgb[i..i + 3].iter_mut().zip(&color) {
                *dst = (f32::from(*dst) * (1.0 - a) + f32::from(src) * a).round() as u8;
            }
        }
    }

    /// The image as PNG bytes (8-bit RGB), encoded by the `png` crate.
    pub(crate) fn png(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let mut encoder = png::Encoder::new(&mut out, self.width as u32, self.height as u32);
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        // Encoding into memory fails only for a buffer of the wrong size,
        // which `Canvas` never holds.
        let mut writer = encoder.write_header().expect("in-memory PNG header");
        writer
            .write_image_data(&self.rgb)
            .expect("in-memory PNG data");
        writer.finish().expect("in-memory PNG");
        out
    }

    /// The colour of pixel `(x, y)` (tests).
    #[cfg(test)]
    pub(crate) fn pixel(&self, x: usize, y: usize) -> [u8; 3] {
        let i = (y * self.width + x) * 3;
        [self.rgb[i], self.rgb[i + 1], self.rgb[i + 2]]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Decodes PNG bytes into (width, height, RGB).
    fn decode(bytes: &[u8]) -> (u32, u32, Vec<u8>) {
        let decoder = png::Decoder::new(std::io::Cursor::new(bytes));
        let mut reader = decoder.read_info().unwrap();
        let mut buf = vec![0; reader.output_buffer_size().unwrap()];
        let info = reader.next_frame(&mut buf).unwrap();
        assert_eq!(info.color_type, png::ColorType::Rgb);
        buf.truncate(info.buffer_size());
        (info.width, info.height, buf)
    }

    #[test]
    fn the_png_decodes_to_the_canvas_pixels() {
        let mut c = Canvas::new(7, 5);
        c.line((0.0, 2.0), (6.0, 2.0), [255, 0, 0], 1, false);
        let (w, h, rgb) = decode(&c.png());
        assert_eq!((w, h), (7, 5));
        assert_eq!(rgb, c.rgb);
        assert_eq!(&rgb[(2 * 7 + 3) * 3..(2 * 7 + 4) * 3], &[255, 0, 0]);
        assert_eq!(&rgb[..3], &[255, 255, 255]);
    }

    #[test]
    fn text_is_drawn_anti_aliased_where_the_font_puts_it() {
        let mut c = Canvas::new(80, 20);
        c.text(2.0, 14.0, "loss", 12.0, [0, 0, 0]);
        let inked: Vec<(usize, usize, u8)> = (0..20)
            .flat_map(|y| (0..80).map(move |x| (x, y)))
            .map(|(x, y)| (x, y, c.pixel(x, y)[0]))
            .filter(|&(_, _, v)| v < 255)
            .collect();
        // Ink only between the pen's start and the text's width, above the
        // baseline (no descenders in "loss").
        let width = Canvas::text_width("loss", 12.0);
        assert!(width > 15.0 && width < 40.0, "{width}");
        assert!(
            inked
                .iter()
                .all(|&(x, y, _)| x >= 2 && (x as f64) <= 3.0 + width && y <= 14)
        );
        // Solid stems and grey edges: anti-aliased, not a bitmap font.
        assert!(inked.iter().any(|&(_, _, v)| v < 40));
        assert!(inked.iter().any(|&(_, _, v)| v > 80 && v < 200));
    }
}
