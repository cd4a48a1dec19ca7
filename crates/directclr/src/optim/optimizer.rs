//! The optimiser: LARS or SGD over named parameters, updated in place with tensor operations on
//! the parameters' device, with momentum buffers that can be exported and restored.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tch::nn::VarStore;
use tch::Tensor;

use super::flat::{FlatState, Segment};
use super::lars::LarsConfig;
use super::sgd::SgdConfig;
use crate::{Error, Result};

/// The optimiser of a run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OptimizerConfig {
    /// LARS (the authors' pretraining).
    Lars(LarsConfig),
    /// SGD with momentum (linear probe, toy models).
    Sgd(SgdConfig),
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        OptimizerConfig::Lars(LarsConfig::default())
    }
}

impl OptimizerConfig {
    /// Checks the hyperparameters.
    pub fn validate(&self) -> Result<()> {
        match self {
            OptimizerConfig::Lars(c) => c.validate(),
            OptimizerConfig::Sgd(c) => c.validate(),
        }
    }

    /// An optimiser over `params` (name, leaf tensor requiring gradients). Names must be unique;
    /// they name the momentum buffers in [`Optimizer::momentum_state`].
    pub fn build(&self, params: Vec<(String, Tensor)>) -> Result<Optimizer> {
        self.validate()?;
        let mut seen = HashMap::new();
        let mut out = Vec::with_capacity(params.len());
        for (name, tensor) in params {
            if seen.insert(name.clone(), ()).is_some() {
                return Err(Error::config(
                    "parameters",
                    format!("`{name}` is given twice"),
                ));
            }
            if !tensor.requires_grad() {
                return Err(Error::config(
                    "parameters",
                    format!("`{name}` does not require gradients"),
                ));
            }
            let momentum = tch::no_grad(|| tensor.f_zeros_like())?;
            out.push(Param {
                excluded_1d: tensor.dim() == 1,
                name,
                tensor,
                momentum,
            });
        }
        Ok(Optimizer {
            config: *self,
            params: out,
            flat: None,
        })
    }

    /// An optimiser over the trainable variables of `vs` (see [`trainable_variables`]).
    pub fn build_for(&self, vs: &VarStore) -> Result<Optimizer> {
        self.build(trainable_variables(vs))
    }
}

/// The trainable variables of `vs` (those that require gradients: parameters, not buffers nor
/// frozen tensors) with their store names, sorted by name so that the order is the same in
/// every run.
pub fn trainable_variables(vs: &VarStore) -> Vec<(String, Tensor)> {
    let mut v: Vec<(String, Tensor)> = vs
        .variables()
        .into_iter()
        .filter(|(_, t)| t.requires_grad())
        .collect();
    v.sort_by(|a, b| a.0.cmp(&b.0));
    v
}

#[derive(Debug)]
struct Param {
    name: String,
    tensor: Tensor,
    momentum: Tensor,
    excluded_1d: bool,
}

/// LARS or SGD over a fixed list of named parameters.
///
/// The update runs under `no_grad`, in place, with tensor operations only (no value is read
/// back to the host, so a GPU step does not synchronise). A parameter without a gradient
/// (unused in the loss) is skipped, as in PyTorch.
#[derive(Debug)]
pub struct Optimizer {
    config: OptimizerConfig,
    params: Vec<Param>,
    /// Set by [`Optimizer::fuse`]: parameters and momentum live in flat buffers.
    flat: Option<FlatState>,
}

impl Optimizer {
    /// The configuration.
    pub fn config(&self) -> &OptimizerConfig {
        &self.config
    }

    /// The names of the parameters it updates, in order.
    pub fn param_names(&self) -> Vec<&str> {
        self.params.iter().map(|p| p.name.as_str()).collect()
    }

    /// Drops every parameter's gradient, as PyTorch's `zero_grad()` (`set_to_none=True`, its
    /// default): the next backward writes fresh gradients instead of filling zeros and adding
    /// into them (two passes over every weight and two parallel regions per parameter saved).
    /// A parameter left out of the next loss then has no gradient and is skipped by
    /// [`Optimizer::step`], as in PyTorch.
    pub fn zero_grad(&mut self) {
        for p in &mut self.params {
            let mut err = [0 as std::ffi::c_char; 256];
            // SAFETY: the pointer is the live tensor handle owned by `p.tensor`; the shim only
            // resets its gradient field and reports any C++ exception through `err`.
            let rc = unsafe {
                directclr_sys::directclr_clear_grad(
                    p.tensor.as_mut_ptr(),
                    err.as_mut_ptr(),
                    err.len(),
                )
            };
            if rc != 0 {
                // Zeroing in place leads to the same next update (only slower).
                p.tensor.zero_grad();
            }
        }
    }

    /// Moves every parameter and momentum buffer into one flat buffer each (the tensors become
    /// views: their values, shapes and strides stay), so that [`Optimizer::step`] updates all
    /// of them with a fixed number of tensor operations (see `optim/flat.rs`). Call it after
    /// the parameters have their final memory order (channels-last) and device. A step in which
    /// some parameter has no gradient falls back to the per-tensor update (equal results).
    pub fn fuse(&mut self) -> Result<()> {
        if self.flat.is_some() || self.params.is_empty() {
            return Ok(());
        }
        let segments: Vec<Segment> = self
            .params
            .iter()
            .map(|p| {
                let (wd, exclude, lars) = match self.config {
                    OptimizerConfig::Lars(c) => {
                        (c.weight_decay, c.exclude_1d && p.excluded_1d, true)
                    }
                    OptimizerConfig::Sgd(c) => {
                        (c.weight_decay, c.exclude_1d && p.excluded_1d, false)
                    }
                };
                Segment {
                    decay: if exclude { 0.0 } else { wd },
                    trust: lars && !exclude,
                }
            })
            .collect();
        let mut ws: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.tensor.shallow_clone())
            .collect();
        let mut mus: Vec<Tensor> = self
            .params
            .iter()
            .map(|p| p.momentum.shallow_clone())
            .collect();
        self.flat = Some(FlatState::new(&mut ws, &mut mus, &segments)?);
        Ok(())
    }

    /// Whether [`Optimizer::fuse`] was called.
    pub fn is_fused(&self) -> bool {
        self.flat.is_some()
    }

    /// One update with learning rate `lr` from the parameters' current gradients.
    ///
    /// Each pass over a parameter is one fused kernel (`addcmul` with a 0-d scalar tensor, as
    /// PyTorch's `add(…, alpha=…)`): d = g + λw; μ ← d + m μ (LARS: μ ← m μ, then μ += q d);
    /// w ← w + (−lr) μ. Three fewer passes over every weight than one operation at a time, and
    /// fewer parallel regions; the results differ from that form by float32 rounding only (the
    /// kernels may fuse a multiply-add), see `tests/optim_fused_step.rs`.
    pub fn step(&mut self, lr: f64) -> Result<()> {
        if !lr.is_finite() || lr < 0.0 {
            return Err(Error::config(
                "lr",
                format!("{lr} is not a non-negative number"),
            ));
        }
        let _guard = tch::no_grad_guard();
        let config = self.config;
        if let Some(flat) = &mut self.flat {
            let grads: Vec<Tensor> = self.params.iter().map(|p| p.tensor.grad()).collect();
            if grads.iter().all(|g| g.defined()) {
                let (momentum, eta, nesterov) = match config {
                    OptimizerConfig::Lars(c) => (c.momentum, Some(c.eta), false),
                    OptimizerConfig::Sgd(c) => (c.momentum, None, c.nesterov),
                };
                return flat.step(&grads, momentum, lr, eta, nesterov);
            }
        }
        let (momentum, weight_decay) = match config {
            OptimizerConfig::Lars(c) => (c.momentum, c.weight_decay),
            OptimizerConfig::Sgd(c) => (c.momentum, c.weight_decay),
        };
        // 0-d f64 scalars: a wrapped number of the parameters' dtype in each kernel, like the
        // Python scalars of PyTorch's optimisers (no device transfer, no synchronisation).
        let wd_t = Tensor::from(weight_decay);
        let m_t = Tensor::from(momentum);
        let neg_lr_t = Tensor::from(-lr);
        for p in &mut self.params {
            let g = p.tensor.grad();
            if !g.defined() {
                continue;
            }
            let exclude = match config {
                OptimizerConfig::Lars(c) => c.exclude_1d && p.excluded_1d,
                OptimizerConfig::Sgd(c) => c.exclude_1d && p.excluded_1d,
            };
            // d = g + λ w
            let d = if weight_decay != 0.0 && !exclude {
                g.f_addcmul(&p.tensor, &wd_t)?
            } else {
                g.f_detach()?
            };
            match config {
                OptimizerConfig::Lars(c) if !exclude => {
                    // q = η‖w‖/‖d‖ if both norms > 0, else 1
                    let w_norm = p.tensor.f_norm()?;
                    let d_norm = d.f_norm()?;
                    let both = w_norm.f_gt(0.0)?.f_logical_and(&d_norm.f_gt(0.0)?)?;
                    let ratio = w_norm.f_mul_scalar(c.eta)?.f_div(&d_norm)?;
                    let q = ratio.f_where_self(&both, &w_norm.f_ones_like()?)?;
                    // μ ← m μ + q d
                    let _ = p.momentum.f_mul_scalar_(momentum)?;
                    let _ = p.momentum.f_addcmul_(&d, &q)?;
                }
                _ => {
                    // μ ← d + m μ (one kernel, written into μ)
                    let _ = d.f_addcmul_out(&p.momentum, &p.momentum, &m_t)?;
                }
            }
            // w ← w − lr · update
            match config {
                OptimizerConfig::Sgd(c) if c.nesterov => {
                    let update = d.f_addcmul(&p.momentum, &m_t)?;
                    let _ = p.tensor.f_addcmul_(&update, &neg_lr_t)?;
                }
                _ => {
                    let _ = p.tensor.f_addcmul_(&p.momentum, &neg_lr_t)?;
                }
            }
        }
        Ok(())
    }

    /// The momentum buffers under the parameters' names (shallow handles: copy them to keep a
    /// snapshot), for checkpoints.
    pub fn momentum_state(&self) -> Vec<(String, Tensor)> {
        self.params
            .iter()
            .map(|p| (p.name.clone(), p.momentum.shallow_clone()))
            .collect()
    }

    /// Restores the momentum buffers from `state` (as written by [`Optimizer::momentum_state`]):
    /// exactly one buffer of the parameter's shape per parameter, no other names.
    pub fn load_momentum_state(&mut self, state: &[(String, Tensor)]) -> Result<()> {
        let mismatch = |reason: String| Error::StateMismatch {
            what: "optimiser momentum".into(),
            reason,
        };
        let src: HashMap<&str, &Tensor> = state.iter().map(|(n, t)| (n.as_str(), t)).collect();
        if src.len() != state.len() {
            return Err(mismatch("a name is given twice".into()));
        }
        for p in &self.params {
            match src.get(p.name.as_str()) {
                None => return Err(mismatch(format!("no buffer for `{}`", p.name))),
                Some(t) if t.size() != p.tensor.size() => {
                    return Err(mismatch(format!(
                        "buffer `{}` has shape {:?}, the parameter {:?}",
                        p.name,
                        t.size(),
                        p.tensor.size()
                    )))
                }
                Some(_) => {}
            }
        }
        if let Some((extra, _)) = state
            .iter()
            .find(|(n, _)| !self.params.iter().any(|p| &p.name == n))
        {
            return Err(mismatch(format!(
                "`{extra}` is not a parameter of this optimiser"
            )));
        }
        tch::no_grad(|| -> Result<()> {
            for p in &mut self.params {
                p.momentum.f_copy_(src[p.name.as_str()])?;
            }
            Ok(())
        })
    }
}
