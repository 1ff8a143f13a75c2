//! Flattening all but the batch axis.

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::Float;

use crate::error::{LayerError, Result};
use crate::module::Module;

/// Reshapes `[batch, d1, d2, ...]` to `[batch, d1 * d2 * ...]`.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Flatten, Module};
/// use polyhead_tensor::Tensor;
/// let tape = Tape::<f32>::new();
/// let images = tape.constant(Tensor::zeros(&[16, 28, 28])?);
/// assert_eq!(Flatten.forward(images)?.shape(), vec![16, 784]);
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct Flatten;

impl<T: Float> Module<T> for Flatten {
    fn export(&self, g: &mut crate::export::Graph, name: &str, x: &str) -> Result<String> {
        Ok(g.op(
            name,
            "Flatten",
            &[x.to_string()],
            vec![("axis", crate::export::Attribute::Int(1))],
        ))
    }

    fn forward<'t>(&self, x: Var<'t, T>) -> Result<Var<'t, T>> {
        let shape = x.shape();
        let Some((&batch, rest)) = shape.split_first() else {
            return Err(LayerError::Shape {
                layer: "flatten",
                message: "input is 0-dimensional; it needs a batch axis".to_string(),
            });
        };
        Ok(x.reshape(&[batch, rest.iter().product()])?)
    }

    fn visit_parameters<'a>(&'a self, _: &str, _: &mut dyn FnMut(String, &'a Parameter<T>)) {}

    fn visit_parameters_mut<'a>(
        &'a mut self,
        _: &str,
        _: &mut dyn FnMut(String, &'a mut Parameter<T>),
    ) {
    }
}
