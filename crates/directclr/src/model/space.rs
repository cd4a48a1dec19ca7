//! Where features are read from (the representation r, the embedding z, the projector's hidden
//! layer) and which coordinates of them (the paper's sub-vector ablation r[:d0] / r[d0:]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use tch::Tensor;

use crate::{Error, Result};

/// The space a feature vector is taken from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "clap", derive(clap::ValueEnum))]
pub enum Space {
    /// The representation r, the encoder's pooled output (`[N, D]`; Figures 7b and 9).
    Representation,
    /// The embedding z = g(r) that enters the loss (`[N, d]`; Figure 2).
    Embedding,
    /// The hidden layer of SimCLR's 2-layer projector, after BN and ReLU (`[N, h]`).
    ProjectorHidden,
}

impl Space {
    /// Short symbol used in tables and file names: `r`, `z`, `h`.
    pub fn symbol(self) -> &'static str {
        match self {
            Space::Representation => "r",
            Space::Embedding => "z",
            Space::ProjectorHidden => "h",
        }
    }
}

/// A contiguous range `[start, end)` of feature coordinates, written as Python slices:
/// `:` (all), `:360` (the first 360, DirectCLR's r[:d0]), `360:` (the rest), `10:20`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct FeatureSlice {
    /// First coordinate.
    pub start: i64,
    /// One past the last coordinate; `None` means the end of the vector.
    pub end: Option<i64>,
}

impl FeatureSlice {
    /// Every coordinate.
    pub const ALL: FeatureSlice = FeatureSlice {
        start: 0,
        end: None,
    };

    /// The first `d0` coordinates.
    pub fn head(d0: i64) -> Self {
        FeatureSlice {
            start: 0,
            end: Some(d0),
        }
    }

    /// The coordinates from `d0` on.
    pub fn tail(d0: i64) -> Self {
        FeatureSlice {
            start: d0,
            end: None,
        }
    }

    /// Whether the slice takes every coordinate.
    pub fn is_all(&self) -> bool {
        self.start == 0 && self.end.is_none()
    }

    /// A tag for file and folder names: empty for the whole vector, else `_<start>-<end>`
    /// (`end` for an open end), e.g. `_0-360`, `_360-end`.
    pub fn file_tag(&self) -> String {
        if self.is_all() {
            return String::new();
        }
        match self.end {
            Some(e) => format!("_{}-{e}", self.start),
            None => format!("_{}-end", self.start),
        }
    }

    /// `(start, end)` within a vector of `dim` coordinates, or an error naming `field` when the
    /// slice is empty or reaches beyond `dim`.
    pub fn resolve(&self, dim: i64, field: &str) -> Result<(i64, i64)> {
        let end = self.end.unwrap_or(dim);
        if end > dim || self.start >= end {
            return Err(Error::config(
                field,
                format!(
                    "slice {self} selects nothing or reaches beyond the {dim} coordinates of \
                     the features"
                ),
            ));
        }
        Ok((self.start, end))
    }

    /// The selected columns of `x`.
    ///
    /// # Shapes
    /// `x`: `[N, dim]` → `[N, end − start]`.
    pub fn apply(&self, x: &Tensor, field: &str) -> Result<Tensor> {
        let (s, e) = self.resolve(x.size()[1], field)?;
        Ok(x.f_narrow(1, s, e - s)?)
    }
}

impl fmt::Display for FeatureSlice {
    /// `[s:e]`, `[:e]`, `[s:]`; nothing for the whole vector (so that `r` reads `r`).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_all() {
            return Ok(());
        }
        let s = if self.start == 0 {
            String::new()
        } else {
            self.start.to_string()
        };
        match self.end {
            Some(e) => write!(f, "[{s}:{e}]"),
            None => write!(f, "[{s}:]"),
        }
    }
}

impl FromStr for FeatureSlice {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let bad = || {
            Error::config(
                "slice",
                format!("`{text}` is not a slice like `:360`, `360:`, `10:20` or `:`"),
            )
        };
        let t = text.trim().trim_start_matches('[').trim_end_matches(']');
        let (a, b) = t.split_once(':').ok_or_else(bad)?;
        let num = |s: &str| -> Result<Option<i64>> {
            let s = s.trim();
            if s.is_empty() {
                return Ok(None);
            }
            match s.parse::<i64>() {
                Ok(v) if v >= 0 => Ok(Some(v)),
                _ => Err(bad()),
            }
        };
        let start = num(a)?.unwrap_or(0);
        let end = num(b)?;
        if matches!(end, Some(e) if e <= start) {
            return Err(bad());
        }
        Ok(FeatureSlice { start, end })
    }
}
