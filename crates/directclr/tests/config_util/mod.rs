//! Helpers of the run-config tests: a minimal valid config and the field an error names.
#![allow(dead_code)]

use directclr::Error;

/// The smallest valid run config (the defaults fill the rest); tests append tables to it.
pub const MINIMAL: &str = r#"
epochs = 3
batch_size = 8
[data]
source = { kind = "fashion_mnist", path = "fm" }
image_size = 32
[model]
arch = "resnet18"
stem = "cifar"
width_multiplier = 0.0625
[method]
kind = "direct_clr"
d0 = 8
[schedule]
warmup_epochs = 1.0
"#;

/// The field named by an [`Error::InvalidConfig`]; panics on any other error.
pub fn field_of(e: Error) -> String {
    match e {
        Error::InvalidConfig { field, .. } => field,
        other => panic!("expected InvalidConfig, got {other}"),
    }
}
