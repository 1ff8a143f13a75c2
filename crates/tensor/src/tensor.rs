//! The [`Tensor`] type: creation, conversion and inspection.

use std::fmt;

use ndarray::{ArcArray, Array, ArrayD, ArrayViewD, Dimension, IxDyn};

use crate::element::Float;
use crate::error::{Result, TensorError};
use crate::random::Rng;
use crate::shape::checked_len;

/// An n-dimensional array of `f32` or `f64`.
///
/// The data lives in an `ndarray::ArcArray`, so cloning a tensor is cheap
/// (a reference count), and views such as [`Tensor::transpose`] or
/// [`Tensor::slice_axis`] share the buffer instead of copying it. A
/// 0-dimensional tensor (a loss value, its gradient seed) holds its value
/// inline and allocates nothing. Operations never modify a tensor in place;
/// they return new tensors.
///
/// ```
/// use polyhead_tensor::Tensor;
/// let x = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3])?;
/// let y = x.mul(&Tensor::from_vec(vec![10.0, 20.0, 30.0], &[3])?)?; // broadcasts
/// assert_eq!(y.to_vec(), vec![10.0, 40.0, 90.0, 40.0, 100.0, 180.0]);
/// assert_eq!(y.sum_axis(1, false)?.to_vec(), vec![140.0, 320.0]);
/// # Ok::<(), polyhead_tensor::TensorError>(())
/// ```
#[derive(Clone)]
pub struct Tensor<T: Float = f32> {
    storage: Storage<T>,
}

/// A dropped tensor's buffer goes to this thread's [`pool`](crate::pool)
/// when nothing else shares it (then the next tensor of the same size made
/// by a kernel that writes every element reuses it, with no allocation).
impl<T: Float> Drop for Tensor<T> {
    fn drop(&mut self) {
        if let Storage::Array(array) = self.take_storage() {
            crate::pool::give(array);
        }
    }
}

/// Where a tensor's elements live.
#[derive(Clone)]
enum Storage<T: Float> {
    /// The value of a 0-dimensional tensor, inline: a multi-head step makes
    /// a dozen scalars (loss values, weighted totals, their gradients), and
    /// an `ArcArray` would cost two allocations for each.
    Scalar(T),
    /// A tensor with at least one axis ([`Tensor::from_array`] turns a
    /// 0-dimensional array into `Scalar`).
    Array(ArcArray<T, IxDyn>),
}

impl<T: Float> Tensor<T> {
    /// A tensor of the given shape filled with `value`.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::full(&[2, 2], 7.0_f64)?;
    /// assert_eq!(t.to_vec(), vec![7.0; 4]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn full(shape: &[usize], value: T) -> Result<Self> {
        if shape.is_empty() {
            return Ok(Self::scalar(value));
        }
        checked_len("full", shape, size_of::<T>())?;
        Ok(Self::from_array(ArrayD::from_elem(IxDyn(shape), value)))
    }

    /// A tensor of zeros.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::zeros(&[3])?;
    /// assert_eq!(t.to_vec(), vec![0.0; 3]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn zeros(shape: &[usize]) -> Result<Self> {
        Self::full(shape, T::ZERO)
    }

    /// A tensor of ones.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::ones(&[2, 1])?;
    /// assert_eq!(t.shape(), &[2, 1]);
    /// assert_eq!(t.to_vec(), vec![1.0, 1.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn ones(shape: &[usize]) -> Result<Self> {
        Self::full(shape, T::ONE)
    }

    /// A 0-dimensional tensor holding one value.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::scalar(2.5_f32);
    /// assert_eq!(t.shape(), &[] as &[usize]);
    /// assert_eq!(t.item()?, 2.5);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn scalar(value: T) -> Self {
        Tensor {
            storage: Storage::Scalar(value),
        }
    }

    /// A tensor from row-major data and a shape; the lengths must agree.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let t = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.get(&[1, 0])?, 3.0);
    /// let err = Tensor::from_vec(vec![1.0_f32; 5], &[2, 2]).unwrap_err();
    /// assert_eq!(err.to_string(), "from_vec: 5 elements cannot have shape [2, 2] (4 elements)");
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        let expected = checked_len("from_vec", shape, size_of::<T>())?;
        if data.len() != expected {
            return Err(TensorError::ElementCount {
                op: "from_vec",
                len: data.len(),
                shape: shape.to_vec(),
                expected,
            });
        }
        let array = ArrayD::from_shape_vec(IxDyn(shape), data)
            .expect("from_vec: length was checked against the shape");
        Ok(Self::from_array(array))
    }

    /// A row-major tensor of `shape` whose every element `fill` writes,
    /// into a buffer from this thread's [`pool`](crate::pool) when it holds
    /// one of that length (no allocation), else into a new zeroed one.
    /// `fill` must write every element: a pooled buffer holds the values
    /// of some tensor dropped earlier on this thread until it does. For
    /// kernels of one's own that make a new tensor each step.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let x = Tensor::from_vec(vec![1.0_f32, 2.0, 3.0], &[3])?;
    /// let src = x.as_slice().unwrap();
    /// let y = Tensor::from_fill(&[3], |out| {
    ///     for (o, &v) in out.iter_mut().zip(src) {
    ///         *o = v * v;
    ///     }
    /// });
    /// assert_eq!(y.to_vec(), vec![1.0, 4.0, 9.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn from_fill(shape: &[usize], fill: impl FnOnce(&mut [T])) -> Self {
        if shape.is_empty() {
            let mut value = [T::ZERO];
            fill(&mut value);
            return Self::scalar(value[0]);
        }
        let mut array = match crate::pool::take_array::<T>(shape) {
            Some(array) => array,
            None => ArcArray::from_elem(IxDyn(shape), T::ZERO),
        };
        fill(
            array
                .as_slice_mut()
                .expect("a pooled or new array is row-major and not shared"),
        );
        Self::from_shared(array)
    }

    /// A tensor from row-major data whose length is known to match `shape`
    /// (an internal invariant of the caller, not user input).
    pub(crate) fn from_contiguous(data: Vec<T>, shape: &[usize]) -> Self {
        let array = ArrayD::from_shape_vec(IxDyn(shape), data)
            .expect("from_contiguous: the caller guarantees the length");
        Self::from_array(array)
    }

    /// Wraps an owned ndarray array of any dimension, without copying.
    ///
    /// ```
    /// let a = ndarray::array![[1.0_f64, 2.0], [3.0, 4.0]];
    /// let t = polyhead_tensor::Tensor::from_array(a);
    /// assert_eq!(t.shape(), &[2, 2]);
    /// ```
    pub fn from_array<D: Dimension>(array: Array<T, D>) -> Self {
        if array.ndim() == 0 {
            return Self::scalar(*array.first().expect("a 0-d array has one element"));
        }
        Tensor {
            storage: Storage::Array(array.into_dyn().into_shared()),
        }
    }

    /// Wraps a shared ndarray array of any dimension, without copying.
    ///
    /// ```
    /// let a = ndarray::array![1.0_f32, 2.0].into_shared();
    /// let t = polyhead_tensor::Tensor::from_shared(a.clone());
    /// assert_eq!(t.to_vec(), vec![1.0, 2.0]);
    /// ```
    pub fn from_shared<D: Dimension>(array: ArcArray<T, D>) -> Self {
        if array.ndim() == 0 {
            return Self::scalar(*array.first().expect("a 0-d array has one element"));
        }
        Tensor {
            storage: Storage::Array(array.into_dyn()),
        }
    }

    /// A tensor of uniform random numbers in `[low, high)`, fully determined
    /// by `seed`.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::<f32>::rand_uniform(&[100], -1.0, 1.0, 7)?;
    /// assert!(a.to_vec().iter().all(|v| (-1.0..1.0).contains(v)));
    /// assert_eq!(a.to_vec(), Tensor::<f32>::rand_uniform(&[100], -1.0, 1.0, 7)?.to_vec());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn rand_uniform(shape: &[usize], low: T, high: T, seed: u64) -> Result<Self> {
        if !(low.is_finite() && high.is_finite() && low < high) {
            return Err(TensorError::Invalid {
                op: "rand_uniform",
                message: format!("need finite low < high, got low = {low}, high = {high}"),
            });
        }
        let len = checked_len("rand_uniform", shape, size_of::<T>())?;
        let mut rng = Rng::new(seed);
        let (lo, hi) = (low.to_f64(), high.to_f64());
        let data = (0..len)
            .map(|_| {
                let v = T::from_f64(lo + (hi - lo) * rng.uniform());
                // Rounding to f32 can land exactly on `high`; keep the interval half-open.
                if v >= high { low } else { v }
            })
            .collect();
        Self::from_vec(data, shape)
    }

    /// A tensor of normal random numbers with the given mean and standard
    /// deviation, fully determined by `seed`.
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::<f64>::rand_normal(&[10_000], 1.0, 2.0, 3)?;
    /// let mean = a.mean_all()?.item()?;
    /// assert!((mean - 1.0).abs() < 0.1);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn rand_normal(shape: &[usize], mean: T, std: T, seed: u64) -> Result<Self> {
        if !(mean.is_finite() && std.is_finite() && std >= T::ZERO) {
            return Err(TensorError::Invalid {
                op: "rand_normal",
                message: format!("need finite mean and std >= 0, got mean = {mean}, std = {std}"),
            });
        }
        let len = checked_len("rand_normal", shape, size_of::<T>())?;
        let mut rng = Rng::new(seed);
        let (m, s) = (mean.to_f64(), std.to_f64());
        let data = (0..len)
            .map(|_| T::from_f64(m + s * rng.normal()))
            .collect();
        Self::from_vec(data, shape)
    }

    /// The shape (length of each axis).
    ///
    /// ```
    /// assert_eq!(polyhead_tensor::Tensor::<f32>::zeros(&[2, 3])?.shape(), &[2, 3]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn shape(&self) -> &[usize] {
        match &self.storage {
            Storage::Scalar(_) => &[],
            Storage::Array(array) => array.shape(),
        }
    }

    /// The number of axes.
    ///
    /// ```
    /// assert_eq!(polyhead_tensor::Tensor::<f32>::zeros(&[2, 3])?.ndim(), 2);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    ///
    /// ```
    /// assert_eq!(polyhead_tensor::Tensor::<f32>::zeros(&[2, 3])?.len(), 6);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn len(&self) -> usize {
        match &self.storage {
            Storage::Scalar(_) => 1,
            Storage::Array(array) => array.len(),
        }
    }

    /// `true` if the tensor has no elements (some axis has length 0).
    ///
    /// ```
    /// assert!(polyhead_tensor::Tensor::<f32>::zeros(&[2, 0])?.is_empty());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// `true` if the elements are laid out contiguously in row-major order.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::zeros(&[2, 3])?;
    /// assert!(t.is_contiguous());
    /// assert!(!t.transpose(0, 1)?.is_contiguous());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn is_contiguous(&self) -> bool {
        match &self.storage {
            Storage::Scalar(_) => true,
            Storage::Array(array) => array.is_standard_layout(),
        }
    }

    /// A row-major contiguous tensor with the same values (a cheap clone if
    /// it already is one).
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::zeros(&[2, 3])?.transpose(0, 1)?;
    /// assert!(t.to_contiguous().is_contiguous());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn to_contiguous(&self) -> Self {
        if self.is_contiguous() {
            self.clone()
        } else {
            Self::from_array(self.view().as_standard_layout().into_owned())
        }
    }

    /// A read-only ndarray view of the data (no copy).
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::ones(&[2, 2])?;
    /// assert_eq!(t.view().sum(), 4.0);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn view(&self) -> ArrayViewD<'_, T> {
        match &self.storage {
            Storage::Scalar(value) => {
                ArrayViewD::from_shape(IxDyn(&[]), std::slice::from_ref(value))
                    .expect("one value has the empty shape")
            }
            Storage::Array(array) => array.view(),
        }
    }

    /// The elements as one row-major slice, if they are laid out that way.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.as_slice(), Some(&[1.0, 2.0, 3.0, 4.0][..]));
    /// assert_eq!(t.transpose(0, 1)?.as_slice(), None);
    /// assert_eq!(polyhead_tensor::Tensor::scalar(5.0_f32).as_slice(), Some(&[5.0][..]));
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn as_slice(&self) -> Option<&[T]> {
        match &self.storage {
            Storage::Scalar(value) => Some(std::slice::from_ref(value)),
            Storage::Array(array) => array.as_slice(),
        }
    }

    /// The data as a shared ndarray array: a reference count for a tensor
    /// with an array behind it, a new one-element array for a 0-dimensional
    /// tensor (which holds its value inline).
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::ones(&[2])?;
    /// assert_eq!(t.to_shared().len(), 2);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn to_shared(&self) -> ArcArray<T, IxDyn> {
        match &self.storage {
            Storage::Scalar(value) => ArcArray::from_elem(IxDyn(&[]), *value),
            Storage::Array(array) => array.clone(),
        }
    }

    /// Converts into an owned ndarray array; copies only if the buffer is
    /// shared with another tensor.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::ones(&[3])?;
    /// let a: ndarray::ArrayD<f32> = t.into_array();
    /// assert_eq!(a.len(), 3);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn into_array(mut self) -> ArrayD<T> {
        match self.take_storage() {
            Storage::Scalar(value) => ArrayD::from_elem(IxDyn(&[]), value),
            Storage::Array(array) => array.into_owned(),
        }
    }

    /// The owned ndarray array without copying when no other tensor shares
    /// the buffer; otherwise the tensor back, unchanged.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::ones(&[3])?;
    /// let shared = t.clone();
    /// let t = t.try_into_array().unwrap_err(); // `shared` holds the buffer too
    /// drop(shared);
    /// assert_eq!(t.try_into_array().unwrap().len(), 3);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn try_into_array(self) -> std::result::Result<ArrayD<T>, Tensor<T>> {
        match &self.storage {
            Storage::Array(array) if !array.is_unique() => Err(self),
            _ => Ok(self.into_array()),
        }
    }

    /// The shared ndarray array itself, without copying (a scalar becomes a
    /// new 0-dimensional array). The inverse of [`Tensor::from_shared`].
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::<f32>::ones(&[2])?;
    /// let a = t.into_shared();
    /// assert!(a.is_unique());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn into_shared(mut self) -> ArcArray<T, IxDyn> {
        match self.take_storage() {
            Storage::Scalar(value) => ArcArray::from_elem(IxDyn(&[]), value),
            Storage::Array(array) => array,
        }
    }

    /// Moves the storage out, leaving a scalar behind (for the methods that
    /// consume `self`: `Tensor` has a `Drop`).
    fn take_storage(&mut self) -> Storage<T> {
        std::mem::replace(&mut self.storage, Storage::Scalar(T::ZERO))
    }

    /// The elements in row-major (logical) order.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![1.0_f32, 2.0, 3.0, 4.0], &[2, 2])?;
    /// assert_eq!(t.transpose(0, 1)?.to_vec(), vec![1.0, 3.0, 2.0, 4.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn to_vec(&self) -> Vec<T> {
        // A row-major tensor is one memcpy; ndarray's element iterator is
        // far slower (about 1 ns per element), so it serves other layouts.
        match self.as_slice() {
            Some(values) => values.to_vec(),
            None => self.view().iter().copied().collect(),
        }
    }

    /// The single value of a tensor with exactly one element (any shape).
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![3.0_f32], &[1, 1])?;
    /// assert_eq!(t.item()?, 3.0);
    /// assert!(polyhead_tensor::Tensor::<f32>::zeros(&[2])?.item().is_err());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn item(&self) -> Result<T> {
        if self.len() != 1 {
            return Err(TensorError::Invalid {
                op: "item",
                message: format!(
                    "needs exactly one element, tensor has shape {:?} ({} elements)",
                    self.shape(),
                    self.len()
                ),
            });
        }
        match &self.storage {
            Storage::Scalar(value) => Ok(*value),
            Storage::Array(array) => Ok(*array.iter().next().expect("one element")),
        }
    }

    /// The element at a multi-index, or an error naming the index and shape.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![1.0_f32, 2.0, 3.0], &[3])?;
    /// assert_eq!(t.get(&[2])?, 3.0);
    /// assert!(t.get(&[3]).is_err());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn get(&self, index: &[usize]) -> Result<T> {
        self.view()
            .get(IxDyn(index))
            .copied()
            .ok_or_else(|| TensorError::Invalid {
                op: "get",
                message: format!(
                    "index {index:?} is out of bounds for shape {:?}",
                    self.shape()
                ),
            })
    }

    /// Converts every element to another float type.
    ///
    /// ```
    /// let t = polyhead_tensor::Tensor::from_vec(vec![0.1_f64], &[1])?;
    /// assert_eq!(t.cast::<f32>().to_vec(), vec![0.1_f32]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn cast<U: Float>(&self) -> Tensor<U> {
        match &self.storage {
            Storage::Scalar(value) => Tensor::scalar(U::from_f64(value.to_f64())),
            Storage::Array(array) => Tensor::from_array(array.map(|&v| U::from_f64(v.to_f64()))),
        }
    }

    /// `true` if the shapes are equal and every pair of elements satisfies
    /// `|a - b| <= atol + rtol * |b|` (NaN is never close).
    ///
    /// ```
    /// use polyhead_tensor::Tensor;
    /// let a = Tensor::from_vec(vec![1.0_f64, 2.0], &[2])?;
    /// let b = Tensor::from_vec(vec![1.0_f64, 2.0 + 1e-12], &[2])?;
    /// assert!(a.all_close(&b, 1e-9, 0.0));
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn all_close(&self, other: &Tensor<T>, rtol: f64, atol: f64) -> bool {
        crate::shape::same(self.shape(), other.shape())
            && self.view().iter().zip(other.view().iter()).all(|(&a, &b)| {
                let (a, b) = (a.to_f64(), b.to_f64());
                (a - b).abs() <= atol + rtol * b.abs()
            })
    }
}

impl<T: Float, D: Dimension> From<Array<T, D>> for Tensor<T> {
    fn from(array: Array<T, D>) -> Self {
        Tensor::from_array(array)
    }
}

impl<T: Float, D: Dimension> From<ArcArray<T, D>> for Tensor<T> {
    fn from(array: ArcArray<T, D>) -> Self {
        Tensor::from_shared(array)
    }
}

impl<T: Float> fmt::Debug for Tensor<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Tensor<{}>{:?} {}", T::NAME, self.shape(), self.view())
    }
}
