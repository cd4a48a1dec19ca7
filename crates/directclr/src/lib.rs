//! # directclr
//!
//! Contrastive self-supervised learning and the study of dimensional collapse, after Jing,
//! Vincent, LeCun and Tian, *Understanding Dimensional Collapse in Contrastive Self-Supervised
//! Learning* (ICLR 2022).
//!
//! The modules follow the paper:
//! - [`theory`]: the toy models of Sections 4–5 (Theorem 1, Figures 4–6) and the closed forms
//!   (Lemmas 1–2, Eqn 6, Theorems 2–3).
//! - [`analysis`]: covariance spectra (Eqn 1) and rank metrics of embeddings.
//! - [`data`]: dataset readers, the authors' augmentations and a seeded parallel loader.
//! - [`plot`]: the figures (log spectra, evolution curves, heat maps).
//! - [`runtime`]: devices (CPU, CUDA loaded at run time) and thread settings.
//! - [`precision`]: autocast with a chosen dtype (bf16) and channels-last tensors, via the shim.
//! - [`model`]: the ResNet encoders (torchvision layout and names), projectors, online probe.
//! - [`loss`]: InfoNCE, the authors' cross-view symmetric form and SimCLR's NT-Xent.
//! - [`method`]: the rows of Table 1 (SimCLR projectors, DirectCLR, ablations) as one enum.
//! - [`optim`]: LARS and SGD updating parameters in place, the warm-up + cosine schedule.
//! - [`dist`]: data-parallel training through PyTorch's c10d engine (launch variables,
//!   TCPStore rendezvous, Gloo process group, exact gathered negatives, synchronised BN).
//! - [`train`]: the one pretraining loop, its TOML configuration, run folder and resume.
//! - [`eval`]: linear probe, kNN and the spectra and rank metrics of trained encoders.
//! - [`reproduce`]: Table 1 and Figures 2 and 9 in one resumable command and report.
#![warn(missing_docs)]

pub mod analysis;
pub mod data;
pub mod dist;
pub mod error;
pub mod eval;
pub mod formats;
pub mod loss;
pub mod method;
pub mod model;
pub mod optim;
pub mod plot;
pub mod precision;
pub mod reproduce;
pub mod run;
pub mod runtime;
pub mod theory;
pub mod train;

pub use error::{Error, Result};
