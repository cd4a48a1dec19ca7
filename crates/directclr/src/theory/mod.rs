//! The theory lab: the toy models of Sections 4–5 and their closed forms.
//!
//! - Section 4 (strong augmentation, Theorem 1): one linear layer, noise on some coordinates;
//!   X of Eqn 6 gains negative eigenvalues and the weights collapse along them.
//! - Section 5 (implicit regularisation, Theorems 2–3, Figures 4–5): two linear layers align
//!   (A = V2ᵀU1 → I) and the small singular values stay small.
//! - Section 5.4 (Figure 6): more layers collapse more dimensions; ReLU behaves alike.
//! - Section 6 (Figure 7b, Table 1): [`head`] puts a projector, DirectCLR's sub-vector or an
//!   ablation between the encoder's output r and the loss; [`projector`] measures what each
//!   does to the spectrum of r under both collapse mechanisms.
//!
//! [`trainer`] is the one training loop for all of them; [`closed_form`] holds the lemmas and
//! theorems; [`experiments`] runs the paper's figures and writes their files.

pub mod alignment;
pub mod closed_form;
pub mod conditions;
pub mod config;
pub mod experiments;
pub mod gaussian;
pub mod head;
pub mod projector;
pub mod real;
pub mod small_gemm;
pub mod toy_loss;
pub mod toy_net;
pub mod trainer;

pub use config::{NoiseSupport, Precision, ToyConfig};
pub use head::{Head, HeadConfig, HeadKind};
pub use toy_loss::{EmbeddingGrad, ToyLoss, ZNorm};
pub use toy_net::{Activation, Init, ToyNet};
pub use trainer::{train, train_with_head, ToyRecord, ToyRun, Trainer};
