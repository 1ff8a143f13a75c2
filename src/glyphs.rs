//! A learnable synthetic data set shaped like MNIST with boxes: each 28x28
//! image holds one of ten distinct glyphs (5x7 digit bitmaps) drawn at a
//! random integer scale (1 to 3) and position, plus a little noise. The
//! class is the glyph; the box is its bounds `[x0, y0, x1, y1]` divided by
//! 28.

use polyhead::losses::Labels;
use polyhead::tensor::{Rng, Tensor, TensorError};

/// Image side in pixels.
pub const SIDE: usize = 28;

/// The ten glyphs: 7 rows of 5 pixels, `#` set.
const GLYPHS: [[&str; 7]; 10] = [
    [
        ".###.", "#...#", "#..##", "#.#.#", "##..#", "#...#", ".###.",
    ],
    [
        "..#..", ".##..", "..#..", "..#..", "..#..", "..#..", ".###.",
    ],
    [
        ".###.", "#...#", "....#", "...#.", "..#..", ".#...", "#####",
    ],
    [
        "####.", "....#", "....#", ".###.", "....#", "....#", "####.",
    ],
    [
        "...#.", "..##.", ".#.#.", "#..#.", "#####", "...#.", "...#.",
    ],
    [
        "#####", "#....", "####.", "....#", "....#", "#...#", ".###.",
    ],
    [
        "..##.", ".#...", "#....", "####.", "#...#", "#...#", ".###.",
    ],
    [
        "#####", "....#", "...#.", "..#..", ".#...", ".#...", ".#...",
    ],
    [
        ".###.", "#...#", "#...#", ".###.", "#...#", "#...#", ".###.",
    ],
    [
        ".###.", "#...#", "#...#", ".####", "....#", "...#.", ".##..",
    ],
];

/// A batch of images with their classes and boxes.
#[derive(Debug, Clone)]
pub struct Glyphs {
    /// `[n, 784]` pixel intensities in `[0, 1]`.
    pub images: Tensor<f32>,
    /// The glyph of each image.
    pub labels: Labels,
    /// `[n, 4]` boxes `[x0, y0, x1, y1] / 28`.
    pub boxes: Tensor<f32>,
}

/// `n` images drawn with `seed`.
///
/// ```
/// let data = polyhead_examples::glyphs::generate(10, 7)?;
/// assert_eq!(data.images.shape(), &[10, 784]);
/// assert_eq!(data.boxes.shape(), &[10, 4]);
/// # Ok::<(), polyhead::tensor::TensorError>(())
/// ```
pub fn generate(n: usize, seed: u64) -> Result<Glyphs, TensorError> {
    let mut rng = Rng::new(seed);
    let mut images = vec![0.0_f32; n * SIDE * SIDE];
    let mut labels = Vec::with_capacity(n);
    let mut boxes = Vec::with_capacity(n * 4);
    for i in 0..n {
        let class = rng.below(10) as usize;
        let scale = 1 + rng.below(3) as usize;
        let (w, h) = (5 * scale, 7 * scale);
        let x0 = rng.below((SIDE - w + 1) as u64) as usize;
        let y0 = rng.below((SIDE - h + 1) as u64) as usize;
        let image = &mut images[i * SIDE * SIDE..(i + 1) * SIDE * SIDE];
        for v in image.iter_mut() {
            *v = 0.1 * rng.uniform() as f32;
        }
        for (r, row) in GLYPHS[class].iter().enumerate() {
            for (c, ch) in row.bytes().enumerate() {
                if ch == b'#' {
                    for dy in 0..scale {
                        for dx in 0..scale {
                            let (y, x) = (y0 + r * scale + dy, x0 + c * scale + dx);
                            image[y * SIDE + x] = 0.8 + 0.2 * rng.uniform() as f32;
                        }
                    }
                }
            }
        }
        labels.push(class);
        let s = SIDE as f32;
        boxes.extend_from_slice(&[
            x0 as f32 / s,
            y0 as f32 / s,
            (x0 + w) as f32 / s,
            (y0 + h) as f32 / s,
        ]);
    }
    Ok(Glyphs {
        images: Tensor::from_vec(images, &[n, SIDE * SIDE])?,
        labels: Labels::from_classes(&labels),
        boxes: Tensor::from_vec(boxes, &[n, 4])?,
    })
}
