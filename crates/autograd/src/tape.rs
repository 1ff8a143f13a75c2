//! The tape: an arena of recorded values and ops, the [`Var`] handles that
//! point into it, and the reverse sweep that turns it into [`Gradients`].

use std::cell::RefCell;
use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

use polyhead_tensor::{Float, Tensor, shape};

use crate::error::{AutogradError, Result};
use crate::op::{BackwardContext, Op};
use crate::param::{ParamId, Parameter};

/// One recorded value: its tensor and how it was made.
struct Node<T: Float> {
    value: Tensor<T>,
    /// `true` if some gradient can flow from this node to a leaf or parameter.
    requires_grad: bool,
    /// The op and its input nodes; `None` for leaves, parameters, constants
    /// and anything computed only from them without a gradient.
    op: Option<(Box<dyn Op<T>>, Inputs)>,
    /// Which positions of the value's leading axes are real (nonzero) and
    /// which are padding: set by [`Var::with_mask`], read by [`Var::mask`].
    mask: Option<Tensor<T>>,
}

/// The input node indices of an op: up to [`INLINE_INPUTS`] stored in the
/// node itself (every built-in op), more on the heap.
enum Inputs {
    Inline([usize; INLINE_INPUTS], usize),
    Heap(Vec<usize>),
}

/// Ops with at most this many inputs are recorded and differentiated
/// without allocating for their input lists.
const INLINE_INPUTS: usize = 4;

impl Inputs {
    fn new(vars: &[Var<'_, impl Float>]) -> Self {
        if vars.len() <= INLINE_INPUTS {
            let mut indices = [0; INLINE_INPUTS];
            for (slot, v) in indices.iter_mut().zip(vars) {
                *slot = v.index;
            }
            Inputs::Inline(indices, vars.len())
        } else {
            Inputs::Heap(vars.iter().map(|v| v.index).collect())
        }
    }

    fn as_slice(&self) -> &[usize] {
        match self {
            Inputs::Inline(indices, len) => &indices[..*len],
            Inputs::Heap(indices) => indices,
        }
    }
}

/// Calls `f` with the values of the nodes `inputs` and whether each one
/// requires a gradient, gathered by reference: on the stack for up to
/// [`INLINE_INPUTS`] inputs, in vectors for more.
fn with_inputs<T: Float, R>(
    nodes: &[Node<T>],
    inputs: &[usize],
    f: impl FnOnce(&[&Tensor<T>], &[bool]) -> R,
) -> R {
    match inputs.first() {
        Some(&first) if inputs.len() <= INLINE_INPUTS => {
            let index = |k: usize| inputs.get(k).copied().unwrap_or(first);
            let values: [&Tensor<T>; INLINE_INPUTS] =
                std::array::from_fn(|k| &nodes[index(k)].value);
            let needs: [bool; INLINE_INPUTS] =
                std::array::from_fn(|k| nodes[index(k)].requires_grad);
            f(&values[..inputs.len()], &needs[..inputs.len()])
        }
        _ => {
            let values: Vec<&Tensor<T>> = inputs.iter().map(|&j| &nodes[j].value).collect();
            let needs: Vec<bool> = inputs.iter().map(|&j| nodes[j].requires_grad).collect();
            f(&values, &needs)
        }
    }
}

/// What a dropped tape or set of gradients leaves for the next one on this
/// thread: a training loop makes a tape and a [`Gradients`] every step, and
/// reusing their vectors and maps means a step allocates none of them.
struct Spare<T: Float> {
    /// A tape's node list, empty, with its capacity.
    nodes: Vec<Node<T>>,
    /// Parameter maps (a tape's, a `Gradients`'s), empty.
    maps: Vec<HashMap<ParamId, usize>>,
    /// A `Gradients`'s list of gradients, empty.
    grads: Vec<Option<Tensor<T>>>,
}

/// Node lists larger than this (a very long graph) are freed, not kept.
const MAX_SPARE_NODES: usize = 1 << 14;

thread_local! {
    static SPARE_F32: RefCell<Spare<f32>> = const {
        RefCell::new(Spare { nodes: Vec::new(), maps: Vec::new(), grads: Vec::new() })
    };
    static SPARE_F64: RefCell<Spare<f64>> = const {
        RefCell::new(Spare { nodes: Vec::new(), maps: Vec::new(), grads: Vec::new() })
    };
}

/// Runs `f` on this thread's spare storage for `T` (see
/// [`polyhead_tensor::local::with_local`]).
fn with_spare<T: Float, R>(f: impl FnOnce(&mut Spare<T>) -> R) -> Option<R> {
    polyhead_tensor::local::with_local(&SPARE_F32, &SPARE_F64, f)
}

/// Keeps an emptied parameter map for the next tape or `Gradients`.
fn spare_map<T: Float>(mut map: HashMap<ParamId, usize>) {
    map.clear();
    if map.capacity() > 0 {
        let _ = with_spare::<T, _>(|s| {
            if s.maps.len() < 4 {
                s.maps.push(map);
            }
        });
    }
}

/// An empty parameter map, from the spare storage when there is one.
fn reused_map<T: Float>() -> HashMap<ParamId, usize> {
    with_spare::<T, _>(|s| s.maps.pop())
        .flatten()
        .unwrap_or_default()
}

/// A record of one step's computation, for reverse-mode differentiation.
///
/// Values enter as parameters ([`Tape::param`]), leaves that want a gradient
/// ([`Tape::leaf`]) or constants ([`Tape::constant`]); every op on their
/// [`Var`] handles is recorded. [`Tape::backward`] then sweeps the record in
/// reverse. Make one tape per training step; dropping it frees the graph.
/// Backward may run any number of times, from different roots, on one tape.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0, 3.0], &[3])?);
/// let y = x.mul(x)?.sum_all(); // sum of squares
/// let grads = tape.backward(y)?;
/// assert_eq!(grads.wrt(x)?.to_vec(), vec![2.0, 4.0, 6.0]);
/// # Ok::<(), polyhead_autograd::AutogradError>(())
/// ```
pub struct Tape<T: Float = f32> {
    id: u64,
    recording: bool,
    nodes: RefCell<Vec<Node<T>>>,
    params: RefCell<HashMap<ParamId, usize>>,
}

impl<T: Float> Default for Tape<T> {
    fn default() -> Self {
        Self::new()
    }
}

impl<T: Float> fmt::Debug for Tape<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Tape")
            .field("id", &self.id)
            .field("recording", &self.recording)
            .field("nodes", &self.len())
            .finish()
    }
}

/// The tape's values and ops are dropped (their buffers go to the tensor
/// pool); its emptied node list and parameter map are kept for the next
/// tape on this thread.
impl<T: Float> Drop for Tape<T> {
    fn drop(&mut self) {
        let mut nodes = std::mem::take(self.nodes.get_mut());
        nodes.clear();
        if nodes.capacity() <= MAX_SPARE_NODES {
            let _ = with_spare::<T, _>(|s| {
                if s.nodes.capacity() < nodes.capacity() {
                    s.nodes = nodes;
                }
            });
        }
        spare_map::<T>(std::mem::take(self.params.get_mut()));
    }
}

impl<T: Float> Tape<T> {
    fn with_recording(recording: bool) -> Self {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Tape {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            recording,
            // The last tape's node list on this thread, or room for a small
            // model's graph (a two-head loss is 5 nodes, a training step
            // about 25): no regrowth in the common case.
            nodes: RefCell::new(
                with_spare::<T, _>(|s| std::mem::take(&mut s.nodes))
                    .filter(|nodes| nodes.capacity() > 0)
                    .unwrap_or_else(|| Vec::with_capacity(32)),
            ),
            params: RefCell::new(reused_map::<T>()),
        }
    }

    /// An empty tape that records ops for backward.
    ///
    /// ```
    /// let tape = polyhead_autograd::Tape::<f32>::new();
    /// assert!(tape.is_recording() && tape.is_empty());
    /// ```
    pub fn new() -> Self {
        Self::with_recording(true)
    }

    /// A tape for inference: the same model code runs and computes values,
    /// but no op is kept for backward (nothing requires a gradient), and
    /// [`Tape::backward`] is an error.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f32>::no_record();
    /// let x = tape.leaf(Tensor::ones(&[2])?);
    /// let y = x.exp().sum_all();
    /// assert!((y.value().item()? - 2.0 * 1f32.exp()).abs() < 1e-6);
    /// assert!(!y.requires_grad());
    /// assert!(tape.backward(y).is_err());
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn no_record() -> Self {
        Self::with_recording(false)
    }

    /// `true` unless made with [`Tape::no_record`].
    ///
    /// ```
    /// assert!(!polyhead_autograd::Tape::<f32>::no_record().is_recording());
    /// ```
    pub fn is_recording(&self) -> bool {
        self.recording
    }

    /// Number of values recorded so far.
    ///
    /// ```
    /// let tape = polyhead_autograd::Tape::<f32>::new();
    /// assert_eq!(tape.len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.nodes.borrow().len()
    }

    /// `true` if nothing was recorded yet.
    ///
    /// ```
    /// let tape = polyhead_autograd::Tape::<f32>::new();
    /// tape.constant(polyhead_tensor::Tensor::scalar(1.0));
    /// assert!(!tape.is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn push(
        &self,
        value: Tensor<T>,
        requires_grad: bool,
        op: Option<(Box<dyn Op<T>>, Inputs)>,
    ) -> Var<'_, T> {
        let mut nodes = self.nodes.borrow_mut();
        nodes.push(Node {
            value,
            requires_grad,
            op,
            mask: None,
        });
        Var {
            tape: self,
            index: nodes.len() - 1,
        }
    }

    /// A value whose gradient is wanted (an input to differentiate with
    /// respect to, as in a gradient check).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(3.0));
    /// assert!(x.requires_grad());
    /// assert_eq!(tape.backward(x.mul(x)?)?.wrt(x)?.item()?, 6.0);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn leaf(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push(value, self.recording, None)
    }

    /// A value that needs no gradient (inputs, targets, masks).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let c = tape.constant(Tensor::ones(&[2])?);
    /// assert!(!c.requires_grad());
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn constant(&self, value: Tensor<T>) -> Var<'_, T> {
        self.push(value, false, None)
    }

    /// Brings a parameter onto the tape (once: asking again for the same
    /// parameter returns the same handle, so its uses accumulate into one
    /// gradient).
    ///
    /// ```
    /// use polyhead_autograd::{Parameter, Tape};
    /// use polyhead_tensor::Tensor;
    /// let w = Parameter::new(Tensor::<f64>::scalar(2.0));
    /// let tape = Tape::new();
    /// let y = tape.param(&w).mul(tape.param(&w))?; // w^2, one value used twice
    /// assert_eq!(tape.backward(y)?.param(&w).unwrap().item()?, 4.0);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn param(&self, param: &Parameter<T>) -> Var<'_, T> {
        if let Some(&index) = self.params.borrow().get(&param.id()) {
            return Var { tape: self, index };
        }
        let var = self.push(param.value().clone(), self.recording, None);
        self.params.borrow_mut().insert(param.id(), var.index);
        var
    }

    /// Runs `op` on `inputs` and records it as one node. The op's
    /// `forward` gets the input values by reference and must not record on
    /// this tape itself.
    ///
    /// ```
    /// use polyhead_autograd::{BackwardContext, Op, Result, Tape};
    /// use polyhead_tensor::{Float, Tensor};
    /// struct Double;
    /// impl<T: Float> Op<T> for Double {
    ///     fn name(&self) -> &'static str { "double" }
    ///     fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> {
    ///         Ok(x[0].mul_scalar(T::from_f64(2.0)))
    ///     }
    ///     fn backward(&self, ctx: &BackwardContext<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
    ///         Ok(vec![ctx.grad_for(0, || Ok(ctx.grad_output.mul_scalar(T::from_f64(2.0))))?])
    ///     }
    /// }
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::ones(&[1])?);
    /// let y = tape.apply(Double, &[x])?;
    /// assert_eq!(tape.backward(y)?.wrt(x)?.to_vec(), vec![2.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn apply<O: Op<T>>(&self, mut op: O, inputs: &[Var<'_, T>]) -> Result<Var<'_, T>> {
        if inputs.iter().any(|v| !std::ptr::eq(v.tape, self)) {
            return Err(AutogradError::ForeignVar { op: op.name() });
        }
        // The inputs' values are read in place: the nodes stay borrowed
        // while `forward` runs, which sees only the values (recording on
        // this tape from inside `forward` is not supported).
        let indices = Inputs::new(inputs);
        let (output, requires_grad) =
            with_inputs(&self.nodes.borrow(), indices.as_slice(), |values, needs| {
                (op.forward(values), needs.iter().any(|&n| n))
            });
        let output = output?;
        if requires_grad {
            Ok(self.push(output, true, Some((Box::new(op), indices))))
        } else {
            Ok(self.push(output, false, None))
        }
    }

    /// Gradients of a single-element `root` with respect to every recorded
    /// value that it depends on.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[2])?);
    /// let loss = x.exp().sum_all();
    /// let grads = tape.backward(loss)?;
    /// assert_eq!(grads.wrt(x)?.to_vec(), vec![1f64.exp(), 2f64.exp()]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn backward(&self, root: Var<'_, T>) -> Result<Gradients<T>> {
        self.check_own(root, "backward")?;
        let value = root.value();
        if value.len() != 1 {
            return Err(AutogradError::NonScalarRoot {
                shape: value.shape().to_vec(),
            });
        }
        self.backward_with_seed(root, &Tensor::ones(value.shape())?)
    }

    /// Gradients of `sum(seed * root)`: for a root with several elements,
    /// the vector-Jacobian product with `seed` (which has the root's shape).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::from_vec(vec![1.0, 2.0], &[2])?);
    /// let y = x.mul(x)?;
    /// let seed = Tensor::from_vec(vec![1.0, 10.0], &[2])?;
    /// assert_eq!(tape.backward_with_seed(y, &seed)?.wrt(x)?.to_vec(), vec![2.0, 40.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn backward_with_seed(&self, root: Var<'_, T>, seed: &Tensor<T>) -> Result<Gradients<T>> {
        self.check_own(root, "backward")?;
        if !self.recording {
            return Err(AutogradError::NotRecording);
        }
        let nodes = self.nodes.borrow();
        let root_shape = nodes[root.index].value.shape();
        if !shape::same(seed.shape(), root_shape) {
            return Err(AutogradError::SeedShape {
                seed: seed.shape().to_vec(),
                root: root_shape.to_vec(),
            });
        }
        // The last `Gradients`' list on this thread, emptied, when there is one.
        let mut grads: Vec<Option<Tensor<T>>> =
            with_spare::<T, _>(|s| std::mem::take(&mut s.grads)).unwrap_or_default();
        grads.clear();
        grads.resize(root.index + 1, None);
        grads[root.index] = Some(seed.clone());
        for i in (0..=root.index).rev() {
            let node = &nodes[i];
            let (Some(grad), Some((op, inputs))) = (&grads[i], &node.op) else {
                continue;
            };
            let inputs = inputs.as_slice();
            // One slot per input: on the stack for up to INLINE_INPUTS.
            let mut inline: [Option<Tensor<T>>; INLINE_INPUTS] = Default::default();
            let mut heap = Vec::new();
            let input_grads: &mut [Option<Tensor<T>>] = if inputs.len() <= INLINE_INPUTS {
                &mut inline[..inputs.len()]
            } else {
                heap.resize(inputs.len(), None);
                &mut heap
            };
            with_inputs(&nodes, inputs, |values, needs_grad| {
                let ctx = BackwardContext {
                    inputs: values,
                    output: &node.value,
                    grad_output: grad,
                    needs_grad,
                };
                op.backward_into(&ctx, input_grads)?;
                // An input that needs no gradient gets none, whatever the op returned.
                for (g, &needs) in input_grads.iter_mut().zip(needs_grad) {
                    if !needs {
                        *g = None;
                    }
                }
                Ok::<_, AutogradError>(())
            })?;
            for (k, (g, &j)) in input_grads.iter_mut().zip(inputs).enumerate() {
                let Some(g) = g.take() else { continue };
                if !shape::same(g.shape(), nodes[j].value.shape()) {
                    return Err(AutogradError::Op {
                        op: op.name(),
                        message: format!(
                            "backward returned a gradient of shape {:?} for input {k} of shape {:?}",
                            g.shape(),
                            nodes[j].value.shape()
                        ),
                    });
                }
                grads[j] = Some(match grads[j].take() {
                    Some(acc) => acc.add(&g)?,
                    None => g,
                });
            }
        }
        Ok(Gradients {
            tape_id: self.id,
            grads,
            params: {
                let mut params = reused_map::<T>();
                params.extend(self.params.borrow().iter().map(|(&k, &v)| (k, v)));
                params
            },
        })
    }

    fn check_own(&self, var: Var<'_, T>, op: &'static str) -> Result<()> {
        if std::ptr::eq(var.tape, self) {
            Ok(())
        } else {
            Err(AutogradError::ForeignVar { op })
        }
    }
}

/// A handle to a value recorded on a [`Tape`]: cheap to copy, and unable
/// to outlive its tape. Ops on handles are recorded on their tape.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_tensor::Tensor;
/// let tape = Tape::<f64>::new();
/// let x = tape.leaf(Tensor::scalar(2.0));
/// let y = x; // Copy: both name the same value
/// let z = x.mul(y)?;
/// assert_eq!(z.value().item()?, 4.0);
/// # Ok::<(), polyhead_autograd::AutogradError>(())
/// ```
#[derive(Clone, Copy)]
pub struct Var<'t, T: Float = f32> {
    pub(crate) tape: &'t Tape<T>,
    pub(crate) index: usize,
}

impl<T: Float> fmt::Debug for Var<'_, T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Var(#{} {:?})", self.index, self.shape())
    }
}

impl<'t, T: Float> Var<'t, T> {
    /// The recorded value (a cheap clone of the tensor).
    ///
    /// ```
    /// let tape = polyhead_autograd::Tape::<f32>::new();
    /// let x = tape.constant(polyhead_tensor::Tensor::ones(&[2])?);
    /// assert_eq!(x.value().to_vec(), vec![1.0, 1.0]);
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn value(&self) -> Tensor<T> {
        self.tape.nodes.borrow()[self.index].value.clone()
    }

    /// The value's shape.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// assert_eq!(tape.constant(Tensor::zeros(&[2, 3])?).shape(), vec![2, 3]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn shape(&self) -> Vec<usize> {
        self.tape.nodes.borrow()[self.index].value.shape().to_vec()
    }

    /// `true` if a gradient can flow from this value to a leaf or parameter.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(1.0));
    /// let c = tape.constant(Tensor::scalar(1.0));
    /// assert!(x.add(c)?.requires_grad());
    /// assert!(!c.exp().requires_grad());
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn requires_grad(&self) -> bool {
        self.tape.nodes.borrow()[self.index].requires_grad
    }

    /// The same value carrying a mask over its leading axes (`[B, T]` for a
    /// `[B, T, D]` sequence; nonzero = a real position, 0 = padding), as
    /// Keras propagates masks: layers that keep those axes pass their
    /// input's mask on, layers that consume it (a recurrent layer without
    /// sequences, masked pooling, a per-position loss) use it. Recorded as
    /// an identity node (the gradient passes through unchanged); the value
    /// is not copied.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f32>::new();
    /// let x = tape.leaf(Tensor::ones(&[2, 3, 4])?);
    /// let masked = x.with_mask(Tensor::from_vec(vec![1.0, 1.0, 0.0, 1.0, 0.0, 0.0], &[2, 3])?)?;
    /// assert_eq!(masked.mask().unwrap().shape(), &[2, 3]);
    /// assert!(x.mask().is_none());
    /// assert!(x.with_mask(Tensor::ones(&[3])?).is_err()); // not the leading axes
    /// let grads = tape.backward(masked.sum_all())?;
    /// assert_eq!(grads.wrt(x)?.to_vec(), vec![1.0; 24]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn with_mask(self, mask: Tensor<T>) -> Result<Var<'t, T>> {
        let shape = self.shape();
        let k = mask.ndim();
        if k == 0 || k > shape.len() || mask.shape() != &shape[..k] {
            return Err(AutogradError::Op {
                op: "with_mask",
                message: format!(
                    "a mask covers the value's leading axes: shape {:?} does not lead {shape:?}",
                    mask.shape()
                ),
            });
        }
        let out = self.apply(Identity)?;
        out.tape.nodes.borrow_mut()[out.index].mask = Some(mask);
        Ok(out)
    }

    /// The mask this value carries, if any (see [`Var::with_mask`]).
    ///
    /// ```
    /// let tape = polyhead_autograd::Tape::<f32>::new();
    /// assert!(tape.constant(polyhead_tensor::Tensor::ones(&[2])?).mask().is_none());
    /// # Ok::<(), polyhead_tensor::TensorError>(())
    /// ```
    pub fn mask(&self) -> Option<Tensor<T>> {
        self.tape.nodes.borrow()[self.index].mask.clone()
    }

    /// The tape this value is recorded on.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(1.0));
    /// assert!(std::ptr::eq(x.tape(), &tape));
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn tape(&self) -> &'t Tape<T> {
        self.tape
    }

    /// Records `op` with `self` as its only input (see [`Tape::apply`]).
    ///
    /// ```
    /// use polyhead_autograd::{BackwardContext, Op, Result, Tape};
    /// use polyhead_tensor::{Float, Tensor};
    /// struct Identity;
    /// impl<T: Float> Op<T> for Identity {
    ///     fn name(&self) -> &'static str { "identity" }
    ///     fn forward(&mut self, x: &[&Tensor<T>]) -> Result<Tensor<T>> { Ok(x[0].clone()) }
    ///     fn backward(&self, ctx: &BackwardContext<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
    ///         Ok(vec![ctx.grad_for(0, || Ok(ctx.grad_output.clone()))?])
    ///     }
    /// }
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(5.0));
    /// assert_eq!(x.apply(Identity)?.value().item()?, 5.0);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn apply<O: Op<T>>(self, op: O) -> Result<Var<'t, T>> {
        self.tape.apply(op, &[self])
    }

    /// Records an op that cannot fail on a value of this tape.
    pub(crate) fn apply_infallible<O: Op<T>>(self, op: O) -> Var<'t, T> {
        self.tape
            .apply(op, &[self])
            .expect("unary op on its own tape with a shape-independent forward")
    }
}

/// The result of [`Tape::backward`]: a gradient per recorded value that the
/// root depends on, addressable by [`Var`] or by [`Parameter`].
///
/// ```
/// use polyhead_autograd::{Parameter, Tape};
/// use polyhead_tensor::Tensor;
/// let w = Parameter::new(Tensor::<f64>::scalar(3.0));
/// let tape = Tape::new();
/// let x = tape.leaf(Tensor::scalar(2.0));
/// let grads = tape.backward(x.mul(tape.param(&w))?)?;
/// assert_eq!(grads.wrt(x)?.item()?, 3.0);
/// assert_eq!(grads.param(&w).unwrap().item()?, 2.0);
/// assert_eq!(grads.by_id(w.id()).unwrap().item()?, 2.0);
/// # Ok::<(), polyhead_autograd::AutogradError>(())
/// ```
///
/// A value the root does not depend on has no gradient: [`Gradients::get`]
/// gives `None` and [`Gradients::wrt`] gives zeros of its shape (what
/// TensorFlow calls `UnconnectedGradients.ZERO`).
pub struct Gradients<T: Float = f32> {
    tape_id: u64,
    grads: Vec<Option<Tensor<T>>>,
    params: HashMap<ParamId, usize>,
}

/// The gradients are dropped (their buffers go to the tensor pool); the
/// emptied list and parameter map are kept for the next backward pass on
/// this thread.
impl<T: Float> Drop for Gradients<T> {
    fn drop(&mut self) {
        let mut grads = std::mem::take(&mut self.grads);
        grads.clear();
        if grads.capacity() <= MAX_SPARE_NODES {
            let _ = with_spare::<T, _>(|s| {
                if s.grads.capacity() < grads.capacity() {
                    s.grads = grads;
                }
            });
        }
        spare_map::<T>(std::mem::take(&mut self.params));
    }
}

impl<T: Float> fmt::Debug for Gradients<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let present = self.grads.iter().filter(|g| g.is_some()).count();
        write!(f, "Gradients({present} of {} values)", self.grads.len())
    }
}

impl<T: Float> Gradients<T> {
    /// The gradient for `var`, or `None` if the root does not depend on it
    /// (or it belongs to another tape).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::ones(&[1])?);
    /// let unused = tape.leaf(Tensor::ones(&[1])?);
    /// let grads = tape.backward(x.exp().sum_all())?;
    /// assert!(grads.get(x).is_some());
    /// assert!(grads.get(unused).is_none());
    /// assert_eq!(grads.wrt(unused)?.to_vec(), vec![0.0]);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn get(&self, var: Var<'_, T>) -> Option<&Tensor<T>> {
        if var.tape.id != self.tape_id {
            return None;
        }
        self.grads.get(var.index).and_then(Option::as_ref)
    }

    /// The gradient for `var`, zeros of its shape if the root does not
    /// depend on it; an error if `var` belongs to another tape.
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_tensor::Tensor;
    /// let tape = Tape::<f64>::new();
    /// let x = tape.leaf(Tensor::scalar(2.0));
    /// let grads = tape.backward(x.powf(3.0))?;
    /// assert_eq!(grads.wrt(x)?.item()?, 12.0);
    /// let other = Tape::<f64>::new();
    /// assert!(grads.wrt(other.leaf(Tensor::scalar(1.0))).is_err());
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn wrt(&self, var: Var<'_, T>) -> Result<Tensor<T>> {
        if var.tape.id != self.tape_id {
            return Err(AutogradError::ForeignVar {
                op: "Gradients::wrt",
            });
        }
        match self.get(var) {
            Some(g) => Ok(g.clone()),
            None => Ok(Tensor::zeros(&var.shape())?),
        }
    }

    /// The gradient for a parameter brought onto the tape with
    /// [`Tape::param`], or `None` if the root does not depend on it.
    ///
    /// ```
    /// use polyhead_autograd::{Parameter, Tape};
    /// use polyhead_tensor::Tensor;
    /// let (a, b) = (Parameter::new(Tensor::<f64>::scalar(1.0)), Parameter::new(Tensor::<f64>::scalar(1.0)));
    /// let tape = Tape::new();
    /// let _b_on_tape = tape.param(&b);
    /// let grads = tape.backward(tape.param(&a).exp())?;
    /// assert!(grads.param(&a).is_some());
    /// assert!(grads.param(&b).is_none());
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn param(&self, param: &Parameter<T>) -> Option<&Tensor<T>> {
        self.by_id(param.id())
    }

    /// The gradient for a parameter, by id.
    ///
    /// ```
    /// use polyhead_autograd::{Parameter, Tape};
    /// use polyhead_tensor::Tensor;
    /// let w = Parameter::new(Tensor::<f64>::scalar(1.0));
    /// let tape = Tape::new();
    /// let grads = tape.backward(tape.param(&w).scale(4.0))?;
    /// assert_eq!(grads.by_id(w.id()).unwrap().item()?, 4.0);
    /// # Ok::<(), polyhead_autograd::AutogradError>(())
    /// ```
    pub fn by_id(&self, id: ParamId) -> Option<&Tensor<T>> {
        let &index = self.params.get(&id)?;
        self.grads.get(index).and_then(Option::as_ref)
    }
}

/// The identity, recorded so that a value can carry a mask of its own.
struct Identity;

impl<T: Float> Op<T> for Identity {
    fn name(&self) -> &'static str {
        "with_mask"
    }
    fn forward(&mut self, inputs: &[&Tensor<T>]) -> Result<Tensor<T>> {
        Ok(inputs[0].clone())
    }
    fn backward(&self, ctx: &crate::op::BackwardContext<'_, T>) -> Result<Vec<Option<Tensor<T>>>> {
        Ok(vec![ctx.grad_for(0, || Ok(ctx.grad_output.clone()))?])
    }
}
