//! `directclr spectrum --encoder F --arch A --data DIR` on a folder of images (Figure 9 for any
//! encoder): flat and class layouts, `--save-embeddings` read back by `spectrum --embeddings`
//! with the same metrics, `--skip-bad`, and the errors for bad images, empty folders and bad
//! transform flags.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// A torch.save checkpoint of a ResNet-18 (CIFAR stem, width 1/16) written by real PyTorch.
fn encoder_file() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../directclr/tests/fixtures/torch_real/ddp.pt")
}

/// `n` seeded random RGB PNGs of varied sizes in `dir`.
fn write_images(dir: &Path, n: usize, seed: u64) {
    std::fs::create_dir_all(dir).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    for i in 0..n {
        let (w, h) = (rng.gen_range(20..70u32), rng.gen_range(20..70u32));
        let pixels: Vec<u8> = (0..w * h * 3).map(|_| rng.gen()).collect();
        image::RgbImage::from_raw(w, h, pixels)
            .unwrap()
            .save(dir.join(format!("img{i:03}.png")))
            .unwrap();
    }
}

fn spectrum(data: &Path, out: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_directclr"))
        .args(["--threads", "1", "spectrum", "--encoder"])
        .arg(encoder_file())
        .args(["--arch", "resnet18", "--stem", "cifar", "--width", "0.0625"])
        .arg("--data")
        .arg(data)
        .args(["--batch-size", "8", "--workers", "1", "--out"])
        .arg(out)
        .args(extra)
        .output()
        .unwrap()
}

fn ok(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn metrics(out: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(out.join("metrics.json")).unwrap();
    serde_json::from_str::<serde_json::Value>(&text).unwrap()[0].clone()
}

#[test]
fn saved_features_give_the_same_spectrum_when_read_back() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("flat");
    write_images(&images, 40, 1);
    let out = tmp.path().join("model");
    let npy = tmp.path().join("r.npy");
    let stdout = ok(&spectrum(
        &images,
        &out,
        &["--save-embeddings", npy.to_str().unwrap()],
    ));
    assert!(stdout.contains("ddp.pt (r, 40 samples, 32-d)"), "{stdout}");
    assert!(stdout.contains("images/s"), "{stdout}");
    let list = std::fs::read_to_string(tmp.path().join("r.files.txt")).unwrap();
    let rows: Vec<&str> = list.lines().collect();
    assert_eq!(rows.len(), 40);
    assert!(rows[0].ends_with("img000.png") && rows[39].ends_with("img039.png"));

    let again = tmp.path().join("file");
    let run = Command::new(env!("CARGO_BIN_EXE_directclr"))
        .args(["spectrum", "--embeddings"])
        .arg(&npy)
        .arg("--out")
        .arg(&again)
        .output()
        .unwrap();
    ok(&run);
    let (a, b) = (metrics(&out), metrics(&again));
    assert_eq!(a["metrics"]["samples"], b["metrics"]["samples"]);
    // Same f32 rows; the model path (covariance of a tensor) and the file path (streamed f64
    // moments) differ only by the rounding of two Gram computations of a 40 × 32 matrix:
    // eigenvalues agree to ≤ 2·N·ε₃₂·λ₁ (Gram rounding, N = 40, f32 inputs) absolutely.
    let (ea, eb) = (
        a["eigenvalues"].as_array().unwrap(),
        b["eigenvalues"].as_array().unwrap(),
    );
    assert_eq!(ea.len(), eb.len());
    let l1 = ea[0].as_f64().unwrap();
    let bound = 2.0 * 40.0 * f64::from(f32::EPSILON) * l1;
    for (x, y) in ea.iter().zip(eb) {
        let (x, y) = (x.as_f64().unwrap(), y.as_f64().unwrap());
        assert!(
            (x - y).abs() <= bound,
            "eigenvalue {x} vs {y} (bound {bound})"
        );
    }
}

#[test]
fn class_folders_a_seeded_sample_and_transform_flags() {
    let tmp = tempfile::tempdir().unwrap();
    write_images(&tmp.path().join("imgs/a"), 12, 2);
    write_images(&tmp.path().join("imgs/b"), 12, 3);
    let out = tmp.path().join("out");
    let args = [
        "--sample",
        "10",
        "--seed",
        "4",
        "--resize",
        "40",
        "--crop",
        "36",
        "--mean",
        "0.5,0.5,0.5",
        "--std",
        "0.25,0.25,0.25",
    ];
    let stdout = ok(&spectrum(&tmp.path().join("imgs"), &out, &args));
    assert!(stdout.contains("(r, 10 samples, 32-d)"), "{stdout}");
    assert!(stdout.contains("resize 40 crop 36"), "{stdout}");
    let first = std::fs::read(out.join("metrics.json")).unwrap();
    ok(&spectrum(&tmp.path().join("imgs"), &out, &args));
    assert_eq!(
        first,
        std::fs::read(out.join("metrics.json")).unwrap(),
        "the same seed picks the same images and gives the same bytes"
    );
}

#[test]
fn a_bad_image_is_named_or_skipped_and_listed() {
    let tmp = tempfile::tempdir().unwrap();
    let images = tmp.path().join("flat");
    write_images(&images, 10, 5);
    std::fs::write(images.join("img004.png"), b"\x89PNG\r\n\x1a\n cut short").unwrap();
    let out = tmp.path().join("out");
    let failed = spectrum(&images, &out, &[]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("img004.png"), "{stderr}");

    let stdout = ok(&spectrum(&images, &out, &["--skip-bad"]));
    assert!(stdout.contains("skipped 1 unreadable image(s)"), "{stdout}");
    assert!(stdout.contains("(r, 9 samples"), "{stdout}");
    let listed = std::fs::read_to_string(out.join("skipped.txt")).unwrap();
    assert!(listed.trim().ends_with("img004.png"), "{listed}");
}

#[test]
fn empty_folders_and_bad_flags_exit_1_with_a_reason() {
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let out = tmp.path().join("out");
    let cases: [(&Path, &[&str], &str); 4] = [
        (&empty, &[], "no class folder and no image file"),
        (&tmp.path().join("missing"), &[], "missing"),
        (
            &empty,
            &["--resize", "20", "--crop", "30"],
            "at most resize 20",
        ),
        (&empty, &["--mean", "0.5,0.5"], "--mean takes three values"),
    ];
    for (data, extra, want) in cases {
        let failed = spectrum(data, &out, extra);
        let stderr = String::from_utf8_lossy(&failed.stderr);
        assert_eq!(failed.status.code(), Some(1), "{extra:?}: {stderr}");
        assert!(stderr.contains(want), "{extra:?}: {stderr}");
    }
    write_images(&empty, 3, 6);
    let failed = spectrum(&empty, &out, &["--save-embeddings", "r.csv"]);
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("*.npy"), "{stderr}");
}
