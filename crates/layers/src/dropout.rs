//! Dropout.

use std::cell::Cell;

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::{Float, Rng, Tensor};

use crate::error::{LayerError, Result};
use crate::module::Module;

/// Inverted dropout: in training, each element is zeroed with probability
/// `rate` and the rest scaled by `1 / (1 - rate)`; in evaluation it is the
/// identity. Seeded: the sequence of masks is fixed by the seed.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Dropout, Module};
/// use polyhead_tensor::Tensor;
/// let mut drop = Dropout::new(0.5, 7)?;
/// let tape = Tape::<f64>::new();
/// let y = drop.forward(tape.constant(Tensor::ones(&[1000])?))?.value().to_vec();
/// assert!(y.iter().all(|&v| v == 0.0 || v == 2.0));
/// drop.set_training(false);
/// assert_eq!(drop.forward(tape.constant(Tensor::ones(&[3])?))?.value().to_vec(), vec![1.0; 3]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone)]
pub struct Dropout {
    rate: f64,
    seed: u64,
    calls: Cell<u64>,
    training: bool,
}

impl Dropout {
    /// Dropout with `rate` in `[0, 1)` and a seed.
    ///
    /// ```
    /// assert!(polyhead_layers::Dropout::new(0.2, 1).is_ok());
    /// assert!(polyhead_layers::Dropout::new(-0.1, 1).is_err());
    /// ```
    pub fn new(rate: f64, seed: u64) -> Result<Self> {
        if !(0.0..1.0).contains(&rate) {
            return Err(LayerError::Invalid {
                what: "dropout",
                message: format!("rate must be in [0, 1), got {rate}"),
            });
        }
        Ok(Dropout {
            rate,
            seed,
            calls: Cell::new(0),
            training: true,
        })
    }

    /// Switches dropout on (training) or off (evaluation).
    ///
    /// ```
    /// let mut d = polyhead_layers::Dropout::new(0.5, 1)?;
    /// d.set_training(false); // evaluation: the identity
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn set_training(&mut self, training: bool) {
        self.training = training;
    }
}

impl<T: Float> Module<T> for Dropout {
    /// Inference: the identity (its mask, if any, stays).
    fn export(&self, _: &mut crate::export::Graph, _: &str, x: &str) -> Result<String> {
        Ok(x.to_string())
    }

    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        if !self.training || self.rate == 0.0 {
            return Ok(x);
        }
        let call = self.calls.get();
        self.calls.set(call + 1);
        let mut rng = Rng::new(self.seed ^ call.wrapping_mul(0x9E37_79B9_7F4A_7C15));
        let keep = T::from_f64(1.0 / (1.0 - self.rate));
        let shape = x.shape();
        let n = shape.iter().product();
        let mask: Vec<T> = (0..n)
            .map(|_| {
                if rng.uniform() < self.rate {
                    T::ZERO
                } else {
                    keep
                }
            })
            .collect();
        crate::module::pass_mask(
            x,
            x.mul(x.tape().constant(Tensor::from_vec(mask, &shape)?))?,
        )
    }

    fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<T>)) {}

    fn visit_parameters_mut<'a>(
        &'a mut self,
        _: &str,
        _: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
    }

    fn set_training(&mut self, training: bool) {
        Dropout::set_training(self, training);
    }
}
