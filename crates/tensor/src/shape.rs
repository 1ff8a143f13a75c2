//! Shape arithmetic shared by every op: broadcasting, axis normalisation and
//! overflow-checked element counts.

use ndarray::{Dimension, IxDyn};

use crate::error::{Result, TensorError};

/// The number of elements of `shape`, or an [`TensorError::Overflow`] if the
/// product (in bytes of `elem_size`) does not fit in `isize`.
///
/// ```
/// use polyhead_tensor::shape::checked_len;
/// assert_eq!(checked_len("zeros", &[2, 3, 4], 4).unwrap(), 24);
/// assert!(checked_len("zeros", &[usize::MAX, 2], 4).is_err());
/// ```
pub fn checked_len(op: &'static str, shape: &[usize], elem_size: usize) -> Result<usize> {
    let overflow = || TensorError::Overflow {
        op,
        shape: shape.to_vec(),
    };
    let len = shape
        .iter()
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    // ndarray requires the product of non-zero axis lengths to fit in isize,
    // and the allocation in bytes must too.
    let nonzero = shape
        .iter()
        .filter(|&&d| d != 0)
        .try_fold(1usize, |acc, &d| acc.checked_mul(d))
        .ok_or_else(overflow)?;
    let bytes = nonzero.checked_mul(elem_size.max(1)).ok_or_else(overflow)?;
    if bytes > isize::MAX as usize {
        return Err(overflow());
    }
    Ok(len)
}

/// `true` if two shapes are equal. The same answer as `a == b`, compared
/// axis by axis inline: slice equality calls libc's `memcmp`, whose call
/// costs more than comparing a tensor's few axes, and hot paths (every
/// recorded op and gradient) compare shapes several times per step.
///
/// ```
/// use polyhead_tensor::shape::same;
/// assert!(same(&[2, 3], &[2, 3]));
/// assert!(same(&[], &[]));
/// assert!(!same(&[2, 3], &[3, 2]));
/// assert!(!same(&[2, 3], &[2, 3, 1]));
/// ```
#[inline]
pub fn same(a: &[usize], b: &[usize]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| x == y)
}

/// The NumPy broadcast of two shapes: align trailing axes; each pair must be
/// equal or contain a 1.
///
/// ```
/// use polyhead_tensor::shape::broadcast_shape;
/// assert_eq!(broadcast_shape("add", &[8, 1, 3], &[4, 1]).unwrap(), vec![8, 4, 3]);
/// let err = broadcast_shape("add", &[2, 3], &[4]).unwrap_err();
/// assert_eq!(err.to_string(), "add: shapes [2, 3] and [4] cannot be broadcast together");
/// ```
pub fn broadcast_shape(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Result<Vec<usize>> {
    Ok(broadcast_dims(op, lhs, rhs)?.slice().to_vec())
}

/// [`broadcast_shape`] as an `IxDyn`, which holds up to four axes inline:
/// no allocation for the shapes of an elementwise op's fast paths.
pub(crate) fn broadcast_dims(op: &'static str, lhs: &[usize], rhs: &[usize]) -> Result<IxDyn> {
    let ndim = lhs.len().max(rhs.len());
    let mut out = IxDyn::zeros(ndim);
    for i in 0..ndim {
        // Index from the right; missing leading axes act as 1.
        let l = dim_from_right(lhs, ndim - 1 - i);
        let r = dim_from_right(rhs, ndim - 1 - i);
        out[i] = match (l, r) {
            (a, b) if a == b => a,
            (1, b) => b,
            (a, 1) => a,
            _ => {
                return Err(TensorError::Broadcast {
                    op,
                    lhs: lhs.to_vec(),
                    rhs: rhs.to_vec(),
                });
            }
        };
    }
    checked_len(op, out.slice(), 8)?;
    Ok(out)
}

fn dim_from_right(shape: &[usize], from_right: usize) -> usize {
    if from_right < shape.len() {
        shape[shape.len() - 1 - from_right]
    } else {
        1
    }
}

/// Turns a possibly negative axis (`-1` is the last) into an index in
/// `0..ndim`, or an [`TensorError::Axis`] naming the shape.
///
/// ```
/// use polyhead_tensor::shape::normalize_axis;
/// assert_eq!(normalize_axis("sum", -1, &[2, 3]).unwrap(), 1);
/// assert!(normalize_axis("sum", 2, &[2, 3]).is_err());
/// ```
pub fn normalize_axis(op: &'static str, axis: isize, shape: &[usize]) -> Result<usize> {
    normalize_axis_for_rank(op, axis, shape, shape.len())
}

/// Like [`normalize_axis`], but for an op whose result has rank `rank`
/// (e.g. `stack`, which inserts a new axis and accepts `0..=ndim`).
pub(crate) fn normalize_axis_for_rank(
    op: &'static str,
    axis: isize,
    shape: &[usize],
    rank: usize,
) -> Result<usize> {
    let rank_i = rank as isize;
    let idx = if axis < 0 { axis + rank_i } else { axis };
    if idx < 0 || idx >= rank_i {
        return Err(TensorError::Axis {
            op,
            axis,
            shape: shape.to_vec(),
        });
    }
    Ok(idx as usize)
}
