//! The pieces of data-parallel training, in one process: launch variables, shards whose union
//! is the one-process batch, and the differentiable collectives, synchronised BN and gradient
//! averaging (c10d's Reducer overlapping the backward pass, and the buckets after it) of two
//! ranks (two threads, each with its own c10d Gloo group over one TCPStore) against closed
//! forms, per-rank autograd and libtorch's batch norm over the whole batch.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use directclr::data::{Dataset, ImageArray, Loader, LoaderConfig, RecipeConfig, Shard, Transform};
use directclr::dist::launch::free_port;
use directclr::dist::{Backend, DistEnv, ProcessGroup};
use directclr::Error;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn env_of(vars: &[(&str, &str)]) -> Result<Option<DistEnv>, Error> {
    let map: HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    DistEnv::from_lookup(|k| map.get(k).cloned())
}

fn err_of(vars: &[(&str, &str)]) -> String {
    match env_of(vars) {
        Err(e @ Error::Distributed { .. }) => e.to_string(),
        other => panic!("{vars:?}: expected a distributed-run error, got {other:?}"),
    }
}

#[test]
fn launch_variables_of_torchrun_and_slurm() {
    assert_eq!(env_of(&[]).unwrap(), None);
    assert_eq!(env_of(&[("MASTER_ADDR", "h")]).unwrap(), None);
    assert_eq!(env_of(&[("RANK", "0"), ("WORLD_SIZE", "1")]).unwrap(), None);
    let full = [
        ("RANK", "3"),
        ("WORLD_SIZE", "8"),
        ("LOCAL_RANK", "1"),
        ("LOCAL_WORLD_SIZE", "2"),
        ("MASTER_ADDR", "node0"),
        ("MASTER_PORT", "29500"),
    ];
    assert_eq!(
        env_of(&full).unwrap(),
        Some(DistEnv {
            rank: 3,
            world_size: 8,
            local_rank: 1,
            master_addr: "node0".into(),
            master_port: 29500,
        })
    );
    // SLURM's variables stand in for torchrun's.
    let slurm = [
        ("SLURM_PROCID", "5"),
        ("SLURM_NTASKS", "16"),
        ("SLURM_LOCALID", "1"),
        ("MASTER_ADDR", "n0"),
        ("MASTER_PORT", "1234"),
    ];
    let e = env_of(&slurm).unwrap().unwrap();
    assert_eq!((e.rank, e.world_size, e.local_rank), (5, 16, 1));

    assert!(err_of(&[("RANK", "0")]).contains("`WORLD_SIZE`"));
    assert!(err_of(&[("WORLD_SIZE", "2")]).contains("`RANK`"));
    assert!(err_of(&[("RANK", "2"), ("WORLD_SIZE", "2")]).contains("not in 0..2"));
    assert!(err_of(&[("RANK", "-1"), ("WORLD_SIZE", "2")]).contains("`RANK`"));
    assert!(err_of(&[("RANK", "0"), ("WORLD_SIZE", "0")]).contains("at least one"));
    let mut v = full.to_vec();
    v.retain(|(k, _)| *k != "MASTER_PORT");
    assert!(err_of(&v).contains("`MASTER_PORT`"));
    v.push(("MASTER_PORT", "70000"));
    assert!(err_of(&v).contains("`MASTER_PORT`"));
    let mut v = full.to_vec();
    v.retain(|(k, _)| *k != "LOCAL_RANK");
    assert!(err_of(&v).contains("`LOCAL_RANK`"));
    let mut v = full.to_vec();
    v[3] = ("LOCAL_WORLD_SIZE", "1");
    assert!(err_of(&v).contains("LOCAL_WORLD_SIZE"));
    let mut v = slurm.to_vec();
    v.retain(|(k, _)| *k != "SLURM_NTASKS");
    assert!(err_of(&v).contains("`SLURM_NTASKS`"));
}

fn dataset(n: usize) -> Arc<Dataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let px: Vec<u8> = (0..n * 3 * 8 * 8).map(|_| rng.gen()).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 4).collect();
    let names = (0..4).map(|i| format!("c{i}")).collect();
    let a = ImageArray::new(px, n, 3, 8, 8, Path::new("mem")).unwrap();
    Arc::new(Dataset::from_array(a, labels, names, "mem").unwrap())
}

#[test]
fn every_step_the_ranks_batches_are_the_one_process_batch() {
    // Global batch 12 over W ranks (12 / W rows each), drop_last, 50 samples (4 steps): in
    // every epoch and step the ranks' samples are disjoint, their union is the one-process
    // batch of that step, and every sample's augmented views are bit-identical.
    let ds = dataset(50);
    let transform = Transform::Views(RecipeConfig::with_size(8).check().unwrap());
    let loader = |world: usize, rank: usize| {
        Loader::new(
            ds.clone(),
            transform.clone(),
            LoaderConfig {
                batch_size: 12 / world,
                workers: 0,
                seed: 5,
                shuffle: true,
                drop_last: true,
                shard: Shard::new(rank, world).unwrap(),
                ..Default::default()
            },
        )
        .unwrap()
    };
    let single = loader(1, 0);
    for epoch in [0u64, 3] {
        let reference: Vec<_> = single.epoch(epoch).map(|b| b.unwrap()).collect();
        assert_eq!(reference.len(), 4);
        for world in [2, 3, 4] {
            let ranks: Vec<Vec<_>> = (0..world)
                .map(|r| loader(world, r).epoch(epoch).map(|b| b.unwrap()).collect())
                .collect();
            for (step, one) in reference.iter().enumerate() {
                let mut union: Vec<usize> = Vec::new();
                for rank in &ranks {
                    assert_eq!(
                        rank.len(),
                        reference.len(),
                        "world {world}: steps per epoch"
                    );
                    let b = &rank[step];
                    for (i, idx) in b.indices.iter().enumerate() {
                        let j = one
                            .indices
                            .iter()
                            .position(|x| x == idx)
                            .unwrap_or_else(|| {
                                panic!(
                                    "world {world} step {step}: sample {idx} is not in the batch"
                                )
                            });
                        for v in 0..2 {
                            assert!(b.views[v].get(i as i64).equal(&one.views[v].get(j as i64)));
                        }
                    }
                    union.extend(&b.indices);
                }
                let n = union.len();
                union.sort_unstable();
                union.dedup();
                assert_eq!(n, union.len(), "world {world} step {step}: a duplicate");
                let mut expected = one.indices.clone();
                expected.sort_unstable();
                assert_eq!(union, expected, "world {world} step {step}");
            }
        }
    }
}

/// Without the `dist` feature the library has no Gloo process group: joining one is refused
/// before any rendezvous, naming the feature.
#[cfg(not(feature = "dist"))]
#[test]
fn gloo_is_refused_naming_the_feature_without_dist() {
    let env = DistEnv {
        rank: 0,
        world_size: 2,
        local_rank: 0,
        master_addr: "127.0.0.1".into(),
        master_port: free_port().unwrap(),
    };
    let err = ProcessGroup::init(&env, Backend::Gloo, std::time::Duration::from_secs(1))
        .err()
        .expect("no Gloo group without the feature")
        .to_string();
    assert!(err.contains("feature `dist`"), "{err}");
}

/// Two ranks in one process over c10d's Gloo groups (the feature `dist`).
#[cfg(feature = "dist")]
mod gloo {
    use super::*;
    use directclr::dist::{sync_batch_norm, GradientBuckets, GradientSync, OverlappedReducer};
    use tch::{Device, Kind, Tensor};

    /// Runs `f(group)` on ranks 0 and 1 (two threads, one Gloo group each) and returns both results.
    fn two_ranks<T: Send + 'static>(
        f: impl Fn(&Arc<ProcessGroup>) -> T + Send + Sync + 'static,
    ) -> [T; 2] {
        let port = free_port().unwrap();
        let f = Arc::new(f);
        let handles: Vec<_> = (0..2)
            .map(|rank| {
                let f = f.clone();
                std::thread::spawn(move || {
                    let env = DistEnv {
                        rank,
                        world_size: 2,
                        local_rank: rank,
                        master_addr: "127.0.0.1".into(),
                        master_port: port,
                    };
                    let g =
                        ProcessGroup::init(&env, Backend::Gloo, std::time::Duration::from_secs(30))
                            .unwrap();
                    f(&Arc::new(g))
                })
            })
            .collect();
        let mut out: Vec<T> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let b = out.pop().unwrap();
        let a = out.pop().unwrap();
        [a, b]
    }

    /// Standard normal f64 values from a ChaCha8 stream (thread-safe, unlike libtorch's global
    /// generator).
    fn seeded(seed: u64, shape: &[i64]) -> Tensor {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let n: i64 = shape.iter().product();
        let v: Vec<f64> = (0..n)
            .map(|_| rng.sample::<f64, _>(rand_distr::StandardNormal))
            .collect();
        Tensor::from_slice(&v).reshape(shape)
    }

    #[test]
    fn gather_backward_sums_gradients_over_ranks_and_keeps_own_rows() {
        // Rank r: x_r [3, 4], y = gather(x) [6, 4], J_r = Σ y ⊙ c_r. Then
        // ∂(J_0 + J_1)/∂x_r = (c_0 + c_1)[rows of r]; the all-reduce likewise gives c_0 + c_1.
        let [a, b] = two_ranks(|g| {
            let r = g.rank() as u64;
            let x = seeded(10 + r, &[3, 4]).set_requires_grad(true);
            let c = seeded(20 + r, &[6, 4]);
            let y = g.all_gather_with_grad(&x).unwrap();
            (&y * &c).sum(Kind::Double).backward();
            let s = seeded(30 + r, &[3, 4]).set_requires_grad(true);
            let d = seeded(40 + r, &[3, 4]);
            let t = g.all_reduce_with_grad(&s).unwrap();
            (&t * &d).sum(Kind::Double).backward();
            (y.detach(), x.grad(), t.detach(), s.grad())
        });
        let xs = [seeded(10, &[3, 4]), seeded(11, &[3, 4])];
        let c = seeded(20, &[6, 4]) + seeded(21, &[6, 4]);
        let all = Tensor::cat(&xs, 0);
        for (r, res) in [a, b].iter().enumerate() {
            // A gather copies: exact.
            assert!(res.0.allclose(&all, 0.0, 0.0, false));
            let expect = c.narrow(0, 3 * r as i64, 3);
            // Each gradient and reduced value is one f64 addition of two exact values (∂/∂y of
            // Σ y ⊙ c is c), as in the reference: ≤ (ε64/2)·|a + b| ≪ 1e-12·(1 + |a + b|).
            assert!(res.1.allclose(&expect, 1e-12, 1e-12, false), "rank {r}");
            assert!(res.2.allclose(
                &(seeded(30, &[3, 4]) + seeded(31, &[3, 4])),
                1e-12,
                1e-12,
                false
            ));
            assert!(res.3.allclose(
                &(seeded(40, &[3, 4]) + seeded(41, &[3, 4])),
                1e-12,
                1e-12,
                false
            ));
        }
    }

    #[test]
    fn sync_batch_norm_of_two_ranks_is_batch_norm_of_the_whole_batch() {
        // x [10, 3, 4, 4] (offset mean, so that the combination of the ranks' variances matters)
        // split 6 + 4 rows; loss Σ y ⊙ c. Against libtorch's batch_norm on all 10 rows: outputs,
        // ∂/∂x, Σ_ranks ∂/∂γ and ∂/∂β, running mean and (unbiased) variance.
        let x = seeded(1, &[10, 3, 4, 4]) * 2.0 + 3.0;
        let c = seeded(2, &[10, 3, 4, 4]);
        let gamma = seeded(3, &[3]);
        let beta = seeded(4, &[3]);
        let rows = [(0i64, 6i64), (6, 4)];
        let [a, b] = two_ranks(move |g| {
            let (start, len) = rows[g.rank()];
            let x2 = seeded(1, &[10, 3, 4, 4]) * 2.0 + 3.0;
            let c2 = seeded(2, &[10, 3, 4, 4]);
            let xr = x2.narrow(0, start, len).copy().set_requires_grad(true);
            let w = seeded(3, &[3]).set_requires_grad(true);
            let bias = seeded(4, &[3]).set_requires_grad(true);
            let (rm, rv) = (
                Tensor::zeros([3], (Kind::Double, Device::Cpu)),
                Tensor::ones([3], (Kind::Double, Device::Cpu)),
            );
            let y = sync_batch_norm(g, &xr, &w, &bias, &rm, &rv, 0.1, 1e-5).unwrap();
            (&y * c2.narrow(0, start, len)).sum(Kind::Double).backward();
            (y.detach(), xr.grad(), w.grad(), bias.grad(), rm, rv)
        });
        let xr = x.copy().set_requires_grad(true);
        let w = gamma.copy().set_requires_grad(true);
        let bias = beta.copy().set_requires_grad(true);
        let (rm, rv) = (
            Tensor::zeros([3], (Kind::Double, Device::Cpu)),
            Tensor::ones([3], (Kind::Double, Device::Cpu)),
        );
        let y = xr.batch_norm(
            Some(&w),
            Some(&bias),
            Some(&rm),
            Some(&rv),
            true,
            0.1,
            1e-5,
            false,
        );
        (&y * &c).sum(Kind::Double).backward();
        // f64 sums over the N = 160 values of a channel, in another order and split 96 + 64:
        // ≤ N·ε64·Σ|terms| each. The statistics: Σ|x| ≤ 160·|3 ± 2|-ish, and the variance's
        // cancellation (mean² / var ≈ 9 / 4) costs a factor 3.25: relative ≤ 2·160·ε64·3.25 <
        // 3e-13. The gradients: Σ|c ⊙ x̂| ≤ ‖c‖·‖x̂‖ = ‖c‖·√N < √2·N (Cauchy–Schwarz, ‖c‖² < 2N
        // for these 160 standard normals) and |γ|/σ ≲ 1, so ≤ N·ε64·√2·N ≈ 8e-12 per sum, with a
        // few sums chained: < 1e-10 absolute, and the relative part covers the large entries.
        let close = |p: &Tensor, q: &Tensor| p.allclose(q, 1e-10, 1e-10, false);
        // The premises of that bound, for these seeded values:
        let per_channel_c2 = c
            .square()
            .sum_dim_intlist(&[0i64, 2, 3][..], false, Kind::Double);
        assert!(per_channel_c2.max().double_value(&[]) < 2.0 * 160.0);
        assert!(gamma.abs().max().double_value(&[]) < 1.9); // σ ≈ 2

        let cat = |p: &Tensor, q: &Tensor| Tensor::cat(&[p, q], 0);
        assert!(close(&cat(&a.0, &b.0), &y.detach()));
        assert!(close(&cat(&a.1, &b.1), &xr.grad()));
        assert!(close(&(&a.2 + &b.2), &w.grad()));
        assert!(close(&(&a.3 + &b.3), &bias.grad()));
        for r in [&a, &b] {
            assert!(close(&r.4, &rm));
            assert!(close(&r.5, &rv));
        }
    }

    /// Four f64 parameters of several shapes (25 values), the same on every rank.
    fn parameters() -> Vec<(String, Tensor)> {
        [vec![3i64, 4], vec![5], vec![2, 2, 2], vec![7]]
            .iter()
            .enumerate()
            .map(|(i, shape)| {
                let t = seeded(50 + i as u64, shape).set_requires_grad(true);
                (format!("p{i}"), t)
            })
            .collect()
    }

    /// Rank r's loss at step s: Σ_i Σ tanh(w_i ⊙ c_{r,s,i}), a different function on each rank.
    fn rank_loss(params: &[(String, Tensor)], rank: u64, step: u64) -> Tensor {
        let mut total = Tensor::zeros([], (Kind::Double, Device::Cpu));
        for (i, (_, w)) in params.iter().enumerate() {
            let c = seeded(100 * step + 10 * rank + i as u64, &w.size());
            total += (w * c).tanh().sum(Kind::Double);
        }
        total
    }

    #[test]
    fn overlapped_reducer_and_buckets_after_backward_average_gradients_exactly() {
        // Buckets of at most 64 bytes (8 f64 values): 4 buckets for the 4 parameters, each
        // all-reduced from its autograd hook; the reducer rebuilds them after the first step.
        // Three steps of w ← w − 0.1·ḡ, where ḡ is the mean over the ranks of ∂J_r/∂w. Every step,
        // on both ranks and both ways, ḡ equals (g_0 + g_1)/2 of plain autograd bit for bit
        // (dividing by 2 before or after the sum is exact), and the weights stay equal.
        for overlap in [true, false] {
            let [a, b] = two_ranks(move |g| {
                let params = parameters();
                let sync = if overlap {
                    GradientSync::Overlapped(OverlappedReducer::new(g, &params, 64).unwrap())
                } else {
                    GradientSync::AfterBackward(GradientBuckets::new(&params, 64), g.clone())
                };
                let mut worst = 0f64;
                for step in 0..3u64 {
                    // What every rank's gradient is, from plain autograd on fresh leaves.
                    let expected: Vec<Tensor> = {
                        let mut per_rank = Vec::new();
                        for r in 0..2u64 {
                            let leaves: Vec<(String, Tensor)> = params
                                .iter()
                                .map(|(n, w)| {
                                    (n.clone(), w.detach().copy().set_requires_grad(true))
                                })
                                .collect();
                            rank_loss(&leaves, r, step).backward();
                            per_rank.push(leaves.iter().map(|(_, w)| w.grad()).collect::<Vec<_>>());
                        }
                        per_rank[0]
                            .iter()
                            .zip(&per_rank[1])
                            .map(|(x, y)| (x + y) / 2.0)
                            .collect()
                    };
                    for (_, w) in &params {
                        let w = w.shallow_clone();
                        if w.grad().defined() {
                            let _ = w.grad().zero_();
                        }
                    }
                    sync.backward(&rank_loss(&params, g.rank() as u64, step))
                        .unwrap();
                    for ((name, w), e) in params.iter().zip(&expected) {
                        let d = (w.grad() - e).abs().max().double_value(&[]);
                        // Exact: the per-rank gradients come from the same elementwise code on the
                        // same machine (determinism), a + b is commutative and halving is exact.
                        assert!(d == 0.0, "overlap {overlap}, step {step}, {name}: {d:e}");
                        worst = worst.max(d);
                    }
                    tch::no_grad(|| {
                        for (_, w) in &params {
                            let mut w = w.shallow_clone();
                            let _ = w.f_sub_(&(w.grad() * 0.1)).unwrap();
                        }
                    });
                }
                let weights: Vec<Tensor> = params.iter().map(|(_, w)| w.detach().copy()).collect();
                (weights, worst)
            });
            for (x, y) in a.0.iter().zip(&b.0) {
                assert!(x.equal(y), "overlap {overlap}: the ranks' weights differ");
            }
            assert_eq!((a.1, b.1), (0.0, 0.0)); // exact, as above
        }
    }

    #[test]
    fn overlapped_reducer_names_a_parameter_without_gradient() {
        let [a, b] = two_ranks(|g| {
            let params = parameters();
            let reducer = OverlappedReducer::new(g, &params, 64).unwrap();
            // p2 takes no part in the loss.
            let used: Vec<(String, Tensor)> = params
                .iter()
                .filter(|(n, _)| n != "p2")
                .map(|(n, t)| (n.clone(), t.shallow_clone()))
                .collect();
            match reducer.backward(&rank_loss(&used, g.rank() as u64, 0)) {
                Err(e @ Error::Distributed { .. }) => e.to_string(),
                other => panic!("expected a distributed-run error, got {other:?}"),
            }
        });
        for msg in [a, b] {
            assert!(
                msg.contains("p2") && msg.contains("no gradient") && msg.contains("dist.overlap"),
                "{msg}"
            );
        }
    }
}
