//! Parameters: tensors owned outside the tape, with stable identities.

use std::sync::atomic::{AtomicU64, Ordering};

use polyhead_tensor::{Float, Tensor, shape};

use crate::error::{AutogradError, Result};

/// The stable identity of a [`Parameter`], unique in the process.
///
/// ```
/// use polyhead_autograd::Parameter;
/// use polyhead_tensor::Tensor;
/// let a = Parameter::new(Tensor::<f32>::zeros(&[2])?);
/// let b = Parameter::new(Tensor::<f32>::zeros(&[2])?);
/// assert_ne!(a.id(), b.id());
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ParamId(u64);

impl ParamId {
    /// A fresh identity, never returned before in this process.
    ///
    /// ```
    /// use polyhead_autograd::ParamId;
    /// assert_ne!(ParamId::fresh(), ParamId::fresh());
    /// ```
    pub fn fresh() -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        ParamId(NEXT.fetch_add(1, Ordering::Relaxed))
    }
}

/// A trainable tensor owned by a layer (not by the tape). Bring it onto a
/// tape with [`crate::Tape::param`]; read its gradient with
/// [`crate::Gradients::param`].
///
/// Cloning a parameter gives a new, independent parameter (a new id) with
/// the same value: a cloned model is a different model.
///
/// ```
/// use polyhead_autograd::{Parameter, Tape};
/// use polyhead_tensor::Tensor;
/// let w = Parameter::new(Tensor::from_vec(vec![2.0_f64], &[1])?);
/// let tape = Tape::new();
/// let loss = tape.param(&w).mul(tape.param(&w))?.sum_all(); // w^2
/// let grads = tape.backward(loss)?;
/// assert_eq!(grads.param(&w).unwrap().to_vec(), vec![4.0]);
/// # Ok::<(), polyhead_autograd::AutogradError>(())
/// ```
#[derive(Debug)]
pub struct Parameter<T: Float = f32> {
    id: ParamId,
    value: Tensor<T>,
}

impl<T: Float> Parameter<T> {
    /// A parameter with the given initial value and a fresh id.
    ///
    /// ```
    /// let p = polyhead_autograd::Parameter::new(polyhead_tensor::Tensor::<f32>::zeros(&[3, 2])?);
    /// assert_eq!(p.value().shape(), &[3, 2]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn new(value: Tensor<T>) -> Self {
        Parameter {
            id: ParamId::fresh(),
            value,
        }
    }

    /// The parameter's identity.
    ///
    /// ```
    /// let p = polyhead_autograd::Parameter::new(polyhead_tensor::Tensor::<f32>::zeros(&[1])?);
    /// assert_eq!(p.id(), p.id());
    /// assert_ne!(p.id(), p.clone().id());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn id(&self) -> ParamId {
        self.id
    }

    /// The current value.
    ///
    /// ```
    /// let p = polyhead_autograd::Parameter::new(polyhead_tensor::Tensor::<f32>::ones(&[2])?);
    /// assert_eq!(p.value().shape(), &[2]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn value(&self) -> &Tensor<T> {
        &self.value
    }

    /// Replaces the value (an optimizer step, a checkpoint load); the shape
    /// must not change.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let mut p = polyhead_autograd::Parameter::new(Tensor::<f32>::ones(&[2])?);
    /// p.set_value(Tensor::zeros(&[2])?).unwrap();
    /// assert!(p.set_value(Tensor::zeros(&[3])?).is_err());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn set_value(&mut self, value: Tensor<T>) -> Result<()> {
        if !shape::same(value.shape(), self.value.shape()) {
            return Err(AutogradError::Op {
                op: "set_value",
                message: format!(
                    "new value has shape {:?}, the parameter has shape {:?}",
                    value.shape(),
                    self.value.shape()
                ),
            });
        }
        self.value = value;
        Ok(())
    }
}

impl<T: Float> Clone for Parameter<T> {
    fn clone(&self) -> Self {
        Parameter::new(self.value.clone())
    }
}
