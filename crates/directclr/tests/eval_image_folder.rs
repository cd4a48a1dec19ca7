//! Representations of an image folder (Figure 9 for any encoder): the loader path
//! (`read_images` → `extract_observed`) gives the same rows as decoding each file, applying the
//! evaluation transform and feeding the stacked tensor to the encoder directly; flat and class
//! layouts, seeded subsets, skipped files, and the .npy round trip of the features.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use directclr::data::augment::Scratch;
use directclr::data::dataset::decode_file;
use directclr::data::image_folder::read_images;
use directclr::data::{BadImagePolicy, DataSource, EvalTransform, ExtractOptions};
use directclr::eval::{eval_transform, extract_observed, TrainedModel};
use directclr::formats::{open_matrix, write_npy};
use directclr::model::{Arch, ResNetConfig, Space, Stem};
use directclr::run::DataConfig;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::{Device, Kind, Tensor};

/// A torch.save checkpoint of a ResNet-18 (CIFAR stem, width 1/16, `module.` prefix) written by
/// real PyTorch (`tests/fixtures/torch_real/make_real_torch_fixtures.py`).
fn encoder_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_real/ddp.pt")
}

fn model(folder: &Path) -> TrainedModel {
    TrainedModel::from_encoder(
        ResNetConfig {
            arch: Arch::ResNet18,
            stem: Stem::Cifar,
            width_multiplier: 0.0625,
            zero_init_residual: true,
        },
        DataConfig {
            source: DataSource::ImageFolder {
                path: folder.to_path_buf(),
            },
            image_size: 32,
            limit: None,
        },
        &encoder_file(),
        None,
        Device::Cpu,
    )
    .unwrap()
}

/// Writes `n` seeded random RGB images of varied sizes (PNG, lossless) under `dir`, named so
/// that name order is generation order; returns their paths.
fn write_images(dir: &Path, n: usize, seed: u64) -> Vec<PathBuf> {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|i| {
            let (w, h) = (rng.gen_range(20..90u32), rng.gen_range(20..90u32));
            let pixels: Vec<u8> = (0..w * h * 3).map(|_| rng.gen()).collect();
            let path = dir.join(format!("img{i:03}.png"));
            image::RgbImage::from_raw(w, h, pixels)
                .unwrap()
                .save(&path)
                .unwrap();
            path
        })
        .collect()
}

/// The direct computation: decode, transform (f32 in [0, 1]), round to u8 as the loader's
/// u8 batches do (`round(255·x)`, x clamped to [0, 1]), normalise, one forward pass.
fn direct_features(model: &TrainedModel, files: &[PathBuf], eval: EvalTransform) -> Tensor {
    let side = eval.crop as i64;
    let mut scratch = Scratch::default();
    let mut out = vec![0f32; 3 * eval.crop * eval.crop];
    let mut bytes = Vec::new();
    for f in files {
        let img = decode_file(f).unwrap();
        eval.apply(img.view(), &mut scratch, &mut out);
        bytes.extend(
            out.iter()
                .map(|&x| (x.clamp(0.0, 1.0) * 255.0).round() as u8),
        );
    }
    let x = Tensor::from_slice(&bytes).view([files.len() as i64, 3, side, side]);
    let x = eval.normalize.apply_tensor(&x);
    model.features(&x, Space::Representation).unwrap()
}

fn one_batch(n: usize) -> ExtractOptions {
    ExtractOptions {
        batch_size: n,
        workers: 2,
        bad_images: BadImagePolicy::Fail,
    }
}

#[test]
fn a_flat_folder_gives_the_rows_of_the_direct_computation() {
    let tmp = tempfile::tempdir().unwrap();
    let files = write_images(tmp.path(), 12, 1);
    let ds = Arc::new(read_images(tmp.path()).unwrap());
    assert_eq!(ds.len(), 12);
    assert!(
        ds.labels().iter().all(|&l| l == -1),
        "a flat folder is unlabelled"
    );
    let model = model(tmp.path());
    // 32 px: the small-image transform (resize 32, no crop) of the model's image size.
    let eval = eval_transform(32);
    let got = extract_observed(
        &model,
        ds,
        eval,
        Space::Representation,
        &one_batch(12),
        &mut |_| {},
    )
    .unwrap();
    assert_eq!(got.indices, (0..12).collect::<Vec<_>>());
    assert!(got.skipped.is_empty());
    let want = direct_features(&model, &files, eval);
    // The same u8 batch in the same order through the same kernels in one forward pass: the
    // loader's machinery (workers, batching, file order) must add nothing, so equality is exact.
    assert_eq!(got.features.x.size(), want.size());
    let diff = (&got.features.x - &want).abs().max().double_value(&[]);
    assert_eq!(
        diff, 0.0,
        "loader path differs from the direct computation by {diff}"
    );
}

#[test]
fn class_folders_give_labels_and_a_crop_transform_the_direct_rows() {
    let tmp = tempfile::tempdir().unwrap();
    let mut files = write_images(&tmp.path().join("b_second"), 5, 2);
    let first = write_images(&tmp.path().join("a_first"), 4, 3);
    files.splice(0..0, first);
    let ds = Arc::new(read_images(tmp.path()).unwrap());
    assert_eq!(ds.labels(), &[0, 0, 0, 0, 1, 1, 1, 1, 1]);
    assert_eq!(ds.class_names(), &["a_first", "b_second"]);
    for (i, f) in files.iter().enumerate() {
        assert_eq!(ds.file(i), Some(f.as_path()));
    }
    let model = model(tmp.path());
    // ImageNet-style resize + centre crop at another size than the model's: the encoder
    // pools globally, so any crop gives a representation.
    let eval = EvalTransform {
        resize: 40,
        crop: 36,
        ..eval_transform(224)
    };
    let got = extract_observed(
        &model,
        ds,
        eval,
        Space::Representation,
        &one_batch(9),
        &mut |_| {},
    )
    .unwrap();
    let want = direct_features(&model, &files, eval);
    let diff = (&got.features.x - &want).abs().max().double_value(&[]);
    assert_eq!(
        diff, 0.0,
        "loader path differs from the direct computation by {diff}"
    );
    let labels = Vec::<i64>::try_from(&got.features.labels).unwrap();
    assert_eq!(labels, vec![0, 0, 0, 0, 1, 1, 1, 1, 1]);
}

#[test]
fn an_undecodable_file_is_named_or_skipped_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let files = write_images(tmp.path(), 6, 4);
    let bad = tmp.path().join("img002.png");
    std::fs::write(&bad, b"\x89PNG\r\n\x1a\n truncated").unwrap();
    let ds = Arc::new(read_images(tmp.path()).unwrap());
    let model = model(tmp.path());
    let eval = eval_transform(32);
    let err = extract_observed(
        &model,
        ds.clone(),
        eval,
        Space::Representation,
        &one_batch(4),
        &mut |_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("img002.png"), "{err}");
    let mut seen = Vec::new();
    let got = extract_observed(
        &model,
        ds.clone(),
        eval,
        Space::Representation,
        &ExtractOptions {
            bad_images: BadImagePolicy::Skip,
            ..one_batch(4)
        },
        &mut |done| seen.push(done),
    )
    .unwrap();
    assert_eq!(got.skipped, vec![2]);
    assert_eq!(got.indices, vec![0, 1, 3, 4, 5]);
    assert_eq!(ds.file(got.skipped[0]), Some(bad.as_path()));
    assert_eq!(seen, vec![4, 6], "progress after each batch of 4");
    // The kept rows are those of the good files, whatever batch the bad one was in.
    let good: Vec<PathBuf> = files
        .iter()
        .enumerate()
        .filter(|&(i, _)| i != 2)
        .map(|(_, f)| f.clone())
        .collect();
    let want = direct_features(&model, &good, eval);
    // Batches of 3 + 2 rows against one of 5: the batch size may change how a layer's
    // reductions are blocked. A reordered sum of blocked partials changes a layer's output by
    // at most (number of partials, ≤ 64 here) · ε relative to its magnitude, and eval-mode BN
    // and ReLU pass it on; over the 18 layers of the network this is ≤ 18 · 64 · ε₃₂ of the
    // features' scale (≈ 1.4e-4 relative). Rows of two different images differ by far more
    // (checked below), so a row mix-up cannot hide under the bound.
    let diff = (&got.features.x - &want).abs().max().double_value(&[]);
    let scale = want.abs().max().double_value(&[]);
    let bound = 18.0 * 64.0 * f64::from(f32::EPSILON) * scale;
    let rows = want.size()[0];
    for i in 0..rows {
        for j in i + 1..rows {
            let apart = (want.get(i) - want.get(j)).abs().max().double_value(&[]);
            assert!(apart > 10.0 * bound, "rows {i} and {j} only {apart} apart");
        }
    }
    assert!(
        diff <= bound,
        "kept rows differ from the direct computation by {diff} > {bound}"
    );
}

#[test]
fn a_seeded_sample_is_reproducible_and_in_dataset_order() {
    let tmp = tempfile::tempdir().unwrap();
    write_images(tmp.path(), 30, 5);
    let ds = read_images(tmp.path()).unwrap();
    let pick = |seed| {
        let s = ds.sample(10, seed).unwrap();
        (0..s.len())
            .map(|i| s.file(i).unwrap().to_path_buf())
            .collect::<Vec<_>>()
    };
    let a = pick(7);
    assert_eq!(a, pick(7), "same seed, same subset");
    assert_ne!(a, pick(8), "another seed, another subset");
    assert!(a.windows(2).all(|w| w[0] < w[1]), "kept in dataset order");
    assert_eq!(
        ds.sample(100, 7).unwrap().len(),
        30,
        "n above the length keeps all"
    );
}

#[test]
fn an_empty_or_missing_folder_is_refused_with_its_path() {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("notes.txt"), b"no image here").unwrap();
    let err = read_images(tmp.path()).unwrap_err().to_string();
    assert!(err.contains(&tmp.path().display().to_string()), "{err}");
    assert!(err.contains("no image file"), "{err}");
    let missing = tmp.path().join("missing");
    let err = read_images(&missing).unwrap_err().to_string();
    assert!(err.contains("missing"), "{err}");
}

#[test]
fn written_features_read_back_bit_for_bit() {
    let tmp = tempfile::tempdir().unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(6);
    let values: Vec<f32> = (0..35).map(|_| rng.gen_range(-3.0..3.0)).collect();
    let x = Tensor::from_slice(&values).view([7, 5]);
    let file = tmp.path().join("r.npy");
    write_npy(&file, &x).unwrap();
    let mut m = open_matrix(&file, None).unwrap();
    let layout = m.layout();
    assert_eq!((layout.rows, layout.cols), (7, 5));
    let mut back = Vec::new();
    m.for_each_chunk(|rows, _| {
        back.extend_from_slice(rows);
        Ok(())
    })
    .unwrap();
    // f32 → f64 widening is exact.
    assert_eq!(back, values.iter().map(|&v| v as f64).collect::<Vec<_>>());
    let err = write_npy(&file, &x.to_kind(Kind::Double))
        .unwrap_err()
        .to_string();
    assert!(err.contains("r.npy"), "{err}");
}
