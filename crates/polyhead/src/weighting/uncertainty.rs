//! Kendall, Gal & Cipolla, "Multi-Task Learning Using Uncertainty to Weigh
//! Losses for Scene Geometry and Semantics", CVPR 2018.

use polyhead_autograd::{Parameter, Var};
use polyhead_tensor::{Float, Tensor};

use super::{Combination, Step, Weighting};
use crate::error::{Error, Result};

/// How a Kendall et al. uncertainty term treats one loss: with `s = log
/// sigma^2`, plain `exp(-s) L + s` (the common simplified form), regression
/// `0.5 exp(-s) L + 0.5 s` (the paper's Gaussian likelihood), or
/// classification `exp(-s) L + 0.5 s`.
///
/// ```
/// use polyhead::weighting::{Uncertainty, UncertaintyKind};
/// let w = Uncertainty::<f32>::new().kind("bbox", UncertaintyKind::Regression);
/// # let _ = w;
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UncertaintyKind {
    /// `exp(-s) L + s`.
    #[default]
    Plain,
    /// `0.5 exp(-s) L + 0.5 s`.
    Regression,
    /// `exp(-s) L + 0.5 s`.
    Classification,
}

impl UncertaintyKind {
    fn factors(self) -> (f64, f64) {
        match self {
            UncertaintyKind::Plain => (1.0, 1.0),
            UncertaintyKind::Regression => (0.5, 0.5),
            UncertaintyKind::Classification => (1.0, 0.5),
        }
    }
}

/// Uncertainty weighting: a learnable log-variance `s_i` per loss, trained
/// by the same optimizer as the model; the objective is
/// `sum_i c_i exp(-s_i) w_i L_i + d_i s_i` (`c`, `d` from the loss's
/// [`UncertaintyKind`]). State: `weighting.log_var.<i>`.
///
/// ```
/// use polyhead::weighting::{Uncertainty, UncertaintyKind, Weighting};
/// let w = Uncertainty::<f32>::new().kind("class", UncertaintyKind::Classification);
/// assert_eq!(w.name(), "uncertainty");
/// ```
#[derive(Debug, Clone, Default)]
pub struct Uncertainty<T: Float> {
    log_vars: Vec<Parameter<T>>,
    kinds: Vec<(String, UncertaintyKind)>,
}

impl<T: Float> Uncertainty<T> {
    /// Every loss [`UncertaintyKind::Plain`], log-variances 0.
    ///
    /// ```
    /// let w = polyhead::weighting::Uncertainty::<f64>::new();
    /// assert!(w.log_variances().is_empty()); // created at the first step
    /// ```
    pub fn new() -> Self {
        Uncertainty {
            log_vars: Vec::new(),
            kinds: Vec::new(),
        }
    }

    /// Sets one loss's kind (by its name).
    ///
    /// ```
    /// use polyhead::weighting::{Uncertainty, UncertaintyKind};
    /// let w = Uncertainty::<f64>::new().kind("class", UncertaintyKind::Classification);
    /// # let _ = w;
    /// ```
    pub fn kind(mut self, name: &str, kind: UncertaintyKind) -> Self {
        self.kinds.push((name.to_string(), kind));
        self
    }

    /// The learned log-variances `s_i`, one per loss.
    ///
    /// ```
    /// let mut w = polyhead::weighting::Uncertainty::<f64>::new();
    /// polyhead::weighting::Weighting::prepare(&mut w, &["a", "b"])?;
    /// assert_eq!(w.log_variances(), vec![0.0, 0.0]);
    /// # Ok::<(), polyhead::Error>(())
    /// ```
    pub fn log_variances(&self) -> Vec<f64> {
        self.log_vars
            .iter()
            .map(|s| s.value().item().map_or(f64::NAN, |v| v.to_f64()))
            .collect()
    }

    fn kind_of(&self, name: &str) -> UncertaintyKind {
        self.kinds
            .iter()
            .find(|(k, _)| k == name)
            .map_or(UncertaintyKind::Plain, |k| k.1)
    }
}

impl<T: Float> Weighting<T> for Uncertainty<T> {
    fn name(&self) -> &str {
        "uncertainty"
    }

    fn prepare(&mut self, names: &[&str]) -> Result<()> {
        if self.log_vars.len() != names.len() {
            self.log_vars = names
                .iter()
                .map(|_| Parameter::new(Tensor::scalar(T::ZERO)))
                .collect();
        }
        Ok(())
    }

    fn combine<'t>(&mut self, step: &Step<'_, 't, T>) -> Result<Combination<'t, T>> {
        let mut total: Option<Var<'t, T>> = None;
        let mut weights = Vec::with_capacity(step.losses.len());
        for (((loss, s), &w), name) in step
            .losses
            .iter()
            .zip(&self.log_vars)
            .zip(step.loss_weights)
            .zip(step.names)
        {
            let (c, d) = self.kind_of(name).factors();
            let s_value = s.value().item().map_or(0.0, |v| v.to_f64());
            weights.push(c * (-s_value).exp() * w);
            let s = step.tape.param(s);
            let term = s
                .neg()
                .exp()
                .mul(loss.scale(T::from_f64(c * w)))?
                .add(s.scale(T::from_f64(d)))?;
            total = Some(match total {
                Some(t) => t.add(term)?,
                None => term,
            });
        }
        let total = total.ok_or_else(|| Error::Invalid("no losses to weigh".into()))?;
        Ok(Combination::Objective { total, weights })
    }

    fn visit_state<'a>(&'a self, f: &mut dyn FnMut(String, &'a Parameter<T>)) {
        for (i, p) in self.log_vars.iter().enumerate() {
            f(format!("log_var.{i}"), p);
        }
    }

    fn visit_state_mut<'a>(&'a mut self, f: &mut dyn FnMut(String, &'a mut Parameter<T>)) {
        for (i, p) in self.log_vars.iter_mut().enumerate() {
            f(format!("log_var.{i}"), p);
        }
    }
}
