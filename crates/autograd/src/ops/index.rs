//! Indexing: gather along an axis by per-position indices (sparse labels),
//! index_select (embedding lookups), and select-by-mask (`where`). Their
//! backward scatters the gradient back to the positions that were read.

use ndarray::{ArrayD, Axis, Dimension, IxDyn, Zip};
use polyhead_tensor::shape::{broadcast_shape, normalize_axis};
use polyhead_tensor::{Float, Tensor};

use crate::error::{AutogradError, Result};
use crate::op::{BackwardContext, Op};
use crate::tape::Var;

type Grads<T> = Result<Vec<Option<Tensor<T>>>>;

/// `out[p] = x[p with p[axis] = index[p]]` (PyTorch's `gather`).
struct Gather {
    axis: usize,
    index: ArrayD<usize>,
}
impl<T: Float> Op<T> for Gather {
    fn name(&self) -> &'static str {
        "gather"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        let x = x[0].view();
        let mut pos = IxDyn(&vec![0; x.ndim()]);
        let out = ArrayD::from_shape_fn(self.index.raw_dim(), |p| {
            pos.slice_mut().copy_from_slice(p.slice());
            pos[self.axis] = self.index[&p];
            x[&pos]
        });
        Ok(Tensor::from_array(out))
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let x = &ctx.inputs[0];
        let dx = ctx.grad_for(0, || {
            let mut dx = ArrayD::from_elem(x.shape(), T::ZERO);
            let g = ctx.grad_output.view();
            for (p, &i) in self.index.indexed_iter() {
                let mut q = p.clone();
                q[self.axis] = i;
                dx[&q] += g[&p];
            }
            Ok(Tensor::from_array(dx))
        })?;
        Ok(vec![dx])
    }
}

/// The slices `indices[k]` of `x` along `axis`, in order (an embedding
/// lookup when `axis` is 0).
struct IndexSelect {
    axis: usize,
    indices: Vec<usize>,
}
impl<T: Float> Op<T> for IndexSelect {
    fn name(&self) -> &'static str {
        "index_select"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(Tensor::from_array(
            x[0].view().select(Axis(self.axis), &self.indices),
        ))
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let x = &ctx.inputs[0];
        let dx = ctx.grad_for(0, || {
            let mut dx = ArrayD::from_elem(x.shape(), T::ZERO);
            let g = ctx.grad_output.view();
            for (k, &i) in self.indices.iter().enumerate() {
                let mut row = dx.index_axis_mut(Axis(self.axis), i);
                row += &g.index_axis(Axis(self.axis), k);
            }
            Ok(Tensor::from_array(dx))
        })?;
        Ok(vec![dx])
    }
}

/// `mask ? a : b`, all three broadcast together.
struct Select {
    mask: ArrayD<bool>,
}
impl<T: Float> Op<T> for Select {
    fn name(&self) -> &'static str {
        "select"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        let ab = broadcast_shape("select", x[0].shape(), x[1].shape())?;
        let shape = broadcast_shape("select", &ab, self.mask.shape())?;
        let (a, b) = (x[0].broadcast_to(&shape)?, x[1].broadcast_to(&shape)?);
        let m = self.mask.broadcast(IxDyn(&shape)).expect("shape checked");
        let out = Zip::from(&m)
            .and(&a.view())
            .and(&b.view())
            .map_collect(|&m, &a, &b| if m { a } else { b });
        Ok(Tensor::from_array(out))
    }
    fn backward(&self, ctx: &BackwardContext<'_, T>) -> Grads<T> {
        let g = ctx.grad_output;
        let m = self
            .mask
            .broadcast(IxDyn(g.shape()))
            .expect("shape checked in forward");
        let pick = |want: bool| {
            let out = Zip::from(&m)
                .and(&g.view())
                .map_collect(|&m, &g| if m == want { g } else { T::ZERO });
            Tensor::from_array(out)
        };
        Ok(vec![
            ctx.grad_for(0, || Ok(pick(true).sum_to_shape(ctx.inputs[0].shape())?))?,
            ctx.grad_for(1, || Ok(pick(false).sum_to_shape(ctx.inputs[1].shape())?))?,
        ])
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// PyTorch's `gather`: `out[p] = self[p with p[axis] = index[p]]`.
    /// `index` has the same rank as `self`, each other axis no longer than
    /// `self`'s, and every entry below `self`'s length along `axis`. Picking
    /// each row's true-class log-probability is `gather(1, labels [n, 1])`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let logp = tape.leaf(Tensor::from_vec(vec![-0.1, -2.0, -3.0, -0.5], &[2, 2])?);
    /// let labels = ndarray::array![[0_usize], [1]].into_dyn();
    /// let picked = logp.gather(1, &labels)?;
    /// assert_eq!(picked.value().to_vec(), vec![-0.1, -0.5]);
    /// let grads = tape.backward(picked.sum_all())?;
    /// assert_eq!(grads.wrt(logp)?.to_vec(), vec![1.0, 0.0, 0.0, 1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn gather(self, axis: isize, index: &ArrayD<usize>) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let ax = normalize_axis("gather", axis, &shape)?;
        let fits = index.ndim() == shape.len()
            && index
                .shape()
                .iter()
                .zip(&shape)
                .enumerate()
                .all(|(d, (&i, &s))| d == ax || i <= s);
        if !fits {
            return Err(AutogradError::Op {
                op: "gather",
                message: format!(
                    "index of shape {:?} does not fit input of shape {shape:?} along axis {axis}",
                    index.shape()
                ),
            });
        }
        if let Some((p, &i)) = index.indexed_iter().find(|&(_, &i)| i >= shape[ax]) {
            return Err(AutogradError::Op {
                op: "gather",
                message: format!(
                    "index {i} at position {:?} is out of range for axis {axis} of length {}",
                    p.slice(),
                    shape[ax]
                ),
            });
        }
        self.apply(Gather {
            axis: ax,
            index: index.clone(),
        })
    }

    /// The slices at `indices` along `axis`, in order (repeats allowed): an
    /// embedding lookup is `table.index_select(0, &token_ids)`.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let table = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[3, 2])?);
    /// let rows = table.index_select(0, &[2, 0, 2])?;
    /// assert_eq!(rows.value().to_vec(), vec![5.0, 6.0, 1.0, 2.0, 5.0, 6.0]);
    /// let grads = tape.backward(rows.sum_all())?;
    /// assert_eq!(grads.wrt(table)?.to_vec(), vec![1.0, 1.0, 0.0, 0.0, 2.0, 2.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn index_select(self, axis: isize, indices: &[usize]) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let ax = normalize_axis("index_select", axis, &shape)?;
        if let Some((k, &i)) = indices.iter().enumerate().find(|&(_, &i)| i >= shape[ax]) {
            return Err(AutogradError::Op {
                op: "index_select",
                message: format!(
                    "index {i} (position {k}) is out of range for axis {axis} of shape {shape:?}"
                ),
            });
        }
        self.apply(IndexSelect {
            axis: ax,
            indices: indices.to_vec(),
        })
    }

    /// `mask ? on_true : on_false` elementwise, with `mask`, `on_true` and
    /// `on_false` broadcast together (NumPy's `where`). Gradients flow only
    /// to the selected side.
    ///
    /// ```
    /// use polyhead_autograd::{Tape, Var};
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let a = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])?);
    /// let zero = tape.constant(Tensor::scalar(0.0));
    /// let mask = ndarray::array![true, false, true].into_dyn();
    /// let y = Var::select(&mask, a, zero)?;
    /// assert_eq!(y.value().to_vec(), vec![1.0, 0.0, 3.0]);
    /// assert_eq!(tape.backward(y.sum_all())?.wrt(a)?.to_vec(), vec![1.0, 0.0, 1.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn select(
        mask: &ArrayD<bool>,
        on_true: Var<'t, T>,
        on_false: Var<'t, T>,
    ) -> Result<Var<'t, T>> {
        on_true
            .tape
            .apply(Select { mask: mask.clone() }, &[on_true, on_false])
    }
}
