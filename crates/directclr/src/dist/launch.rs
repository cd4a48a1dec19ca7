//! A local launcher (what `torchrun --nproc-per-node N` does on one machine): spawns N copies
//! of a command with `RANK`, `WORLD_SIZE`, `LOCAL_RANK`, `LOCAL_WORLD_SIZE`, `MASTER_ADDR`
//! (127.0.0.1) and a free `MASTER_PORT`, waits for all of them, and when one fails gives the
//! others a grace period to notice (they do, through their closed connections) before killing
//! them. The ranks end with the launcher (Linux's parent-death signal).

use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

use crate::{Error, Result};

/// How each rank ended.
#[derive(Debug, Clone)]
pub struct RankExit {
    /// The rank.
    pub rank: usize,
    /// Its exit status (`None`: killed by the launcher after the grace period).
    pub status: Option<ExitStatus>,
}

/// A free TCP port on the loopback interface (bound, then released).
pub fn free_port() -> Result<u16> {
    let l = std::net::TcpListener::bind(("127.0.0.1", 0))
        .map_err(|e| Error::io("cannot bind a port on", "127.0.0.1", e))?;
    let port = l
        .local_addr()
        .map_err(|e| Error::io("cannot read the port of", "127.0.0.1", e))?
        .port();
    Ok(port)
}

/// Runs `nproc` ranks of `program args…` on this machine and waits for them. Fails with
/// [`Error::Distributed`] naming the ranks that failed; once a rank has failed, the others
/// get `grace` to exit on their own before they are killed.
pub fn run_local(
    program: &Path,
    args: &[String],
    nproc: usize,
    grace: Duration,
) -> Result<Vec<RankExit>> {
    if nproc == 0 {
        return Err(Error::config("nproc", "must be at least 1"));
    }
    let port = free_port()?;
    let mut children: Vec<(usize, Child)> = Vec::with_capacity(nproc);
    for rank in 0..nproc {
        let mut cmd = Command::new(program);
        // A rank outlives neither the launcher nor its kill -9: the kernel sends it SIGTERM
        // when the launcher exits.
        // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
                Ok(())
            });
        }
        let child = cmd
            .args(args)
            .env("RANK", rank.to_string())
            .env("WORLD_SIZE", nproc.to_string())
            .env("LOCAL_RANK", rank.to_string())
            .env("LOCAL_WORLD_SIZE", nproc.to_string())
            .env("MASTER_ADDR", "127.0.0.1")
            .env("MASTER_PORT", port.to_string())
            .spawn();
        match child {
            Ok(c) => children.push((rank, c)),
            Err(e) => {
                for (_, c) in &mut children {
                    let _ = c.kill();
                    let _ = c.wait();
                }
                return Err(Error::io("cannot start", program, e));
            }
        }
    }
    let mut exits: Vec<Option<RankExit>> = vec![None; nproc];
    let mut failed_at: Option<Instant> = None;
    loop {
        for (rank, c) in &mut children {
            if exits[*rank].is_some() {
                continue;
            }
            if let Ok(Some(status)) = c.try_wait() {
                if !status.success() && failed_at.is_none() {
                    failed_at = Some(Instant::now());
                }
                exits[*rank] = Some(RankExit {
                    rank: *rank,
                    status: Some(status),
                });
            }
        }
        if exits.iter().all(Option::is_some) {
            break;
        }
        if failed_at.is_some_and(|t| t.elapsed() > grace) {
            for (rank, c) in &mut children {
                if exits[*rank].is_none() {
                    let _ = c.kill();
                    let _ = c.wait();
                    exits[*rank] = Some(RankExit {
                        rank: *rank,
                        status: None,
                    });
                }
            }
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let exits: Vec<RankExit> = exits.into_iter().flatten().collect();
    let failed: Vec<String> = exits
        .iter()
        .filter(|e| !e.status.is_some_and(|s| s.success()))
        .map(|e| match e.status {
            Some(s) => format!("rank {} ({s})", e.rank),
            None => format!("rank {} (killed after {} s)", e.rank, grace.as_secs()),
        })
        .collect();
    if !failed.is_empty() {
        return Err(Error::Distributed {
            context: format!("{nproc} local processes"),
            reason: format!("failed: {}", failed.join(", ")),
        });
    }
    Ok(exits)
}
