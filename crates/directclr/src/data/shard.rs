//! Splitting an epoch over the ranks of a distributed run.
//!
//! Every rank draws the same permutation of the epoch (it depends only on seed and epoch); rank
//! `r` of `world` takes positions `r, r + world, r + 2·world, …` of it. The shards are disjoint
//! and their union is the whole epoch; their sizes differ by at most one, and
//! `len / world` (the smallest) is what `drop_last` uses so that every rank runs the same number
//! of batches.

use serde::{Deserialize, Serialize};

use super::DataError;

/// One rank's share of the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of ranks.
    pub world_size: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Self::SINGLE
    }
}

impl Shard {
    /// The whole data on one process.
    pub const SINGLE: Shard = Shard {
        rank: 0,
        world_size: 1,
    };

    /// Rank `rank` of `world_size`, checked.
    pub fn new(rank: usize, world_size: usize) -> Result<Self, DataError> {
        let s = Shard { rank, world_size };
        s.check()?;
        Ok(s)
    }

    /// Checks `rank < world_size`.
    pub fn check(&self) -> Result<(), DataError> {
        if self.world_size == 0 || self.rank >= self.world_size {
            return Err(DataError::param(
                "shard",
                format!("rank {} is not in 0..{}", self.rank, self.world_size),
            ));
        }
        Ok(())
    }

    /// This rank's positions of an epoch's order.
    ///
    /// # Shapes
    /// `order`: `[n]` → `[⌈(n − rank) / world⌉]`.
    pub fn select(&self, order: &[usize]) -> Vec<usize> {
        order
            .iter()
            .skip(self.rank)
            .step_by(self.world_size)
            .copied()
            .collect()
    }

    /// Number of samples of this rank for an epoch of `n`.
    pub fn len(&self, n: usize) -> usize {
        n / self.world_size + usize::from(self.rank < n % self.world_size)
    }

    /// The number of samples every rank has at least (`n / world`).
    pub fn common_len(&self, n: usize) -> usize {
        n / self.world_size
    }
}
