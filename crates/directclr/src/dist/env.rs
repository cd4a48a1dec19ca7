//! The launch environment of a distributed run: the variables that `torchrun` sets (`RANK`,
//! `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`, `MASTER_PORT`), with SLURM's
//! (`SLURM_PROCID`, `SLURM_NTASKS`, `SLURM_LOCALID`) standing in for the first three when
//! they are absent, so that `srun directclr train …` works unchanged.

use crate::{Error, Result};

/// Where this process stands in a run of several processes, read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DistEnv {
    /// This process's rank, `0..world_size`.
    pub rank: usize,
    /// Number of processes.
    pub world_size: usize,
    /// Rank among the processes of this machine (selects `cuda:LOCAL_RANK`).
    pub local_rank: usize,
    /// Host of rank 0, where the TCPStore listens.
    pub master_addr: String,
    /// Port of the TCPStore.
    pub master_port: u16,
}

/// A variable's value, parsed; `name` is named in every error.
fn parse<T: std::str::FromStr>(name: &str, value: &str) -> Result<T> {
    value.trim().parse().map_err(|_| Error::Distributed {
        context: format!("environment variable `{name}`"),
        reason: format!("`{value}` is not a non-negative integer"),
    })
}

impl DistEnv {
    /// Reads the process's environment; see [`DistEnv::from_lookup`].
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the launch variables through `get`.
    ///
    /// - Neither `RANK`/`WORLD_SIZE` nor `SLURM_PROCID`/`SLURM_NTASKS` set, or a world of one
    ///   process: `Ok(None)`, a single-process run.
    /// - `RANK` and `WORLD_SIZE` (else `SLURM_PROCID` and `SLURM_NTASKS`) must come together,
    ///   `LOCAL_RANK` (else `SLURM_LOCALID`), `MASTER_ADDR` and `MASTER_PORT` are required
    ///   when there are several processes; `RANK < WORLD_SIZE`, and
    ///   `LOCAL_RANK < LOCAL_WORLD_SIZE ≤ WORLD_SIZE` when `LOCAL_WORLD_SIZE` is set. Anything
    ///   else is an [`Error::Distributed`] naming the variable.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let get = |k: &str| get(k).filter(|v| !v.trim().is_empty());
        let missing = |name: &str, why: &str| Error::Distributed {
            context: format!("environment variable `{name}`"),
            reason: format!("not set, but {why}"),
        };
        // torchrun's names first; SLURM's as the fallback of the whole pair.
        let (rank_name, world_name, local_name) =
            if get("RANK").is_some() || get("WORLD_SIZE").is_some() {
                ("RANK", "WORLD_SIZE", "LOCAL_RANK")
            } else if get("SLURM_PROCID").is_some() || get("SLURM_NTASKS").is_some() {
                ("SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID")
            } else {
                return Ok(None);
            };
        let rank: usize = match get(rank_name) {
            Some(v) => parse(rank_name, &v)?,
            None => return Err(missing(rank_name, &format!("`{world_name}` is"))),
        };
        let world_size: usize = match get(world_name) {
            Some(v) => parse(world_name, &v)?,
            None => return Err(missing(world_name, &format!("`{rank_name}` is"))),
        };
        if world_size == 0 {
            return Err(Error::Distributed {
                context: format!("environment variable `{world_name}`"),
                reason: "a run needs at least one process".into(),
            });
        }
        if rank >= world_size {
            return Err(Error::Distributed {
                context: format!("environment variables `{rank_name}` and `{world_name}`"),
                reason: format!("rank {rank} is not in 0..{world_size}"),
            });
        }
        if world_size == 1 {
            return Ok(None);
        }
        let several = format!("{world_name} = {world_size}");
        let local_rank: usize = match get(local_name) {
            Some(v) => parse(local_name, &v)?,
            None => return Err(missing(local_name, &several)),
        };
        if let Some(v) = get("LOCAL_WORLD_SIZE") {
            let local_world: usize = parse("LOCAL_WORLD_SIZE", &v)?;
            if local_rank >= local_world || local_world > world_size {
                return Err(Error::Distributed {
                    context: format!("environment variables `{local_name}` and `LOCAL_WORLD_SIZE`"),
                    reason: format!(
                        "local rank {local_rank} of {local_world} local processes does not fit \
                         a world of {world_size}"
                    ),
                });
            }
        }
        let master_addr = get("MASTER_ADDR").ok_or_else(|| missing("MASTER_ADDR", &several))?;
        let port = get("MASTER_PORT").ok_or_else(|| missing("MASTER_PORT", &several))?;
        let master_port: u16 = match parse::<u16>("MASTER_PORT", &port)? {
            0 => {
                return Err(Error::Distributed {
                    context: "environment variable `MASTER_PORT`".into(),
                    reason: "port 0 cannot be agreed on by several processes".into(),
                })
            }
            p => p,
        };
        Ok(Some(DistEnv {
            rank,
            world_size,
            local_rank,
            master_addr: master_addr.trim().to_string(),
            master_port,
        }))
    }
}
