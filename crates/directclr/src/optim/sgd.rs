//! Stochastic gradient descent with momentum and weight decay, as PyTorch's `torch.optim.SGD`.

use serde::{Deserialize, Serialize};

use super::lars::{check_momentum, check_weight_decay};
use crate::Result;

/// Hyperparameters of SGD with PyTorch's update (dampening 0):
/// d = g + λ w; μ ← m μ + d; w ← w − lr · (d + m μ if Nesterov, else μ).
///
/// Used by the linear probe (the paper: momentum 0.9, λ = 1e-6) and the toy models
/// (momentum 0, λ = 0). `exclude_1d` removes weight decay from 1-d parameters (off by
/// default, as in PyTorch).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SgdConfig {
    /// Momentum m ∈ [0, 1).
    pub momentum: f64,
    /// Weight decay λ ≥ 0.
    pub weight_decay: f64,
    /// Nesterov momentum.
    pub nesterov: bool,
    /// Exclude 1-d parameters from weight decay.
    pub exclude_1d: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig {
            momentum: 0.9,
            weight_decay: 0.0,
            nesterov: false,
            exclude_1d: false,
        }
    }
}

impl SgdConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        check_momentum(self.momentum)?;
        check_weight_decay(self.weight_decay)
    }
}
