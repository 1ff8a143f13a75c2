//! Weight initializers, seeded so a model built twice with one seed is
//! identical.

use polyhead_tensor::{Float, Rng, Tensor};

use crate::error::{LayerError, Result};

/// How a parameter's first value is drawn. `fan_in` and `fan_out` are the
/// kernel's input and output sizes (Keras' definitions for a `[in, out]`
/// kernel).
///
/// ```
/// use polyhead_layers::Initializer;
/// use polyhead_tensor::Rng;
/// let mut rng = Rng::new(7);
/// let w = Initializer::GlorotUniform.init::<f32>(&[64, 10], 64, 10, &mut rng)?;
/// let limit = (6.0_f32 / 74.0).sqrt();
/// assert!(w.to_vec().iter().all(|v| v.abs() <= limit));
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Initializer {
    /// Uniform in `±sqrt(6 / (fan_in + fan_out))`: Keras' default for Dense.
    GlorotUniform,
    /// Truncated normal (within 2 standard deviations) with standard
    /// deviation `sqrt(2 / (fan_in + fan_out))`, as Keras draws it.
    GlorotNormal,
    /// Uniform in `±sqrt(6 / fan_in)`.
    HeUniform,
    /// Truncated normal with standard deviation `sqrt(2 / fan_in)`.
    HeNormal,
    /// All zeros (Keras' default for biases).
    Zeros,
    /// Uniform in `[low, high)` (Keras' `RandomUniform`).
    Uniform(f64, f64),
    /// Every value the same.
    Constant(f64),
}

/// The standard deviation of a standard normal truncated at ±2, by which
/// Keras divides so the truncated draw has the intended spread.
const TRUNCATED_STD: f64 = 0.879_625_661_034_239_8;

impl Initializer {
    /// Draws a tensor of `shape` from `rng`.
    ///
    /// ```
    /// use polyhead_layers::Initializer;
    /// let t = Initializer::Zeros.init::<f32>(&[2, 3], 2, 3, &mut polyhead_tensor::Rng::new(0))?;
    /// assert_eq!(t.to_vec(), vec![0.0; 6]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn init<T: Float>(
        &self,
        shape: &[usize],
        fan_in: usize,
        fan_out: usize,
        rng: &mut Rng,
    ) -> Result<Tensor<T>> {
        let n: usize = shape.iter().product();
        let (fi, fo) = (fan_in.max(1) as f64, fan_out.max(1) as f64);
        let uniform = |limit: f64, rng: &mut Rng| -> Vec<T> {
            (0..n)
                .map(|_| T::from_f64((2.0 * rng.uniform() - 1.0) * limit))
                .collect()
        };
        let truncated = |std: f64, rng: &mut Rng| -> Vec<T> {
            (0..n)
                .map(|_| {
                    loop {
                        let z = rng.normal();
                        if z.abs() <= 2.0 {
                            break T::from_f64(z * std / TRUNCATED_STD);
                        }
                    }
                })
                .collect()
        };
        let data = match *self {
            Initializer::GlorotUniform => uniform((6.0 / (fi + fo)).sqrt(), rng),
            Initializer::GlorotNormal => truncated((2.0 / (fi + fo)).sqrt(), rng),
            Initializer::HeUniform => uniform((6.0 / fi).sqrt(), rng),
            Initializer::HeNormal => truncated((2.0 / fi).sqrt(), rng),
            Initializer::Zeros => vec![T::ZERO; n],
            Initializer::Uniform(low, high) => {
                if !(low.is_finite() && high.is_finite() && low < high) {
                    return Err(LayerError::Invalid {
                        what: "initializer",
                        message: format!("uniform needs finite low < high, got {low} and {high}"),
                    });
                }
                (0..n)
                    .map(|_| T::from_f64(low + (high - low) * rng.uniform()))
                    .collect()
            }
            Initializer::Constant(c) => {
                if !c.is_finite() {
                    return Err(LayerError::Invalid {
                        what: "initializer",
                        message: format!("constant must be finite, got {c}"),
                    });
                }
                vec![T::from_f64(c); n]
            }
        };
        Ok(Tensor::from_vec(data, shape)?)
    }
}
