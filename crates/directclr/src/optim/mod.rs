//! Optimisers (LARS, SGD) updating named parameters in place, and the warm-up + cosine
//! learning-rate schedule.

mod flat;
mod lars;
mod optimizer;
mod schedule;
mod sgd;

pub use lars::LarsConfig;
pub use optimizer::{trainable_variables, Optimizer, OptimizerConfig};
pub use schedule::{ScheduleConfig, WarmupCosine};
pub use sgd::SgdConfig;
