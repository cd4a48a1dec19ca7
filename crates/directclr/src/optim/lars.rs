//! LARS as the authors use it (facebookresearch/directclr `utils.LARS`, from Barlow Twins).

use serde::{Deserialize, Serialize};

use crate::{Error, Result};

/// Hyperparameters of LARS (You et al. 2017) in the form of the authors' code.
///
/// For each parameter w with gradient g:
/// 1. d = g + λ w (weight decay λ), unless w is excluded;
/// 2. d ← d · q with the trust ratio q = η ‖w‖ / ‖d‖ when ‖w‖ > 0 and ‖d‖ > 0, else q = 1,
///    unless w is excluded;
/// 3. μ ← m μ + d (momentum buffer μ, zero at the start);
/// 4. w ← w − lr · μ.
///
/// With `exclude_1d`, 1-d parameters (biases, BN γ and β, the diagonal projector) are excluded
/// from both weight decay and the trust ratio (the authors' `exclude_bias_and_norm`:
/// `p.ndim == 1`). The defaults are the authors': η = 0.001, m = 0.9, λ = 1e-6, excluded.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LarsConfig {
    /// Momentum m ∈ [0, 1).
    pub momentum: f64,
    /// Weight decay λ ≥ 0.
    pub weight_decay: f64,
    /// Trust coefficient η > 0.
    pub eta: f64,
    /// Exclude 1-d parameters from weight decay and the trust ratio.
    pub exclude_1d: bool,
}

impl Default for LarsConfig {
    fn default() -> Self {
        LarsConfig {
            momentum: 0.9,
            weight_decay: 1e-6,
            eta: 0.001,
            exclude_1d: true,
        }
    }
}

impl LarsConfig {
    /// Checks the ranges.
    pub fn validate(&self) -> Result<()> {
        check_momentum(self.momentum)?;
        check_weight_decay(self.weight_decay)?;
        if !(self.eta.is_finite() && self.eta > 0.0) {
            return Err(Error::config(
                "eta",
                format!("{} is not a positive number", self.eta),
            ));
        }
        Ok(())
    }
}

pub(crate) fn check_momentum(m: f64) -> Result<()> {
    if !(0.0..1.0).contains(&m) {
        return Err(Error::config("momentum", format!("{m} is not in [0, 1)")));
    }
    Ok(())
}

pub(crate) fn check_weight_decay(wd: f64) -> Result<()> {
    if !(wd.is_finite() && wd >= 0.0) {
        return Err(Error::config(
            "weight_decay",
            format!("{wd} is not a non-negative number"),
        ));
    }
    Ok(())
}
