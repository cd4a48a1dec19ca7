//! The evaluation transform (`Resize(256)` + `CenterCrop(224)` + `Normalize`) against
//! torchvision's PIL path on committed JPEG and PNG files (`tests/fixtures/eval_images/`, made by
//! `scripts/make_eval_fixtures.py`; `scripts/check_eval_transform.py` reruns the comparison and
//! `docs/eval-transform.md` records it).
//!
//! The reference of each file is what `ImageFolder` + torchvision compute:
//!
//! ```python
//! img = Image.open(f).convert("RGB")       # torchvision's pil_loader
//! t = CenterCrop(224)(Resize(256)(img))    # a PIL image
//! ref = np.asarray(t)                      # uint8 [224, 224, 3], committed as NAME.tv.npy.gz
//! x = Normalize(mean, std)(ToTensor()(t))  # ToTensor(t) = ref.transpose(2, 0, 1) / 255
//! ```
//!
//! # The bound, in levels (1/255)
//! Pillow resamples in two passes, horizontal then vertical, each rounding to u8, with fixed-point
//! weights; directclr does both passes in f32 and rounds nothing (f32 output), or rounds once (u8
//! output). Bilinear weights are ≥ 0 and sum to 1, so an error in a pass's input reaches its
//! output at most unchanged. With `ours` directclr's value and `tv` Pillow's u8:
//! - `ROUND_MID` = 0.5: Pillow rounds the horizontal pass to u8 before the vertical pass;
//! - `ROUND_OUT` = 0.5: Pillow rounds the result to u8;
//! - `FIXED_POINT`: Pillow's weights are rounded to 2⁻²² (`PRECISION_BITS` = 22), an error of at
//!   most 2⁻²³ per weight on values ≤ 255, over ≤ 5 taps a pass (the 500 → 341 downscale's
//!   filter spans 2·⌈1.47⌉ + 1 = 5 taps; upscales 2): 2·5·255·2⁻²³ ≈ 3.0e-4 levels;
//! - `F32`: directclr's f32 weights and sums (≤ 5 + 5 fused multiply-adds plus the rounding of
//!   the weights, ≤ 12u on values ≤ 1): 12·2⁻²⁴·255 ≈ 1.8e-4 levels;
//! - `DECODE` (JPEG only): the two decoders differ — libjpeg-turbo in Pillow (accurate integer
//!   IDCT, "fancy" triangular chroma upsampling, fixed-point YCbCr → RGB) and zune-jpeg in
//!   directclr (its own IDCT, upsampling and colour conversion). Resampling is a convex
//!   combination, so it moves an output by at most the same combination of the decoded pixels'
//!   |differences|, at most their maximum. See `JPEG_DECODE` for the measured values. PNG
//!   decoding is exact in both (lossless; gray, gray + alpha, palette and RGBA → RGB are the same copies,
//!   palette lookups and alpha drops in Pillow's `convert("RGB")` and in the decoder: measured
//!   equal), so PNG files have no `DECODE` term and a bound near 1 level; a JPEG's bound is
//!   looser by what two correct JPEG decoders may differ by, which no standard fixes (JPEG
//!   specifies the IDCT only to an accuracy, and the upsampling and colour rounding not at all).
//!
//! For the u8 output (the extraction path, `OutputKind::U8`): `round(ours)` against `tv`. The
//! values rounded differ by at most δ = `ROUND_MID + FIXED_POINT + F32 (+ DECODE)`, and two
//! values δ apart round to levels at most ⌊δ⌋ + 1 apart: 1 level for PNG (δ ≈ 0.5005), and
//! ⌊0.5005 + 3.6⌋ + 1 = 5 for JPEG.

mod tolerance;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use directclr::data::augment::resized_crop::{resample, AxisCoeffs, AxisMap};
use directclr::data::augment::{EvalTransform, Interpolation, Normalize, Scratch};
use directclr::data::dataset::decode_file;
use directclr::data::{
    BadImagePolicy, Dataset, ImageRef, Layout, Loader, LoaderConfig, OutputKind, Shard, Transform,
};

const CROP: usize = 224;
/// Levels of Pillow's two roundings to u8 (see the module comment).
const ROUND_MID: f64 = 0.5;
const ROUND_OUT: f64 = 0.5;
/// Pillow's 22-bit weights, two passes of ≤ 5 taps on values ≤ 255, in levels.
const FIXED_POINT: f64 = 2.0 * 5.0 * 255.0 / (1u64 << 23) as f64;
/// directclr's f32 arithmetic, ≤ 12 roundings of u = 2⁻²⁴ on values ≤ 1, in levels.
const F32: f64 = 12.0 * 255.0 * tolerance::EPS32 / 2.0;
/// The decoders' term for the committed JPEG files, in levels: the |difference| between
/// libjpeg-turbo 3.2's (Pillow 13's) and zune-jpeg's decoded pixels, resampled with the same
/// bilinear weights and cropped (the most it can move an output), at its largest. Measured by
/// `scripts/check_eval_transform.py`: 3.54 for `progressive.jpg` and 2.77 for `landscape.jpg`
/// (4:2:0 colour: the chroma upsampling and colour conversion differ; pixels by up to 4 levels
/// inside the images, 7 on the last column of `landscape.jpg`, 0.26–0.27 on average, Pillow −
/// directclr about −0.2, +0.17, −0.3 on average on R, G, B), 1.00 for `cmyk.jpg` (4:4:4, pixels
/// at most 1 level apart) and 0.85 for `gray.jpg` (luma only: the IDCTs' rounding, pixels at
/// most 1 level apart); rounded up. Measured with zune-jpeg 0.5.15 on its AVX2 paths (IDCT,
/// upsampling, colour conversion), which it takes on any CPU with AVX2 (its options cannot turn
/// them off: it has scalar paths for other CPUs, not measured here).
const JPEG_DECODE: f64 = 3.6;

/// The committed files and whether they are JPEG.
const IMAGES: [(&str, bool); 10] = [
    ("landscape.jpg", true),
    ("gray.jpg", true),
    ("portrait.png", false),
    ("gray.png", false),
    ("rgba.png", false),
    ("palette.png", false),
    ("small.png", false),
    ("progressive.jpg", true),
    ("cmyk.jpg", true),
    ("gray_alpha.png", false),
];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/eval_images")
}

/// Bound on |ours − tv| in levels for the f32 output.
fn f32_bound(jpeg: bool) -> f64 {
    ROUND_MID + ROUND_OUT + FIXED_POINT + F32 + if jpeg { JPEG_DECODE } else { 0.0 }
}

/// Bound on |round(ours) − tv| in levels for the u8 output.
fn u8_bound(jpeg: bool) -> u8 {
    let delta = ROUND_MID + FIXED_POINT + F32 + if jpeg { JPEG_DECODE } else { 0.0 };
    delta.floor() as u8 + 1
}

/// Reads a gzipped `.npy` of u8 `[224, 224, 3]` (C order).
fn read_reference(name: &str) -> Vec<u8> {
    let path = dir().join(format!("{name}.tv.npy.gz"));
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).expect("reference file"))
        .read_to_end(&mut raw)
        .expect("gzip");
    assert_eq!(&raw[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = match raw[6] {
        1 => (u16::from_le_bytes([raw[8], raw[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&raw[start..start + header_len]).expect("header");
    assert!(header.contains("'descr': '|u1'"), "{header}");
    assert!(header.contains("'fortran_order': False"), "{header}");
    assert!(header.contains("'shape': (224, 224, 3)"), "{header}");
    let data = raw[start + header_len..].to_vec();
    assert_eq!(data.len(), CROP * CROP * 3);
    data
}

/// Writes a C-order `.npy` (for `scripts/check_eval_transform.py`).
fn write_npy(path: &Path, descr: &str, shape: &[usize], bytes: &[u8]) {
    let dims: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
    let mut header = format!(
        "{{'descr': '{descr}', 'fortran_order': False, 'shape': ({},), }}",
        dims.join(", ")
    );
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(bytes);
    std::fs::write(path, out).expect("write dump");
}

/// Where to write directclr's decoded pixels and outputs, when `DIRECTCLR_EVAL_DUMP` names a
/// folder.
fn dump_dir() -> Option<PathBuf> {
    std::env::var_os("DIRECTCLR_EVAL_DUMP").map(PathBuf::from)
}

/// (max, mean) of |a − b| in levels; `ours` planar `[3, 224, 224]` in `[0, 1]`, `tv` `[224, 224, 3]`.
fn diff_levels(ours: &[f32], tv: &[u8]) -> (f64, f64) {
    let (mut max, mut sum) = (0.0f64, 0.0f64);
    for c in 0..3 {
        for i in 0..CROP * CROP {
            let d = (ours[c * CROP * CROP + i] as f64 * 255.0 - tv[i * 3 + c] as f64).abs();
            max = max.max(d);
            sum += d;
        }
    }
    (max, sum / (3 * CROP * CROP) as f64)
}

#[test]
fn eval_transform_matches_torchvision_on_committed_files() {
    let e = EvalTransform::default();
    let mut scratch = Scratch::default();
    let dump = dump_dir();
    println!("f32 output against torchvision, levels (1/255): file, max, mean, bound");
    let mut failures = Vec::new();
    for (name, jpeg) in IMAGES {
        let img = decode_file(&dir().join(name)).expect("decode");
        let mut ours = vec![0.0f32; 3 * CROP * CROP];
        e.apply(img.view(), &mut scratch, &mut ours);
        let tv = read_reference(name);
        let (max, mean) = diff_levels(&ours, &tv);
        let bound = f32_bound(jpeg);
        println!("eval-f32 {name:14} max {max:.4} mean {mean:.4} bound {bound:.4}");
        if max > bound {
            failures.push(format!("{name}: max {max} > {bound}"));
        }
        if let Some(d) = &dump {
            write_npy(
                &d.join(format!("{name}.decoded.npy")),
                "|u1",
                &[img.height, img.width, img.channels],
                &img.data,
            );
            let bytes: Vec<u8> = ours.iter().flat_map(|v| v.to_le_bytes()).collect();
            write_npy(
                &d.join(format!("{name}.ours.npy")),
                "<f4",
                &[3, CROP, CROP],
                &bytes,
            );
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}

/// The extraction path (`directclr spectrum/probe/knn`): a loader over the files with the
/// evaluation transform and u8 output, normalised on the device afterwards.
#[test]
fn loader_u8_output_matches_torchvision_uint8() {
    let files: Vec<PathBuf> = IMAGES.iter().map(|(n, _)| dir().join(n)).collect();
    let n = files.len();
    let data = Dataset::from_files(files, vec![0; n], vec!["all".into()], dir()).unwrap();
    let loader = Loader::new(
        Arc::new(data),
        Transform::Eval(EvalTransform::default()),
        LoaderConfig {
            batch_size: 3,
            workers: 2,
            prefetch: 1,
            seed: 0,
            shuffle: false,
            drop_last: false,
            shard: Shard::SINGLE,
            output: OutputKind::U8,
            pin_memory: false,
            bad_images: BadImagePolicy::Fail,
        },
    )
    .unwrap();
    let dump = dump_dir();
    println!("u8 output against torchvision's uint8: file, max, pixels differing, bound");
    let mut seen = 0;
    let mut failures = Vec::new();
    for batch in loader.epoch(0) {
        let batch = batch.unwrap();
        let x = &batch.views[0]; // [b, 3, 224, 224] u8
        assert_eq!(x.kind(), tch::Kind::Uint8);
        for (k, &i) in batch.indices.iter().enumerate() {
            let (name, jpeg) = IMAGES[i];
            let mut ours = vec![0u8; 3 * CROP * CROP];
            x.get(k as i64)
                .contiguous()
                .copy_data(&mut ours, 3 * CROP * CROP);
            let tv = read_reference(name);
            let (mut max, mut differ) = (0u8, 0usize);
            for c in 0..3 {
                for p in 0..CROP * CROP {
                    let d = ours[c * CROP * CROP + p].abs_diff(tv[p * 3 + c]);
                    max = max.max(d);
                    differ += usize::from(d != 0);
                }
            }
            let bound = u8_bound(jpeg);
            println!(
                "eval-u8 {name:14} max {max} differing {differ} of {} bound {bound}",
                3 * CROP * CROP
            );
            if max > bound {
                failures.push(format!("{name}: max {max} > {bound}"));
            }
            if let Some(d) = &dump {
                write_npy(
                    &d.join(format!("{name}.loader.npy")),
                    "|u1",
                    &[3, CROP, CROP],
                    &ours,
                );
            }
            seen += 1;
        }
    }
    assert_eq!(seen, IMAGES.len());
    assert!(failures.is_empty(), "{failures:?}");
}

/// `Normalize` against the closed form `(x − mean) / std` in f64, on the host (the f32 loader
/// output) and on tensors (after a u8 loader), for the ImageNet statistics.
#[test]
fn normalize_is_the_closed_form() {
    let norm = Normalize::IMAGENET;
    assert_eq!(norm.mean, [0.485, 0.456, 0.406]);
    assert_eq!(norm.std, [0.229, 0.224, 0.225]);
    let u = tolerance::EPS32 / 2.0;
    // Every level of every channel.
    let levels: Vec<f32> = (0..=255).map(|v| v as f32 / 255.0).collect();
    let mut host: Vec<f32> = levels.iter().copied().cycle().take(3 * 256).collect();
    norm.apply(&mut host); // [3, 1, 256]
    let x = tch::Tensor::from_slice(&(0..=255u8).collect::<Vec<_>>())
        .view([1, 1, 1, 256])
        .expand([1, 3, 1, 256], false)
        .contiguous();
    let dev = norm.apply_tensor(&x);
    let mut dev_v = vec![0.0f32; 3 * 256];
    dev.contiguous().copy_data(&mut dev_v, 3 * 256);
    for c in 0..3 {
        let (m, s) = (norm.mean[c] as f64, norm.std[c] as f64);
        for v in 0..256 {
            let xf = levels[v] as f64; // the f32 input, exactly
            let z = (xf - m) / s;
            // Host: fl(fl(x − m)·fl(1/s)): three roundings of relative size u on |z| (x − m is
            // exact when x is within a factor 2 of m, Sterbenz; else ≤ u·|x − m|).
            let h = host[c * 256 + v] as f64;
            assert!(
                (h - z).abs() <= 3.0 * u * z.abs() + 1e-12,
                "host c{c} v{v}: {h} vs {z}"
            );
            // Tensor: fl(fl(fl(v/255) − m)/s), torchvision's ToTensor + Normalize order: the
            // division by 255 adds ≤ u·x/s absolute.
            let zv = (v as f64 / 255.0 - m) / s;
            let d = dev_v[c * 256 + v] as f64;
            assert!(
                (d - zv).abs() <= 2.0 * u * zv.abs() + u / s + 1e-12,
                "tensor c{c} v{v}: {d} vs {zv}"
            );
        }
    }
}

/// torchvision's `_compute_resized_output_size` (size = [256]): the shorter side becomes 256,
/// the longer `int(256 * long / short)` (a float division, truncated).
fn tv_resized_size(h: usize, w: usize) -> (usize, usize) {
    let (short, long) = if w <= h { (w, h) } else { (h, w) };
    let new_long = (256.0 * long as f64 / short as f64) as usize;
    if w <= h {
        (new_long, 256)
    } else {
        (256, new_long)
    }
}

/// torchvision's `center_crop` offset: `int(round((size - 224) / 2.0))`, Python's `round`
/// rounding halves to even.
fn tv_crop_offset(size: usize) -> usize {
    ((size - CROP) as f64 / 2.0).round_ties_even() as usize
}

#[test]
fn resized_size_and_crop_offsets_follow_torchvision() {
    let e = EvalTransform::default();
    // Sizes worked out by hand with the Python expressions above.
    let cases = [
        // (h, w, resized (h, w), offsets (top, left))
        (375, 500, (256, 341), (16, 58)), // (341 − 224)/2 = 58.5 → 58 (halves to even)
        (500, 375, (341, 256), (58, 16)),
        (451, 300, (384, 256), (80, 16)), // int(256·451/300) = int(384.85)
        (257, 333, (256, 331), (16, 54)), // int(331.70); 53.5 → 54 (halves to even)
        (100, 150, (256, 384), (16, 80)), // an upscale
        (256, 256, (256, 256), (16, 16)),
        (225, 224, (257, 256), (16, 16)), // 16.5 → 16
        (259, 256, (259, 256), (18, 16)), // 17.5 → 18
        (299, 301, (256, 257), (16, 16)), // int(257.71)
        (1, 1000, (256, 256000), (16, 127888)),
    ];
    for (h, w, size, offsets) in cases {
        assert_eq!(tv_resized_size(h, w), size, "{h}×{w}");
        assert_eq!(e.resized_size(h, w), size, "{h}×{w}");
        assert_eq!(
            (tv_crop_offset(size.0), tv_crop_offset(size.1)),
            offsets,
            "{h}×{w}"
        );
    }
    // The whole range of shorter sides and aspect ratios up to 3: the integer formula equals
    // torchvision's float one.
    for short in 1..=600 {
        for long in short..=3 * short {
            assert_eq!(e.resized_size(long, short), tv_resized_size(long, short));
            assert_eq!(e.resized_size(short, long), tv_resized_size(short, long));
        }
    }
}

/// The one-pass crop equals resizing the whole image and cropping at torchvision's offsets, bit
/// for bit (each output's weights and sums are the same; only which outputs are computed
/// changes), for odd sizes and both ways a half offset rounds.
#[test]
fn one_pass_crop_is_resize_then_crop_at_torchvision_offsets() {
    let e = EvalTransform::default();
    let mut scratch = Scratch::default();
    for (h, w) in [
        (375, 500),
        (257, 333),
        (225, 224),
        (259, 256),
        (299, 301),
        (100, 150),
    ] {
        let src: Vec<u8> = (0..h * w * 3)
            .map(|i| ((i * 2654435761usize) >> 7) as u8)
            .collect();
        let img = ImageRef {
            data: &src,
            channels: 3,
            height: h,
            width: w,
            layout: Layout::Interleaved,
        };
        let (nh, nw) = e.resized_size(h, w);
        let full_map = |n: usize, out: usize| AxisMap {
            in_size: n,
            in0: 0.0,
            in1: n as f64,
            out_full: out,
            offset: 0,
            out_len: out,
        };
        let xs = AxisCoeffs::new(full_map(w, nw), Interpolation::Bilinear, 1.0, false);
        let ys = AxisCoeffs::new(full_map(h, nh), Interpolation::Bilinear, 1.0 / 255.0, false);
        let mut full = vec![0.0f32; 3 * nh * nw];
        resample(img, &xs, &ys, &mut scratch, &mut full);
        let mut ours = vec![0.0f32; 3 * CROP * CROP];
        e.apply(img, &mut scratch, &mut ours);
        let (top, left) = (tv_crop_offset(nh), tv_crop_offset(nw));
        for c in 0..3 {
            for y in 0..CROP {
                for x in 0..CROP {
                    let a = ours[c * CROP * CROP + y * CROP + x];
                    let b = full[c * nh * nw + (top + y) * nw + left + x];
                    assert_eq!(a.to_bits(), b.to_bits(), "{h}×{w} c{c} y{y} x{x}");
                }
            }
        }
    }
}

/// 16-bit PNG files are read, scaled to 8 bits by rounding (v / 257). Pillow differs here, and
/// so torchvision: it opens 16-bit RGB as "RGB" keeping the high byte (v >> 8, at most 1 level
/// below), and 16-bit grayscale as "I;16", which `convert("RGB")` clips at 255 (every value
/// above 255 becomes white). docs/eval-transform.md lists both.
#[test]
fn sixteen_bit_pngs_are_scaled_to_eight_bits_by_rounding() {
    let dir = tempfile::tempdir().unwrap();
    let values: [u16; 6] = [0, 2770, 33024, 65535, 1000, 40000];
    let rounded: Vec<u8> = values
        .iter()
        .map(|&v| (v as f64 / 257.0).round() as u8)
        .collect();
    assert_eq!(rounded, [0, 11, 128, 255, 4, 156]);
    let gray = dir.path().join("gray16.png");
    image::ImageBuffer::<image::Luma<u16>, _>::from_raw(6, 1, values.to_vec())
        .unwrap()
        .save(&gray)
        .unwrap();
    let g = decode_file(&gray).unwrap();
    assert_eq!((g.channels, g.height, g.width), (1, 1, 6));
    assert_eq!(g.data, rounded);
    let rgb = dir.path().join("rgb16.png");
    let px: Vec<u16> = values.iter().flat_map(|&v| [v, 65535 - v, v]).collect();
    image::ImageBuffer::<image::Rgb<u16>, _>::from_raw(6, 1, px)
        .unwrap()
        .save(&rgb)
        .unwrap();
    let c = decode_file(&rgb).unwrap();
    assert_eq!((c.channels, c.height, c.width), (3, 1, 6));
    let expect: Vec<u8> = rounded.iter().flat_map(|&v| [v, 255 - v, v]).collect();
    assert_eq!(c.data, expect);
}

/// Formats other than JPEG and PNG (which torchvision's Pillow would read) are refused with a
/// decode error naming the file, not misread.
#[test]
fn other_formats_are_refused_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    // Minimal 1×1 files (a GIF, a 24-bit BMP, a lossless WebP), recognised by their signatures.
    let gif: &[u8] = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff!\xf9\x04\x01\x00\x00\x00\x00,\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;";
    let mut bmp = b"BM".to_vec();
    bmp.extend_from_slice(&58u32.to_le_bytes());
    bmp.extend_from_slice(&[0, 0, 0, 0]);
    bmp.extend_from_slice(&54u32.to_le_bytes());
    for v in [40u32, 1, 1] {
        bmp.extend_from_slice(&v.to_le_bytes());
    }
    bmp.extend_from_slice(&1u16.to_le_bytes());
    bmp.extend_from_slice(&24u16.to_le_bytes());
    bmp.extend_from_slice(&[0; 24]);
    bmp.extend_from_slice(&[10, 20, 30, 0]);
    let webp: &[u8] = b"RIFF\x1a\x00\x00\x00WEBPVP8L\x0d\x00\x00\x00\x2f\x00\x00\x00\x10\x07\x10\x11\x11\x88\x88\xfe\x07\x00";
    for (name, bytes) in [("a.gif", gif), ("a.bmp", &bmp[..]), ("a.webp", webp)] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        match decode_file(&path) {
            Err(e @ directclr::data::DataError::Decode { .. }) => {
                let msg = e.to_string();
                println!("{name}: {msg}");
                assert!(msg.contains(name), "{msg}");
            }
            other => panic!("{name}: expected a decode error, got {other:?}"),
        }
    }
}
