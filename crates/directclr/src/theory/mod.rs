//! The theory lab.
