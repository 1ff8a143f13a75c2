//! [`Buffer`]: a layer's state that is not trained, such as batch
//! normalization's moving mean and variance.

use std::sync::RwLock;

use polyhead_tensor::{Float, Tensor};

use crate::error::{LayerError, Result};

/// A named tensor a layer keeps across steps without training it: saved
/// and restored by checkpoints (listed by [`crate::Module::visit_buffers`]),
/// never seen by an optimizer. Its value sits behind a lock, so a layer's
/// `forward(&self)` can update it in training mode, and a model holding it
/// stays `Send + Sync`.
///
/// ```
/// use polyhead_layers::Buffer;
/// use polyhead_tensor::Tensor;
/// let moving_mean = Buffer::new(Tensor::<f32>::zeros(&[3])?);
/// moving_mean.set_value(Tensor::from_vec(vec![0.5, 1.0, 1.5], &[3])?)?;
/// assert_eq!(moving_mean.value().to_vec(), vec![0.5, 1.0, 1.5]);
/// // Its shape is fixed: a value of another shape is refused.
/// assert!(moving_mean.set_value(Tensor::zeros(&[4])?).is_err());
/// # Ok::<(), polyhead_layers::LayerError>(())
/// ```
#[derive(Debug)]
pub struct Buffer<T: Float> {
    value: RwLock<Tensor<T>>,
}

impl<T: Float> Buffer<T> {
    /// A buffer holding `value`; its shape is fixed from now on.
    ///
    /// ```
    /// let b = polyhead_layers::Buffer::new(polyhead_tensor::Tensor::<f64>::ones(&[2])?);
    /// assert_eq!(b.shape(), vec![2]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn new(value: Tensor<T>) -> Self {
        Buffer {
            value: RwLock::new(value),
        }
    }

    /// The current value (a cheap shared copy).
    ///
    /// ```
    /// let b = polyhead_layers::Buffer::new(polyhead_tensor::Tensor::<f32>::full(&[2], 3.0)?);
    /// assert_eq!(b.value().to_vec(), vec![3.0, 3.0]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn value(&self) -> Tensor<T> {
        self.read().clone()
    }

    /// The value's shape.
    ///
    /// ```
    /// let b = polyhead_layers::Buffer::new(polyhead_tensor::Tensor::<f32>::zeros(&[2, 5])?);
    /// assert_eq!(b.shape(), vec![2, 5]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn shape(&self) -> Vec<usize> {
        self.read().shape().to_vec()
    }

    /// Replaces the value; an error (and no change) if the shape differs
    /// or a value is not finite.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let b = polyhead_layers::Buffer::new(Tensor::<f32>::zeros(&[2])?);
    /// let err = b.set_value(Tensor::from_vec(vec![1.0, f32::NAN], &[2])?).unwrap_err();
    /// assert_eq!(err.to_string(), "buffer: the new value holds NaN at index 1");
    /// assert_eq!(b.value().to_vec(), vec![0.0, 0.0]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn set_value(&self, value: Tensor<T>) -> Result<()> {
        let shape = self.shape();
        if value.shape() != shape.as_slice() {
            return Err(LayerError::Invalid {
                what: "buffer",
                message: format!(
                    "a new value of shape {:?} for a buffer of shape {shape:?}",
                    value.shape()
                ),
            });
        }
        if let Some((i, v)) = value
            .to_vec()
            .iter()
            .enumerate()
            .find(|(_, v)| !v.is_finite())
        {
            return Err(LayerError::Invalid {
                what: "buffer",
                message: format!("the new value holds {v:?} at index {i}"),
            });
        }
        *self.value.write().unwrap_or_else(|e| e.into_inner()) = value;
        Ok(())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Tensor<T>> {
        // A panic elsewhere while holding the lock leaves a whole tensor
        // (it is replaced in one assignment), so a poisoned lock is usable.
        self.value.read().unwrap_or_else(|e| e.into_inner())
    }
}

impl<T: Float> Clone for Buffer<T> {
    fn clone(&self) -> Self {
        Buffer::new(self.value())
    }
}
