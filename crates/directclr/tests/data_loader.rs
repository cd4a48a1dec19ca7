//! The loader: bit-for-bit determinism whatever the number of workers, shards, output kinds,
//! bad images.

use std::path::Path;
use std::sync::Arc;

use directclr::data::augment::{EvalTransform, Scratch};
use directclr::data::image_folder::read_image_folder;
use directclr::data::loader::sample_rng;
use directclr::data::{
    BadImagePolicy, DataError, Dataset, ImageArray, Loader, LoaderConfig, OutputKind, RecipeConfig,
    Shard, Transform,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

fn dataset(n: usize, c: usize, h: usize, w: usize) -> Arc<Dataset> {
    let mut rng = ChaCha8Rng::seed_from_u64(11);
    let px: Vec<u8> = (0..n * c * h * w).map(|_| rng.gen()).collect();
    let labels: Vec<i64> = (0..n as i64).map(|i| i % 4).collect();
    let names = (0..4).map(|i| format!("c{i}")).collect();
    let a = ImageArray::new(px, n, c, h, w, Path::new("mem")).unwrap();
    Arc::new(Dataset::from_array(a, labels, names, "mem").unwrap())
}

fn recipe(size: usize) -> Transform {
    Transform::Views(RecipeConfig::with_size(size).check().unwrap())
}

fn config(workers: usize) -> LoaderConfig {
    LoaderConfig {
        batch_size: 5,
        workers,
        prefetch: 2,
        seed: 7,
        drop_last: false,
        ..Default::default()
    }
}

fn collect(loader: &Loader, epoch: u64) -> Vec<(Vec<Tensor>, Tensor, Vec<usize>)> {
    loader
        .epoch(epoch)
        .map(|b| b.unwrap())
        .map(|b| (b.views, b.labels, b.indices))
        .collect()
}

/// Exact equality of two runs of the same code (the CPU kernels, whose operation order is fixed
/// in the source) on the same machine: a determinism check, not a comparison across machines.
fn same(a: &[(Vec<Tensor>, Tensor, Vec<usize>)], b: &[(Vec<Tensor>, Tensor, Vec<usize>)]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| {
            x.2 == y.2
                && x.1.equal(&y.1)
                && x.0.len() == y.0.len()
                && x.0.iter().zip(&y.0).all(|(u, v)| u.equal(v))
        })
}

#[test]
fn same_seed_same_batches_bit_for_bit_for_any_worker_count() {
    let ds = dataset(37, 3, 20, 24);
    let reference = collect(&Loader::new(ds.clone(), recipe(16), config(0)).unwrap(), 3);
    assert_eq!(reference.len(), 8);
    assert_eq!(reference[7].2.len(), 2);
    for workers in [1, 2, 3] {
        let l = Loader::new(ds.clone(), recipe(16), config(workers)).unwrap();
        assert!(same(&collect(&l, 3), &reference), "{workers} workers");
    }
    // The epoch covers every sample once; labels follow the indices.
    let mut all: Vec<usize> = reference.iter().flat_map(|b| b.2.clone()).collect();
    all.sort();
    assert_eq!(all, (0..37).collect::<Vec<_>>());
    for (views, labels, idx) in &reference {
        let l: Vec<i64> = Vec::try_from(labels).unwrap();
        assert_eq!(l, idx.iter().map(|&i| (i % 4) as i64).collect::<Vec<_>>());
        assert_eq!(views.len(), 2);
        assert_eq!(views[0].size(), vec![idx.len() as i64, 3, 16, 16]);
        assert_eq!(views[0].kind(), tch::Kind::Float);
    }
    // Another epoch or another seed changes order and augmentations.
    let l = Loader::new(ds.clone(), recipe(16), config(2)).unwrap();
    assert!(!same(&collect(&l, 4), &reference));
    let l = Loader::new(
        ds.clone(),
        recipe(16),
        LoaderConfig {
            seed: 8,
            ..config(2)
        },
    )
    .unwrap();
    assert!(!same(&collect(&l, 3), &reference));
    // A dropped iterator stops its workers; a new one starts over identically.
    let l = Loader::new(ds, recipe(16), config(3)).unwrap();
    let mut it = l.epoch(3);
    let _ = it.next();
    drop(it);
    assert!(same(&collect(&l, 3), &reference));
}

#[test]
fn a_sample_depends_only_on_seed_epoch_and_index() {
    let ds = dataset(12, 3, 20, 24);
    let t = recipe(16);
    let cfg = LoaderConfig {
        output: OutputKind::F32,
        ..config(2)
    };
    let batch = Loader::new(ds.clone(), t.clone(), cfg)
        .unwrap()
        .epoch(5)
        .next()
        .unwrap()
        .unwrap();
    let i = batch.indices[3];
    let mut rng = sample_rng(7, 5, i);
    let img = ds.image(i).unwrap();
    let mut scratch = Scratch::default();
    for v in 0..2 {
        let mut out = vec![0.0f32; 3 * 16 * 16];
        t.apply_view(v, img.view(), &mut rng, &mut scratch, &mut out);
        t.normalize(v).apply(&mut out);
        let got: Vec<f32> = Vec::try_from(batch.views[v].get(3).flatten(0, -1)).unwrap();
        // Exact: the same kernels on the same inputs in the same process (determinism).
        assert_eq!(got, out);
    }
}

#[test]
fn shards_are_disjoint_and_cover_the_epoch() {
    let ds = dataset(23, 3, 8, 8);
    for world in [1, 2, 3, 4] {
        let mut seen = vec![0usize; 23];
        let mut counts = Vec::new();
        for rank in 0..world {
            let cfg = LoaderConfig {
                shard: Shard::new(rank, world).unwrap(),
                ..config(1)
            };
            let l = Loader::new(ds.clone(), recipe(8), cfg).unwrap();
            for i in l.shard_indices(2) {
                seen[i] += 1;
            }
            let dl = Loader::new(
                ds.clone(),
                recipe(8),
                LoaderConfig {
                    drop_last: true,
                    batch_size: 2,
                    ..cfg
                },
            )
            .unwrap();
            counts.push(dl.batches_per_epoch());
            assert_eq!(dl.epoch(2).count(), dl.batches_per_epoch());
        }
        assert!(seen.iter().all(|&s| s == 1), "world {world}: {seen:?}");
        assert!(
            counts
                .iter()
                .all(|&c| c == counts[0] && c == 23 / world / 2),
            "{counts:?}"
        );
    }
    assert!(Shard::new(3, 3).is_err());
}

#[test]
fn u8_output_is_the_quantised_f32_output() {
    let ds = dataset(10, 3, 20, 24);
    let f = Loader::new(ds.clone(), recipe(16), config(1))
        .unwrap()
        .epoch(0)
        .next()
        .unwrap()
        .unwrap();
    let cfg = LoaderConfig {
        output: OutputKind::U8,
        ..config(1)
    };
    let u = Loader::new(ds, recipe(16), cfg)
        .unwrap()
        .epoch(0)
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(u.views[0].kind(), tch::Kind::Uint8);
    let norm = RecipeConfig::default().views[0].normalize;
    let back = norm.apply_tensor(&u.views[0]);
    let diff = (back - &f.views[0]).abs().max().double_value(&[]);
    // Half a grey level divided by the smallest std; round(255·x) is computed as
    // ⌊fl(fl(255x) + ½)⌋ (≤ 256u off, i.e. ≤ 1.01u after ÷255), the f32 normalisation
    // (x − m)·fl(1/std) ≤ 4u·2.7 and libtorch's (q/255 − m)/std ≤ 7u·2.7 (any kernel):
    // ≤ (1.01u + 11u·2.7·0.224)/0.224 ≈ 33u ≈ 2.0e-6 < 1e-5.
    assert!(diff <= 0.5 / 255.0 / 0.224 + 1e-5, "{diff}");
}

#[test]
fn grayscale_datasets_give_three_equal_channels() {
    let ds = dataset(6, 1, 28, 28);
    let b = Loader::new(ds, recipe(16), config(0))
        .unwrap()
        .epoch(0)
        .next()
        .unwrap()
        .unwrap();
    // Undo the per-channel normalisation: the [0, 1] values of the three channels are equal.
    let norm = RecipeConfig::default().views[0].normalize;
    for v in &b.views {
        let m = Tensor::from_slice(&norm.mean).view([1, 3, 1, 1]);
        let s = Tensor::from_slice(&norm.std).view([1, 3, 1, 1]);
        let x = v * s + m;
        let d = (x.narrow(1, 0, 1) - x.narrow(1, 2, 1))
            .abs()
            .max()
            .double_value(&[]);
        // The three [0, 1] planes are equal bits (copies of one plane, and every later kernel
        // treats equal channels alike); per channel, (x − m)·fl(1/s) then ·s + m rounds by
        // ≤ 5u on values ≤ 1: ≤ 10u ≈ 6e-7 < 1e-5.
        assert!(d < 1e-5, "{d}");
    }
}

#[test]
fn undecodable_images_are_skipped_and_counted_or_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    for (cls, n) in [("cat", 4), ("dog", 3)] {
        std::fs::create_dir_all(root.join(cls)).unwrap();
        for i in 0..n {
            let img = image::RgbImage::from_fn(40, 30, |x, y| {
                image::Rgb([(x * 6) as u8, (y * 8) as u8, i as u8])
            });
            img.save(root.join(cls).join(format!("{i}.jpg"))).unwrap();
        }
    }
    std::fs::write(
        root.join("dog/bad.png"),
        b"\x89PNG\r\n\x1a\nthis is not a png",
    )
    .unwrap();
    let ds = Arc::new(read_image_folder(root).unwrap());
    assert_eq!(ds.len(), 8);
    let eval = Transform::Eval(EvalTransform {
        resize: 24,
        crop: 20,
        ..Default::default()
    });
    let cfg = LoaderConfig {
        batch_size: 8,
        shuffle: false,
        ..config(2)
    };
    let l = Loader::new(ds.clone(), eval.clone(), cfg).unwrap();
    let b = l.epoch(0).next().unwrap().unwrap();
    assert_eq!(b.indices.len(), 7);
    assert_eq!(b.views[0].size(), vec![7, 3, 20, 20]);
    assert_eq!(l.skipped(), 1);
    let cfg = LoaderConfig {
        bad_images: BadImagePolicy::Fail,
        ..cfg
    };
    let l = Loader::new(ds, eval, cfg).unwrap();
    let mut it = l.epoch(0);
    match it.next() {
        Some(Err(DataError::Decode { path, .. })) => assert!(path.ends_with("dog/bad.png")),
        other => panic!("{other:?}"),
    }
    assert!(it.next().is_none());
}

#[test]
fn bad_loader_settings_are_refused() {
    let ds = dataset(10, 3, 8, 8);
    assert!(Loader::new(
        ds.clone(),
        recipe(8),
        LoaderConfig {
            batch_size: 0,
            ..config(1)
        }
    )
    .is_err());
    assert!(Loader::new(
        ds.clone(),
        recipe(8),
        LoaderConfig {
            prefetch: 0,
            ..config(1)
        }
    )
    .is_err());
    let cfg = LoaderConfig {
        batch_size: 11,
        drop_last: true,
        ..config(1)
    };
    assert!(matches!(
        Loader::new(ds, recipe(8), cfg),
        Err(DataError::InvalidParameter { .. })
    ));
}
