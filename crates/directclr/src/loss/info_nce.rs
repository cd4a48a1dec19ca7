//! InfoNCE in the two forms the paper's systems use: the authors' cross-view form and
//! SimCLR's NT-Xent.

use serde::{Deserialize, Serialize};
use tch::{Kind, Reduction, Tensor};

use crate::{Error, Result};

/// Which embeddings serve as negatives of an anchor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Negatives {
    /// The authors' form (`infoNCE` of facebookresearch/directclr): anchor z1ᵢ is scored against
    /// every z2ⱼ of the other view, an N-way classification whose positive is z2ᵢ: N − 1
    /// negatives, all from the other view.
    CrossView,
    /// SimCLR's NT-Xent (Chen et al. 2020): anchor z1ᵢ is scored against all 2N − 1 other
    /// embeddings of both views, positive z2ᵢ: 2N − 2 negatives.
    NtXent,
}

/// The InfoNCE loss of the paper (its Eqn 2 with inner products of unit vectors as the
/// similarity), as one configuration.
///
/// - `normalize`: z ↦ z / max(‖z‖, 1e-12) first (PyTorch's `F.normalize`); the authors'
///   pretraining normalises, their toy models of Sections 4–5 do not.
/// - logits sᵢⱼ = ⟨aᵢ, bⱼ⟩ / τ.
/// - `symmetric`: with [`Negatives::CrossView`], ½ L(z1, z2) + ½ L(z2, z1) (the authors'
///   pretraining); otherwise L(z1, z2) only, i.e. `cross_entropy(z1 @ z2.T / τ, arange(N))`
///   (the authors' toy loss). With [`Negatives::NtXent`], the anchors are both views (2N
///   anchors, SimCLR) when symmetric, view 1 only (N anchors) otherwise.
/// - The result is the mean over anchors of −log softmax at the positive.
///
/// The authors' pretraining loss is [`InfoNce::authors`]; their toy loss is
/// `InfoNce { temperature: 0.1, normalize: false, symmetric: false, negatives: CrossView }`.
///
/// Computed in float32 at least (half and bfloat16 inputs are upcast), on the inputs' device.
/// With several processes, z1 and z2 must be the gathered global batch.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InfoNce {
    /// τ > 0 (authors: 0.1).
    pub temperature: f64,
    /// L2-normalise each embedding first.
    pub normalize: bool,
    /// Average the loss over both views as anchors.
    pub symmetric: bool,
    /// Which negatives.
    pub negatives: Negatives,
}

impl Default for InfoNce {
    fn default() -> Self {
        Self::authors()
    }
}

impl InfoNce {
    /// The authors' pretraining loss: τ = 0.1, normalised, cross-view negatives, symmetrised.
    pub fn authors() -> Self {
        InfoNce {
            temperature: 0.1,
            normalize: true,
            symmetric: true,
            negatives: Negatives::CrossView,
        }
    }

    /// SimCLR's NT-Xent with temperature `temperature` (normalised, 2N anchors).
    pub fn nt_xent(temperature: f64) -> Self {
        InfoNce {
            temperature,
            normalize: true,
            symmetric: true,
            negatives: Negatives::NtXent,
        }
    }

    /// Checks τ.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(Error::config(
                "temperature",
                format!("{} is not a positive number", self.temperature),
            ));
        }
        Ok(())
    }

    /// The loss, checked once: [`Self::validate`], then a [`CheckedInfoNce`] whose
    /// [`CheckedInfoNce::loss`] does not check τ again (the training loop's form).
    pub fn checked(self) -> Result<CheckedInfoNce> {
        self.validate()?;
        Ok(CheckedInfoNce(self))
    }

    /// The loss of the embeddings of two views of the same N samples (row i of z1 and row i
    /// of z2 are the positive pair). Checks τ on each call; [`Self::checked`] checks it once.
    ///
    /// # Shapes
    /// - `z1`, `z2`: `[N, d]`, N ≥ 1 (NT-Xent: N ≥ 1 as well; with N = 1 there are no negatives
    ///   and the loss is 0).
    /// - returns a scalar `[]` (float32, or float64 for float64 inputs), differentiable in both.
    pub fn loss(&self, z1: &Tensor, z2: &Tensor) -> Result<Tensor> {
        self.checked()?.loss(z1, z2)
    }
}

/// An [`InfoNce`] whose parameters have been checked ([`InfoNce::checked`]): its
/// [`Self::loss`] checks only the embeddings' shapes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckedInfoNce(InfoNce);

impl CheckedInfoNce {
    /// The loss's parameters.
    pub fn config(&self) -> &InfoNce {
        &self.0
    }

    /// [`InfoNce::loss`] without checking τ again.
    pub fn loss(&self, z1: &Tensor, z2: &Tensor) -> Result<Tensor> {
        let (s1, s2) = (z1.size(), z2.size());
        if s1.len() != 2 || s1 != s2 || s1[0] < 1 {
            return Err(Error::config(
                "embeddings",
                format!("z1 {s1:?} and z2 {s2:?} must both be [N, d] with the same N ≥ 1 and d"),
            ));
        }
        let n = s1[0];
        let (a, b) = (self.0.prepare(z1)?, self.0.prepare(z2)?);
        let inv_t = 1.0 / self.0.temperature;
        let device = a.device();
        match self.0.negatives {
            Negatives::CrossView => {
                // [N, N]: logits[i, j] = <a_i, b_j> / τ; positives on the diagonal.
                let logits = a.f_mm(&b.f_tr()?)?.f_mul_scalar(inv_t)?;
                let target = Tensor::f_arange(n, (Kind::Int64, device))?;
                let l12 = logits.f_cross_entropy_loss(
                    &target,
                    None::<&Tensor>,
                    Reduction::Mean,
                    -100,
                    0.0,
                )?;
                if self.0.symmetric {
                    // L(z2, z1) has logits b aᵀ / τ = logitsᵀ.
                    let l21 = logits.f_tr()?.f_cross_entropy_loss(
                        &target,
                        None::<&Tensor>,
                        Reduction::Mean,
                        -100,
                        0.0,
                    )?;
                    Ok(l12.f_add(&l21)?.f_mul_scalar(0.5)?)
                } else {
                    Ok(l12)
                }
            }
            Negatives::NtXent => {
                // [2N, d] -> [2N, 2N] similarities, self-similarity excluded.
                let z = Tensor::f_cat(&[&a, &b], 0)?;
                let anchors = if self.0.symmetric {
                    z.shallow_clone()
                } else {
                    a.shallow_clone()
                };
                let m = anchors.size()[0];
                let logits = anchors.f_mm(&z.f_tr()?)?.f_mul_scalar(inv_t)?;
                let idx = Tensor::f_arange(m, (Kind::Int64, device))?;
                let self_mask = Tensor::f_eye_m(m, 2 * n, (Kind::Bool, device))?;
                let logits = logits.f_masked_fill(&self_mask, f64::NEG_INFINITY)?;
                // The positive of anchor k is k + N (view 1) or k − N (view 2).
                let target = idx.f_add_scalar(n)?.f_remainder(2 * n)?;
                Ok(logits.f_cross_entropy_loss(
                    &target,
                    None::<&Tensor>,
                    Reduction::Mean,
                    -100,
                    0.0,
                )?)
            }
        }
    }
}

impl InfoNce {
    fn prepare(&self, z: &Tensor) -> Result<Tensor> {
        let z = match z.kind() {
            Kind::Half | Kind::BFloat16 => z.f_to_kind(Kind::Float)?,
            _ => z.shallow_clone(),
        };
        if self.normalize {
            let norm = z
                .f_norm_scalaropt_dim(2.0, [1i64], true)?
                .f_clamp_min(1e-12)?;
            Ok(z.f_div(&norm)?)
        } else {
            Ok(z)
        }
    }
}
