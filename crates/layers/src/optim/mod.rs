//! Optimizers: one driver ([`Optimizer`]) that clips gradients, follows a
//! learning-rate schedule and keeps per-parameter state by name, around an
//! update rule ([`Sgd`], [`Adam`], [`RmsProp`]).

mod rules;
mod schedule;

use std::collections::BTreeMap;

use ndarray::{ArcArray, IxDyn};
use polyhead_autograd::Gradients;
use polyhead_tensor::{Float, Tensor, first_non_finite, shape};

use rules::Rule;
pub use rules::{Adam, OptimizerConvention, RmsProp, Sgd};
pub use schedule::Schedule;

use crate::error::{LayerError, Result};
use crate::module::Module;

/// Updates a model's parameters from their gradients.
///
/// State (momentum, Adam's moments) is kept by parameter name, so it can be
/// saved in a checkpoint and restored into a freshly built model. A step
/// whose gradients hold a NaN or infinity is refused with an error naming
/// the parameter, and no parameter is changed.
///
/// ```
/// use polyhead_autograd::Tape;
/// use polyhead_layers::{Dense, Module, Sgd};
/// use polyhead_tensor::{Rng, Tensor};
///
/// let mut model = Dense::<f64>::new(2, 1, &mut Rng::new(0))?;
/// let mut opt = Sgd::new(0.1).build();
/// let before = model.kernel().value().to_vec();
/// let tape = Tape::new();
/// let x = tape.constant(Tensor::from_vec(vec![1.0, 2.0], &[1, 2])?);
/// let loss = model.forward(x)?.sum_all();
/// let grads = tape.backward(loss)?;
/// opt.step(&mut model, &grads)?;
/// // d loss / d kernel = x^T, so each weight moves by -0.1 * x.
/// let after = model.kernel().value().to_vec();
/// assert!((after[0] - (before[0] - 0.1)).abs() < 1e-15);
/// assert!((after[1] - (before[1] - 0.2)).abs() < 1e-15);
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug, Clone)]
pub struct Optimizer<T: Float> {
    rule: Rule,
    schedule: Schedule,
    clip_global_norm: Option<f64>,
    clip_value: Option<f64>,
    steps: u64,
    slots: BTreeMap<String, Vec<Vec<T>>>,
    /// Last step's slot buffers, reused as the next step's staging area
    /// (contents meaningless; not part of the saved state).
    spare: BTreeMap<String, Vec<Vec<T>>>,
}

macro_rules! build_method {
    ($t:ident, $variant:ident) => {
        impl $t {
            /// The optimizer with this rule.
            ///
            /// ```
            /// let opt = polyhead_layers::Sgd::new(0.01).build::<f32>();
            /// assert_eq!(opt.steps(), 0);
            /// ```
            pub fn build<T: Float>(self) -> Optimizer<T> {
                Optimizer::new(Rule::$variant(self), Schedule::Constant(self.lr))
            }
        }
    };
}
build_method!(Sgd, Sgd);
build_method!(Adam, Adam);
build_method!(RmsProp, RmsProp);

/// Parameters of at least this many elements are updated by all the
/// threads of an awake pool, each on one piece: the halves of a large
/// gradient that two threads' GEMM blocks wrote are then mostly read by the
/// thread whose cache holds them (measured: a 784x64 kernel's update took
/// longer on two threads than on one when one thread did all of it).
const PARALLEL_UPDATE_MIN: usize = 1 << 15;

/// `rule`'s update of one parameter (see [`Rule::update`]), split into
/// pieces over an awake pool when the parameter is large (each element's
/// update depends only on that element, so the bits do not depend on the
/// split), and the first index where the new value is not finite.
fn update<T: Float>(
    rule: &Rule,
    old: &[T],
    w: &mut [T],
    g: &[T],
    slots: &mut [Vec<T>],
    t: u64,
    lr: f64,
) -> Option<usize> {
    let Some(piece) = polyhead_tensor::parallel::piece_len(w.len(), PARALLEL_UPDATE_MIN) else {
        // The rules have at most two slots (Adam's moments): on the stack.
        let mut inline: [&mut [T]; 2] = Default::default();
        let mut heap: Vec<&mut [T]>;
        let count = slots.len();
        let refs: &mut [&mut [T]] = if count <= inline.len() {
            for (r, s) in inline.iter_mut().zip(slots.iter_mut()) {
                *r = s;
            }
            &mut inline[..count]
        } else {
            heap = slots.iter_mut().map(|s| &mut s[..]).collect();
            &mut heap
        };
        rule.update(old, w, g, refs, t, lr);
        return first_non_finite(w);
    };
    let mut slot_pieces: Vec<_> = slots.iter_mut().map(|s| s.chunks_mut(piece)).collect();
    let pieces: Vec<_> = old
        .chunks(piece)
        .zip(w.chunks_mut(piece))
        .zip(g.chunks(piece))
        .enumerate()
        .map(|(k, ((old, w), g))| {
            let slots: Vec<&mut [T]> = slot_pieces
                .iter_mut()
                .map(|s| s.next().expect("slots have the parameter's length"))
                .collect();
            (k * piece, old, w, g, slots)
        })
        .collect();
    let first_bad = std::sync::atomic::AtomicUsize::new(usize::MAX);
    polyhead_tensor::parallel::run_each(pieces, |(start, old, w, g, mut slots)| {
        rule.update(old, w, g, &mut slots, t, lr);
        if let Some(at) = first_non_finite(w) {
            first_bad.fetch_min(start + at, std::sync::atomic::Ordering::Relaxed);
        }
    });
    Some(first_bad.into_inner()).filter(|&at| at != usize::MAX)
}

impl<T: Float> Optimizer<T> {
    fn new(rule: Rule, schedule: Schedule) -> Self {
        Optimizer {
            rule,
            schedule,
            clip_global_norm: None,
            clip_value: None,
            steps: 0,
            slots: BTreeMap::new(),
            spare: BTreeMap::new(),
        }
    }

    /// Replaces the constant learning rate by a schedule.
    ///
    /// ```
    /// use polyhead_layers::{Schedule, Sgd};
    /// let opt = Sgd::new(0.1).build::<f32>().schedule(Schedule::Exponential {
    ///     initial: 0.1, decay_rate: 0.5, decay_steps: 100, staircase: true,
    /// });
    /// assert_eq!(opt.learning_rate(), 0.1);
    /// ```
    pub fn schedule(mut self, schedule: Schedule) -> Self {
        self.schedule = schedule;
        self
    }

    /// Scales all gradients together so their global L2 norm is at most
    /// `max_norm` (Keras' `global_clipnorm`, PyTorch's `clip_grad_norm_`).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Sgd::new(1.0).build::<f64>().clip_global_norm(0.5);
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![10.0], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (0.5)).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clip_global_norm(mut self, max_norm: f64) -> Self {
        self.clip_global_norm = Some(max_norm);
        self
    }

    /// Clips each gradient element to `[-value, value]` (Keras' `clipvalue`).
    ///
    /// ```
    /// use polyhead_layers::*;
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut m = Dense::<f64>::from_tensors(Tensor::ones(&[1, 1])?, None, Activation::Linear)?;
    /// let mut opt = Sgd::new(1.0).build::<f64>().clip_value(0.25);
    /// opt.step_with(&mut m, |_, _| Some(Tensor::from_vec(vec![-3.0], &[1, 1]).unwrap()))?;
    /// assert!((m.kernel().value().item()? - (1.25)).abs() < 1e-12);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn clip_value(mut self, value: f64) -> Self {
        self.clip_value = Some(value);
        self
    }

    /// The learning rate the next step will use.
    ///
    /// ```
    /// use polyhead_layers::{Schedule, Sgd};
    /// let opt = Sgd::new(0.1).build::<f32>().schedule(Schedule::Constant(0.05));
    /// assert_eq!(opt.learning_rate(), 0.05);
    /// ```
    pub fn learning_rate(&self) -> f64 {
        self.schedule.at(self.steps)
    }

    /// Whether the learning rate changes with the steps (a schedule other
    /// than a constant).
    ///
    /// ```
    /// use polyhead_layers::{Schedule, Sgd};
    /// assert!(!Sgd::new(0.1).build::<f32>().is_scheduled());
    /// let s = Schedule::Step { initial: 0.1, step_size: 10, gamma: 0.5 };
    /// assert!(Sgd::new(0.1).build::<f32>().schedule(s).is_scheduled());
    /// ```
    pub fn is_scheduled(&self) -> bool {
        !matches!(self.schedule, Schedule::Constant(_))
    }

    /// The number of steps taken.
    ///
    /// ```
    /// assert_eq!(polyhead_layers::Sgd::new(0.1).build::<f32>().steps(), 0);
    /// ```
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// One update of every parameter of `model` that has a gradient in
    /// `grads` (parameters the loss does not depend on are left alone).
    ///
    /// ```
    /// use polyhead_autograd::Tape;
    /// use polyhead_layers::{Dense, Module, Sgd};
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut model = Dense::<f64>::new(1, 1, &mut Rng::new(0))?;
    /// let mut opt = Sgd::new(0.1).build();
    /// let tape = Tape::new();
    /// let loss = model.forward(tape.constant(Tensor::ones(&[1, 1])?))?.sum_all();
    /// let grads = tape.backward(loss)?;
    /// opt.step(&mut model, &grads)?;
    /// assert_eq!(opt.steps(), 1);
    /// assert_eq!(model.bias().unwrap().value().to_vec(), vec![-0.1]);
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn step(&mut self, model: &mut dyn Module<T>, grads: &Gradients<T>) -> Result<()> {
        self.step_with(model, |_, p| grads.by_id(p.id()).cloned())
    }

    /// One update with gradients given by a function of each parameter's
    /// name and parameter (`None`: no gradient, leave it alone). For
    /// gradients computed or modified outside one tape (accumulation,
    /// PCGrad, gradients from a file).
    ///
    /// ```
    /// use polyhead_layers::{Dense, Module, Sgd};
    /// use polyhead_tensor::{Rng, Tensor};
    /// let mut model = Dense::<f64>::new(2, 1, &mut Rng::new(0))?;
    /// let before = model.kernel().value().to_vec();
    /// let mut opt = Sgd::new(0.5).build();
    /// opt.step_with(&mut model, |name, p| (name == "kernel").then(|| Tensor::ones(p.value().shape()).unwrap()))?;
    /// let after = model.kernel().value().to_vec();
    /// assert_eq!(after, vec![before[0] - 0.5, before[1] - 0.5]);
    /// # Ok::<(), polyhead_layers::LayerError>(())
    /// ```
    pub fn step_with(
        &mut self,
        model: &mut dyn Module<T>,
        mut grad_of: impl FnMut(&str, &polyhead_autograd::Parameter<T>) -> Option<Tensor<T>>,
    ) -> Result<()> {
        self.rule.validate()?;
        let mut params = model.parameters_mut();
        let mut grads: Vec<(usize, Tensor<T>)> = Vec::new();
        for (i, (name, p)) in params.iter().enumerate() {
            let Some(g) = grad_of(name, p) else {
                continue;
            };
            if !shape::same(g.shape(), p.value().shape()) {
                return Err(LayerError::Shape {
                    layer: "optimizer",
                    message: format!(
                        "gradient of {name} has shape {:?}, the parameter {:?}",
                        g.shape(),
                        p.value().shape()
                    ),
                });
            }
            // Row-major gradients (all that autograd makes) are read in
            // place; other layouts are copied once.
            let g = if g.view().is_standard_layout() {
                g
            } else {
                Tensor::from_vec(g.to_vec(), g.shape())?
            };
            let values = g.view().to_slice().expect("row-major");
            if let Some(at) = first_non_finite(values) {
                return Err(LayerError::Invalid {
                    what: "optimizer",
                    message: format!(
                        "gradient of {name} is {} at flat index {at} (shape {:?}); the step was not applied",
                        values[at],
                        p.value().shape()
                    ),
                });
            }
            grads.push((i, g));
        }
        // Clipping changes the gradients, so it works on copies.
        let mut clipped: Option<Vec<Vec<T>>> = None;
        if self.clip_value.is_some() || self.clip_global_norm.is_some() {
            let mut copies: Vec<Vec<T>> = grads.iter().map(|(_, g)| g.to_vec()).collect();
            if let Some(c) = self.clip_value {
                let c = T::from_f64(c);
                for g in &mut copies {
                    g.iter_mut().for_each(|v| *v = v.max(-c).min(c));
                }
            }
            if let Some(max_norm) = self.clip_global_norm {
                let norm = copies
                    .iter()
                    .flatten()
                    .map(|v| v.to_f64() * v.to_f64())
                    .sum::<f64>()
                    .sqrt();
                if norm > max_norm {
                    let scale = T::from_f64(max_norm / norm);
                    for g in &mut copies {
                        g.iter_mut().for_each(|v| *v *= scale);
                    }
                }
            }
            clipped = Some(copies);
        }
        let lr = self.schedule.at(self.steps);
        let t = self.steps + 1;
        let slot_count = self.rule.slot_names().len();
        // Compute every new value into staging buffers first (the new slots
        // go into last step's spare buffers); commit only if all are finite,
        // so a diverging step changes neither the model nor the optimizer.
        // (parameter index, new values, new slots)
        let mut staged = Vec::with_capacity(grads.len());
        for (k, (i, g)) in grads.iter().enumerate() {
            let g = match &clipped {
                Some(copies) => &copies[k][..],
                None => g.view().to_slice().expect("row-major"),
            };
            let (name, p) = &params[*i];
            let n = g.len();
            // The spare entry keeps its key (an empty list is left behind),
            // so committing below finds it without allocating a new key.
            let mut slots = self
                .spare
                .get_mut(name)
                .map(std::mem::take)
                .unwrap_or_default();
            slots.resize_with(slot_count, Vec::new);
            match self.slots.get(name) {
                Some(old) if old.iter().any(|s| s.len() != n) => {
                    return Err(LayerError::Invalid {
                        what: "optimizer",
                        message: format!(
                            "its state for {name} holds {} values, but the parameter now has {n} (shape {:?}); build a new optimizer for a changed model. The step was not applied",
                            old.first().map_or(0, Vec::len),
                            p.value().shape()
                        ),
                    });
                }
                Some(old) => {
                    for (new, old) in slots.iter_mut().zip(old) {
                        new.clear();
                        new.extend_from_slice(old);
                    }
                }
                None => slots.iter_mut().for_each(|s| {
                    s.clear();
                    s.resize(n, T::ZERO);
                }),
            }
            let value = p.value();
            // The new values go into a buffer from the tensor pool: an
            // earlier step's replaced value once no tape holds it, so a
            // step allocates none.
            let mut w = polyhead_tensor::pool::take_array::<T>(value.shape())
                .unwrap_or_else(|| ArcArray::from_elem(IxDyn(value.shape()), T::ZERO));
            let new = w
                .as_slice_mut()
                .expect("a pooled or new array is row-major and not shared");
            let copied;
            let old = match value.view().to_slice() {
                Some(old) => old,
                None => {
                    copied = value.to_vec();
                    &copied[..]
                }
            };
            if let Some(at) = update(&self.rule, old, new, g, &mut slots, t, lr) {
                return Err(LayerError::Invalid {
                    what: "optimizer",
                    message: format!(
                        "the update would make {name} non-finite ({} at flat index {at}); the learning rate may be too large. The step was not applied",
                        new[at]
                    ),
                });
            }
            staged.push((*i, w, slots));
        }
        for (i, w, slots) in staged {
            let (name, p) = &mut params[i];
            // The replaced value goes to the tensor pool once no tape holds it.
            p.set_value(Tensor::from_shared(w))?;
            // In the steady state both maps already hold `name`: the values
            // are swapped in place, and no key is cloned.
            match self.slots.get_mut(name.as_str()) {
                Some(current) => {
                    let old = std::mem::replace(current, slots);
                    match self.spare.get_mut(name.as_str()) {
                        Some(spare) => *spare = old,
                        None => {
                            self.spare.insert(name.clone(), old);
                        }
                    }
                }
                None => {
                    self.slots.insert(name.clone(), slots);
                }
            }
        }
        self.steps = t;
        Ok(())
    }

    /// The optimizer's state as named tensors (`<parameter>.<slot>`, e.g.
    /// `class.kernel.m`), with the step count, for checkpoints.
    ///
    /// ```
    /// let opt = polyhead_layers::Adam::new(1e-3).build::<f32>();
    /// let (steps, tensors) = opt.state();
    /// assert_eq!((steps, tensors.len()), (0, 0));
    /// ```
    pub fn state(&self) -> (u64, Vec<(String, Vec<T>)>) {
        let names = self.rule.slot_names();
        let mut out = Vec::new();
        for (param, slots) in &self.slots {
            for (slot, values) in names.iter().zip(slots) {
                out.push((format!("{param}.{slot}"), values.clone()));
            }
        }
        (self.steps, out)
    }

    /// Restores state saved by [`Optimizer::state`]; `lookup(name)` gives
    /// the saved values of one slot (or `None`).
    pub(crate) fn restore(
        &mut self,
        steps: u64,
        params: &[(String, usize)],
        mut lookup: impl FnMut(&str) -> Option<Vec<T>>,
    ) -> std::result::Result<(), Vec<String>> {
        let names = self.rule.slot_names();
        let mut slots = BTreeMap::new();
        let mut problems = Vec::new();
        for (param, len) in params {
            let mut found: Vec<Vec<T>> = Vec::new();
            for slot in names {
                let key = format!("{param}.{slot}");
                match lookup(&key) {
                    Some(v) if v.len() == *len => found.push(v),
                    Some(v) => problems.push(format!(
                        "optimizer slot {key} has {} values, the parameter has {len}",
                        v.len()
                    )),
                    None => {}
                }
            }
            if found.len() == names.len() && !names.is_empty() {
                slots.insert(param.clone(), found);
            } else if !found.is_empty() {
                problems.push(format!("optimizer state of {param} is incomplete"));
            }
        }
        if !problems.is_empty() {
            return Err(problems);
        }
        self.slots = slots;
        self.spare.clear();
        self.steps = steps;
        Ok(())
    }

    /// A short name of the rule, stored in checkpoints.
    pub(crate) fn rule_name(&self) -> &'static str {
        match self.rule {
            Rule::Sgd(_) => "sgd",
            Rule::Adam(_) => "adam",
            Rule::RmsProp(_) => "rmsprop",
        }
    }
}
