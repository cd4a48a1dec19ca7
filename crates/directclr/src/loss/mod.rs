//! Contrastive losses: InfoNCE in the authors' cross-view symmetric form and SimCLR's NT-Xent.
//! Pure functions of the embeddings.

mod info_nce;

pub use info_nce::{CheckedInfoNce, InfoNce, Negatives};
