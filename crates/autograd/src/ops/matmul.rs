//! Matrix multiplication, 2-D and batched 3-D. Backward computes
//! `dA = G B^T` and `dB = A^T G` by handing transposed *views* to the
//! strided GEMM: no transposed copy is ever made.

use ndarray::{Array3, ArrayView3, Axis, Ix3};
use polyhead_tensor::{Float, Tensor, gemm, gemm_tensor};

use crate::error::Result;
use crate::op::{BackwardContext, Op, backward_via_into};
use crate::tape::Var;

struct MatMul;

impl<T: Float> Op<T> for MatMul {
    fn name(&self) -> &'static str {
        "matmul"
    }
    fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(x[0].matmul(x[1])?)
    }
    backward_via_into!();
    fn backward_into(
        &self,
        ctx: &BackwardContext<'_, T>,
        grads: &mut [Option<Tensor<T>>],
    ) -> Result<()> {
        let (a, b, g) = (&ctx.inputs[0], &ctx.inputs[1], ctx.grad_output);
        if a.ndim() == 2 && b.ndim() == 2 {
            let (a2, b2) = (as_2d(a), as_2d(b));
            let g2 = as_2d(g);
            let da = ctx.grad_for(0, || Ok(gemm_tensor(T::ONE, g2.view(), b2.t())?))?;
            let db = ctx.grad_for(1, || Ok(gemm_tensor(T::ONE, a2.t(), g2.view())?))?;
            (grads[0], grads[1]) = (da, db);
            return Ok(());
        }
        // Batched: an operand with a batch of 1 (or 2-D) was broadcast, so
        // its gradient sums the per-batch products (GEMM with beta = 1).
        let (a3, b3, g3) = (as_3d(a), as_3d(b), as_3d(g));
        let da = ctx.grad_for(0, || {
            let mut da = Array3::from_elem(a3.dim(), T::ZERO);
            for i in 0..g3.len_of(Axis(0)) {
                let target = if a3.len_of(Axis(0)) == 1 { 0 } else { i };
                let bi = b3.index_axis(Axis(0), if b3.len_of(Axis(0)) == 1 { 0 } else { i });
                let gi = g3.index_axis(Axis(0), i);
                gemm(
                    T::ONE,
                    gi,
                    bi.t(),
                    T::ONE,
                    da.index_axis_mut(Axis(0), target),
                )?;
            }
            Ok(Tensor::from_array(da).reshape(a.shape())?)
        })?;
        let db = ctx.grad_for(1, || {
            let mut db = Array3::from_elem(b3.dim(), T::ZERO);
            for i in 0..g3.len_of(Axis(0)) {
                let target = if b3.len_of(Axis(0)) == 1 { 0 } else { i };
                let ai = a3.index_axis(Axis(0), if a3.len_of(Axis(0)) == 1 { 0 } else { i });
                let gi = g3.index_axis(Axis(0), i);
                gemm(
                    T::ONE,
                    ai.t(),
                    gi,
                    T::ONE,
                    db.index_axis_mut(Axis(0), target),
                )?;
            }
            Ok(Tensor::from_array(db).reshape(b.shape())?)
        })?;
        (grads[0], grads[1]) = (da, db);
        Ok(())
    }
}

fn as_2d<T: Float>(t: &Tensor<T>) -> ndarray::ArrayView2<'_, T> {
    t.view()
        .into_dimensionality()
        .expect("matmul backward: 2-D operand")
}

fn as_3d<T: Float>(t: &Tensor<T>) -> ArrayView3<'_, T> {
    let v = t.view();
    let v = if v.ndim() == 2 {
        v.insert_axis(Axis(0))
    } else {
        v
    };
    v.into_dimensionality::<Ix3>()
        .expect("matmul backward: 2-D or 3-D operand")
}

impl<'t, T: Float> Var<'t, T> {
    /// Matrix product: `[m, k] x [k, n]`, or batched `[b, m, k] x [b, k, n]`
    /// with a batch of 1 (or a 2-D operand) broadcast.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?);
    /// let w = tape.leaf(Tensor::zeros(&[2, 3])?);
    /// let grads = tape.backward(x.matmul(w)?.sum_all())?;
    /// assert_eq!(grads.wrt(w)?.to_vec(), vec![1.0, 1.0, 1.0, 2.0, 2.0, 2.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn matmul(self, other: Var<'t, T>) -> Result<Var<'t, T>> {
        self.tape.apply(MatMul, &[self, other])
    }
}
