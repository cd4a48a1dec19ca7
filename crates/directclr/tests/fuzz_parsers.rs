//! Fuzzing of every parser, on stable Rust: a seeded, structure-aware mutation harness over
//! real seed files (what cargo-fuzz would do without coverage feedback, which needs nightly).
//!
//! Targets: IDX (plain and gzip), CIFAR-10/100 binary, STL-10 binary, image decoding (PNG,
//! JPEG), TOML run configuration, safetensors checkpoints (with `load_state`) and the run
//! folder's state (`config.toml`, `metrics.jsonl`, checkpoint, through `RunDir::open`).
//!
//! Each execution writes the mutated files (under /dev/shm when it exists), calls the real
//! reader and checks three oracles:
//! - no panic (caught and reported with the input saved under `target/fuzz-findings/`);
//! - no allocation larger than the target's bound in the input's real size (a counting
//!   global allocator records the largest single request of the calling thread): a header
//!   number can never buy memory the file does not back;
//! - an error is one line naming a file or field (never an empty message).
//!
//! Every input that ever failed an oracle is kept in `tests/fuzz_regressions/<target>/` and
//! replayed first. CI runs a fixed, seeded number of executions per target (seconds); a long
//! campaign sets `DIRECTCLR_FUZZ_SECONDS` per target and prints executions, rate and findings:
//!
//! ```sh
//! DIRECTCLR_FUZZ_SECONDS=180 DIRECTCLR_FUZZ_SEED=2 cargo test --release -p directclr --test fuzz_parsers -- \
//!     --nocapture --test-threads 1
//! ```

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeSet;
use std::io::Write;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::time::Instant;

use directclr::data::{cifar, dataset::Split, idx, stl10};
use directclr::train::{read_checkpoint, GuardState, Progress, RunDir, TrainConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tch::Tensor;

// ---------------------------------------------------------------------------------------------
// The allocation oracle: the largest single allocation request of this thread.

struct Counting;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

fn note(size: usize) {
    let _ = LARGEST.try_with(|l| {
        if size > l.get() {
            l.set(size)
        }
    });
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc(layout)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note(layout.size());
        System.alloc_zeroed(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note(new_size);
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---------------------------------------------------------------------------------------------
// Mutations.

const INTERESTING_U32: [u32; 14] = [
    0,
    1,
    2,
    3,
    8,
    28,
    255,
    256,
    0x7fff,
    0xffff,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_fffe,
    0xffff_ffff,
];

const INTERESTING_U64: [u64; 8] = [
    0,
    1,
    7,
    8,
    100_000_000,
    0x7fff_ffff_ffff_ffff,
    0xffff_ffff_ffff_fff0,
    u64::MAX,
];

/// One to four byte-level mutations; `hot` are offsets of header fields (sizes, magic
/// numbers), hit more often than the rest.
fn mutate_bytes(rng: &mut ChaCha8Rng, data: &mut Vec<u8>, hot: &[usize], other: &[u8]) {
    for _ in 0..rng.gen_range(1..=4) {
        let len = data.len();
        let pos = |rng: &mut ChaCha8Rng| {
            if !hot.is_empty() && rng.gen_bool(0.5) {
                hot[rng.gen_range(0..hot.len())]
            } else {
                rng.gen_range(0..len.max(1))
            }
        };
        match rng.gen_range(0..12) {
            0 if len > 0 => {
                let p = rng.gen_range(0..len);
                data[p] ^= 1 << rng.gen_range(0..8);
            }
            1 if len > 0 => {
                let p = pos(rng).min(len - 1);
                data[p] = [0u8, 1, 0x7f, 0x80, 0xff, 0x08, 0x0a][rng.gen_range(0..7)];
            }
            2 | 3 => {
                let v = INTERESTING_U32[rng.gen_range(0..INTERESTING_U32.len())];
                let v = if rng.gen_bool(0.2) {
                    v ^ rng.gen::<u32>()
                } else {
                    v
                };
                let b = if rng.gen_bool(0.5) {
                    v.to_be_bytes()
                } else {
                    v.to_le_bytes()
                };
                let p = pos(rng);
                if p + 4 <= len {
                    data[p..p + 4].copy_from_slice(&b);
                }
            }
            4 => {
                let v = INTERESTING_U64[rng.gen_range(0..INTERESTING_U64.len())];
                let p = pos(rng);
                if p + 8 <= len {
                    data[p..p + 8].copy_from_slice(&v.to_le_bytes());
                }
            }
            5 => {
                let keep = rng.gen_range(0..=len);
                data.truncate(keep);
            }
            6 => {
                let n = rng.gen_range(1..64);
                data.extend((0..n).map(|_| rng.gen::<u8>()));
            }
            7 if len > 1 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 256));
                data.drain(a..b);
            }
            8 if len > 1 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 256));
                let chunk: Vec<u8> = data[a..b].to_vec();
                let at = rng.gen_range(0..=len);
                data.splice(at..at, chunk);
            }
            9 if !other.is_empty() => {
                let at = rng.gen_range(0..=len);
                let from = rng.gen_range(0..other.len());
                data.truncate(at);
                data.extend_from_slice(&other[from..]);
            }
            10 => {
                let at = rng.gen_range(0..=len);
                let n = rng.gen_range(1..16);
                let ins: Vec<u8> = (0..n).map(|_| rng.gen()).collect();
                data.splice(at..at, ins);
            }
            11 if len > 0 => {
                let a = rng.gen_range(0..len);
                let b = rng.gen_range(a..=len.min(a + 64));
                let v = rng.gen();
                data[a..b].iter_mut().for_each(|x| *x = v);
            }
            _ => {}
        }
    }
}

/// Values that break TOML and JSON fields: limits, non-finite numbers, wrong types.
const DICT_VALUES: [&str; 28] = [
    "0",
    "-1",
    "1",
    "2",
    "18446744073709551615",
    "9223372036854775807",
    "-9223372036854775808",
    "4294967296",
    "1e308",
    "-1e308",
    "nan",
    "inf",
    "-inf",
    "1e-320",
    "1e-40",
    "0.0",
    "1.5",
    "\"\"",
    "\"x\"",
    "[]",
    "{}",
    "true",
    "\"cuda:99\"",
    "\"cuda\"",
    "\"resnet50\"",
    "\"imagenet\"",
    "\"rollback\"",
    "{ kind = \"cifar10\", path = \"/nonexistent\" }",
];

const DICT_KEYS: [&str; 24] = [
    "bogus",
    "seed",
    "epochs",
    "batch_size",
    "workers",
    "probe",
    "width_multiplier",
    "d0",
    "kind",
    "image_size",
    "limit",
    "every_steps",
    "every_epochs",
    "lr",
    "temperature",
    "warmup_epochs",
    "momentum",
    "spike_factor",
    "lr_factor",
    "max_rollbacks",
    "on_failure",
    "arch",
    "stem",
    "step",
];

/// Line- and token-level mutations of a text file (TOML, JSON lines), then sometimes a
/// byte-level one (invalid UTF-8 included).
fn mutate_text(rng: &mut ChaCha8Rng, text: &[u8]) -> Vec<u8> {
    let s = String::from_utf8_lossy(text);
    let mut lines: Vec<String> = s.lines().map(str::to_string).collect();
    for _ in 0..rng.gen_range(1..=3) {
        let n = lines.len();
        match rng.gen_range(0..8) {
            0 if n > 0 => {
                lines.remove(rng.gen_range(0..n));
            }
            1 if n > 0 => {
                let l = lines[rng.gen_range(0..n)].clone();
                lines.insert(rng.gen_range(0..=n), l);
            }
            2 if n > 1 => {
                let (a, b) = (rng.gen_range(0..n), rng.gen_range(0..n));
                lines.swap(a, b);
            }
            3 | 4 if n > 0 => {
                // Replace a value: after `=` (TOML) or after `:` (JSON).
                let i = rng.gen_range(0..n);
                let v = DICT_VALUES[rng.gen_range(0..DICT_VALUES.len())];
                let l = &lines[i];
                if let Some(eq) = l.find('=') {
                    lines[i] = format!("{}= {v}", &l[..eq]);
                } else if let Some(c) = l
                    .match_indices(':')
                    .map(|(i, _)| i)
                    .nth(rng.gen_range(0..l.matches(':').count().max(1)))
                {
                    let end = l[c + 1..]
                        .find([',', '}'])
                        .map(|e| c + 1 + e)
                        .unwrap_or(l.len());
                    lines[i] = format!("{}:{v}{}", &l[..c], &l[end..]);
                }
            }
            5 if n > 0 => {
                // Rename a key.
                let i = rng.gen_range(0..n);
                let k = DICT_KEYS[rng.gen_range(0..DICT_KEYS.len())];
                if let Some(eq) = lines[i].find('=') {
                    lines[i] = format!("{k} {}", &lines[i][eq..]);
                }
            }
            6 => {
                let k = DICT_KEYS[rng.gen_range(0..DICT_KEYS.len())];
                let v = DICT_VALUES[rng.gen_range(0..DICT_VALUES.len())];
                lines.insert(rng.gen_range(0..=n), format!("{k} = {v}"));
            }
            7 => {
                let t = [
                    "[model]",
                    "[guard]",
                    "[data]",
                    "[method]",
                    "[schedule]",
                    "[x]",
                    "[[a]]",
                ][rng.gen_range(0..7)];
                lines.insert(rng.gen_range(0..=n), t.to_string());
            }
            _ => {}
        }
    }
    let mut out = lines.join("\n").into_bytes();
    out.push(b'\n');
    if rng.gen_bool(0.15) {
        mutate_bytes(rng, &mut out, &[], &[]);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// The harness.

/// Turns a seed (with all seeds, for splicing) into a mutated input.
type Mutator = fn(&mut ChaCha8Rng, &[u8], &[Vec<u8>]) -> Vec<u8>;

/// One fuzz target: its seeds and how to run an input.
struct Target {
    name: &'static str,
    /// Largest single allocation allowed: `floor + ratio × input bytes`.
    alloc_floor: usize,
    alloc_ratio: usize,
    seeds: Vec<Vec<u8>>,
    /// Turns a seed into a mutated input (may be a structured bundle of several files).
    mutate: Mutator,
    /// Runs the input in `dir` (a fresh, empty folder): Ok(None) if accepted, Ok(Some(msg))
    /// for a reported error, Err for an oracle failure.
    run: fn(&Path, &[u8]) -> Result<Option<String>, String>,
}

/// Counters of a campaign.
#[derive(Debug, Default)]
struct Stats {
    execs: u64,
    accepted: u64,
    errors: u64,
    /// Distinct error messages with digits and paths removed (how many checks were reached).
    kinds: BTreeSet<String>,
    largest_alloc: usize,
    slowest_ms: f64,
    findings: Vec<String>,
}

fn scratch() -> tempfile::TempDir {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        if let Ok(d) = tempfile::tempdir_in(shm) {
            return d;
        }
    }
    tempfile::tempdir().unwrap()
}

/// The shape of an error message: without numbers and quoted paths.
fn shape(msg: &str) -> String {
    let mut out = String::new();
    let mut in_quote = false;
    for c in msg.chars() {
        if c == '`' {
            in_quote = !in_quote;
            out.push('`');
        } else if !in_quote && !c.is_ascii_digit() {
            out.push(c);
        }
    }
    out.chars().take(120).collect()
}

fn findings_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/fuzz-findings")
}

fn regressions_dir(target: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz_regressions")
        .join(target)
}

/// Runs one input through `t` with every oracle; updates `stats`.
fn exec(t: &Target, input: &[u8], stats: &mut Stats) {
    let dir = scratch();
    LARGEST.with(|l| l.set(0));
    let start = Instant::now();
    let result = catch_unwind(AssertUnwindSafe(|| (t.run)(dir.path(), input)));
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let largest = LARGEST.with(|l| l.get());
    stats.execs += 1;
    stats.slowest_ms = stats.slowest_ms.max(ms);
    stats.largest_alloc = stats.largest_alloc.max(largest);
    let bound = t.alloc_floor + t.alloc_ratio * input.len();
    let failure = match result {
        Err(p) => Some(format!(
            "panic: {}",
            p.downcast_ref::<String>()
                .cloned()
                .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                .unwrap_or_default()
        )),
        Ok(Err(oracle)) => Some(oracle),
        Ok(Ok(_)) if largest > bound => Some(format!(
            "allocated {largest} bytes at once for a {}-byte input (bound {bound})",
            input.len()
        )),
        Ok(Ok(None)) => {
            stats.accepted += 1;
            None
        }
        Ok(Ok(Some(msg))) => {
            stats.errors += 1;
            stats.kinds.insert(shape(&msg));
            None
        }
    };
    if let Some(f) = failure {
        let dir = findings_dir().join(t.name);
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("{:016x}.bin", fxhash(input)));
        std::fs::write(&file, input).unwrap();
        stats
            .findings
            .push(format!("{f} (input saved as {})", file.display()));
    }
}

fn fxhash(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

/// Replays the regressions and the seeds, then mutates for `DIRECTCLR_FUZZ_SECONDS` seconds
/// if set, else for `execs` executions; fails on any finding.
fn campaign(t: Target, execs: u64, seed: u64) {
    let mut stats = Stats::default();
    if let Ok(rd) = std::fs::read_dir(regressions_dir(t.name)) {
        let mut files: Vec<PathBuf> = rd.map(|e| e.unwrap().path()).collect();
        files.sort();
        for f in files {
            exec(&t, &std::fs::read(&f).unwrap(), &mut stats);
        }
    }
    for s in &t.seeds {
        exec(&t, s, &mut stats);
    }
    let seeds_accepted = stats.accepted;
    let seconds: Option<f64> = std::env::var("DIRECTCLR_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok());
    // A long campaign can start elsewhere than CI's fixed seeds.
    let seed = std::env::var("DIRECTCLR_FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map_or(seed, |s| s.wrapping_mul(1000).wrapping_add(seed));
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let start = Instant::now();
    let mut n = 0u64;
    loop {
        match seconds {
            Some(s) if start.elapsed().as_secs_f64() >= s => break,
            None if n >= execs => break,
            _ => {}
        }
        let i = rng.gen_range(0..t.seeds.len());
        let input = (t.mutate)(&mut rng, &t.seeds[i], &t.seeds);
        exec(&t, &input, &mut stats);
        n += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    let line = format!(
        "fuzz {:<12} {:>9} execs in {:>7.1} s = {:>8.1} execs/s; accepted {} (seeds {}), \
         errors {} of {} kinds; largest allocation {} B; slowest {:.1} ms; findings {}",
        t.name,
        stats.execs,
        secs,
        n as f64 / secs.max(1e-9),
        stats.accepted,
        seeds_accepted,
        stats.errors,
        stats.kinds.len(),
        stats.largest_alloc,
        stats.slowest_ms,
        stats.findings.len()
    );
    println!("{line}");
    if std::env::var("DIRECTCLR_FUZZ_VERBOSE").is_ok() {
        for k in &stats.kinds {
            println!("    {k}");
        }
    }
    if let Ok(report) = std::env::var("DIRECTCLR_FUZZ_REPORT") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(report)
            .unwrap();
        writeln!(f, "{line}").unwrap();
    }
    assert!(
        seeds_accepted > 0,
        "{}: no seed is accepted, the campaign cannot reach deep code",
        t.name
    );
    assert!(
        stats.findings.is_empty(),
        "{}: {}",
        t.name,
        stats.findings.join("\n")
    );
}

/// A reader's result as the harness sees it: accepted, or a one-line message naming `what`.
fn verdict<T, E: std::fmt::Display>(
    r: Result<T, E>,
    names: &[&str],
) -> Result<Option<String>, String> {
    match r {
        Ok(_) => Ok(None),
        Err(e) => {
            let msg = e.to_string();
            if msg.trim().is_empty() {
                return Err("empty error message".into());
            }
            if !names.iter().any(|n| msg.contains(n)) {
                return Err(format!("error names none of {names:?}: {msg}"));
            }
            Ok(Some(msg))
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Bundles: several files in one input (`name\0len(u32 LE)\0bytes` records), so that a target
// reading a folder mutates each file and their agreement.

fn bundle(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut out = Vec::new();
    for (name, data) in files {
        out.extend_from_slice(name.as_bytes());
        out.push(0);
        out.extend_from_slice(&(data.len() as u32).to_le_bytes());
        out.extend_from_slice(data);
    }
    out
}

fn unbundle(mut b: &[u8]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    while let Some(z) = b.iter().position(|&c| c == 0) {
        let name = String::from_utf8_lossy(&b[..z]).into_owned();
        b = &b[z + 1..];
        if b.len() < 4 {
            break;
        }
        let n = (u32::from_le_bytes(b[..4].try_into().unwrap()) as usize).min(b.len() - 4);
        out.push((name, b[4..4 + n].to_vec()));
        b = &b[4 + n..];
    }
    out
}

/// Mutates one file of a bundle (text files as text), sometimes drops one.
fn mutate_bundle(rng: &mut ChaCha8Rng, seed: &[u8], hot: fn(&str, &[u8]) -> Vec<usize>) -> Vec<u8> {
    let mut files = unbundle(seed);
    for _ in 0..rng.gen_range(1..=2) {
        if files.is_empty() {
            break;
        }
        let i = rng.gen_range(0..files.len());
        if rng.gen_bool(0.05) {
            files.remove(i);
            continue;
        }
        let (name, data) = &mut files[i];
        if name.ends_with(".txt") || name.ends_with(".toml") || name.ends_with(".jsonl") {
            *data = mutate_text(rng, data);
        } else {
            let h = hot(name, data);
            mutate_bytes(rng, data, &h, &[]);
        }
    }
    let refs: Vec<(&str, &[u8])> = files
        .iter()
        .map(|(n, d)| (n.as_str(), d.as_slice()))
        .collect();
    bundle(&refs)
}

/// Writes a bundle's files into `dir` (names reduced to a safe file name).
fn write_bundle(dir: &Path, input: &[u8]) {
    for (name, data) in unbundle(input) {
        let safe: String = name
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c))
            .collect();
        if safe.is_empty() || safe.starts_with('.') {
            continue;
        }
        std::fs::write(dir.join(safe), data).unwrap();
    }
}

// ---------------------------------------------------------------------------------------------
// Seeds.

fn idx_file(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut b = vec![0, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    b.extend((0..n).map(|i| (i as u8).wrapping_mul(fill)));
    b
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn fashion_images_head() -> Vec<u8> {
    // The first 20 images of the shipped subset, as an IDX file of its own.
    let p = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../data/fashion-mnist-subset/train-images-idx3-ubyte.gz");
    let a = idx::read_idx(&p).expect("shipped subset");
    let mut b = vec![0, 0, 8, 3];
    for d in [20u32, 28, 28] {
        b.extend_from_slice(&d.to_be_bytes());
    }
    b.extend_from_slice(&a.data[..20 * 28 * 28]);
    b
}

fn image_seeds() -> Vec<Vec<u8>> {
    use image::{ImageFormat, RgbImage};
    let mut rng = ChaCha8Rng::seed_from_u64(3);
    let mut out = Vec::new();
    let rgb = RgbImage::from_fn(12, 9, |_, _| image::Rgb([rng.gen(), rng.gen(), rng.gen()]));
    let gray = image::GrayImage::from_fn(7, 5, |x, y| image::Luma([(x * 30 + y) as u8]));
    let rgba = image::RgbaImage::from_fn(6, 6, |x, y| image::Rgba([x as u8, y as u8, 9, 200]));
    for (img, fmt) in [
        (
            image::DynamicImage::ImageRgb8(rgb.clone()),
            ImageFormat::Png,
        ),
        (image::DynamicImage::ImageRgb8(rgb), ImageFormat::Jpeg),
        (
            image::DynamicImage::ImageLuma8(gray.clone()),
            ImageFormat::Png,
        ),
        (image::DynamicImage::ImageLuma8(gray), ImageFormat::Jpeg),
        (image::DynamicImage::ImageRgba8(rgba), ImageFormat::Png),
    ] {
        let mut c = std::io::Cursor::new(Vec::new());
        img.write_to(&mut c, fmt).unwrap();
        out.push(c.into_inner());
    }
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut c = 0xffff_ffffu32;
    for &b in data {
        c ^= b as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xedb8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// Recomputes the CRC of every PNG chunk, so that mutations reach the decoder proper.
fn fix_png_crcs(b: &mut [u8]) {
    let mut at = 8;
    while at + 12 <= b.len() {
        let n = u32::from_be_bytes(b[at..at + 4].try_into().unwrap()) as usize;
        if at + 12 + n > b.len() {
            break;
        }
        let crc = crc32(&b[at + 4..at + 8 + n]);
        b[at + 8 + n..at + 12 + n].copy_from_slice(&crc.to_be_bytes());
        at += 12 + n;
    }
}

/// A run configuration for the seeds: the test's tiny DirectCLR run.
const TINY_CONFIG: &str = r#"seed = 7
epochs = 3
batch_size = 16
workers = 0
probe = true

[data]
source = { kind = "fashion_mnist", path = "/nonexistent" }
image_size = 32
limit = 48

[model]
arch = "resnet18"
stem = "cifar"
width_multiplier = 0.0625

[method]
kind = "direct_clr"
d0 = 8

[guard]
on_failure = "rollback"
"#;

fn tiny_config() -> TrainConfig {
    TrainConfig::from_toml(TINY_CONFIG, Path::new("tiny.toml")).unwrap()
}

/// A small checkpoint written by the real writer: two "encoder" tensors, a probe, momentum.
fn checkpoint_seed() -> Vec<u8> {
    let dir = scratch();
    let opened = RunDir::open(dir.path(), &tiny_config(), false).unwrap();
    let run = match opened {
        directclr::train::Opened::Fresh(r) => r,
        directclr::train::Opened::Resume(..) => unreachable!(),
    };
    let t = |n: &str, shape: &[i64]| {
        let numel: i64 = shape.iter().product();
        (
            n.to_string(),
            Tensor::arange(numel, (tch::Kind::Float, tch::Device::Cpu)).view(shape),
        )
    };
    let tensors = vec![
        t("encoder.conv1.weight", &[2, 3, 1, 1]),
        t("encoder.bn1.running_mean", &[2]),
        t("head.w", &[3]),
        t("momentum.conv1.weight", &[2, 3, 1, 1]),
    ];
    run.write_checkpoint(
        Progress {
            epoch: 1,
            step: 3,
            seed: 7,
        },
        &GuardState::default(),
        &tensors,
        &tensors[..2],
    )
    .unwrap();
    std::fs::read(run.path(directclr::train::CHECKPOINT_FILE)).unwrap()
}

/// Structure-aware mutation of a safetensors file: edits its JSON header (dtypes, shapes,
/// offsets, the checkpoint metadata) and rewrites the length prefix (sometimes wrongly).
fn mutate_safetensors(rng: &mut ChaCha8Rng, seed: &[u8], others: &[Vec<u8>]) -> Vec<u8> {
    let mut b = seed.to_vec();
    if b.len() < 8 || rng.gen_bool(0.3) {
        mutate_bytes(rng, &mut b, &[0, 1, 2, 3, 4, 5, 6, 7, 8], &others[0]);
        return b;
    }
    let n = (u64::from_le_bytes(b[..8].try_into().unwrap()) as usize).min(b.len() - 8);
    let mut header: serde_json::Value = match serde_json::from_slice(&b[8..8 + n]) {
        Ok(h) => h,
        Err(_) => {
            mutate_bytes(rng, &mut b, &[0], &[]);
            return b;
        }
    };
    let data = b[8 + n..].to_vec();
    let num = |rng: &mut ChaCha8Rng| -> serde_json::Value {
        match rng.gen_range(0..4) {
            0 => serde_json::json!(INTERESTING_U64[rng.gen_range(0..INTERESTING_U64.len())]),
            1 => serde_json::json!(rng.gen_range(0..64)),
            2 => serde_json::json!(-1),
            _ => serde_json::json!("x"),
        }
    };
    if let Some(obj) = header.as_object_mut() {
        let keys: Vec<String> = obj.keys().cloned().collect();
        for _ in 0..rng.gen_range(1..=2) {
            let k = &keys[rng.gen_range(0..keys.len())];
            let entry = obj.get_mut(k).unwrap();
            if k == "__metadata__" {
                // The checkpoint's own JSON inside a string.
                if let Some(s) = entry.get("directclr").and_then(|v| v.as_str()) {
                    let mut m: serde_json::Value =
                        serde_json::from_str(s).unwrap_or(serde_json::json!({}));
                    let field = ["format", "epoch", "step", "seed", "guard"][rng.gen_range(0..5)];
                    m[field] = match rng.gen_range(0..4) {
                        0 => num(rng),
                        1 => serde_json::json!("directclr-train-checkpoint-2"),
                        2 => serde_json::json!({"lr_scale": "x", "rollbacks": 1}),
                        _ => serde_json::Value::Null,
                    };
                    entry["directclr"] = serde_json::json!(m.to_string());
                }
                continue;
            }
            match rng.gen_range(0..5) {
                0 => {
                    entry["dtype"] = serde_json::json!(
                        ["F32", "F64", "BF16", "I64", "U8", "BOOL", "F8_E4M3", "U64", "XX"]
                            [rng.gen_range(0..9)]
                    )
                }
                1 => {
                    if let Some(s) = entry["shape"].as_array_mut() {
                        if s.is_empty() || rng.gen_bool(0.3) {
                            s.push(num(rng));
                        } else {
                            let i = rng.gen_range(0..s.len());
                            s[i] = num(rng);
                        }
                    }
                }
                2 => {
                    if let Some(s) = entry["data_offsets"].as_array_mut() {
                        let i = rng.gen_range(0..s.len().max(1));
                        if i < s.len() {
                            s[i] = num(rng);
                        }
                    }
                }
                3 => {
                    obj.remove(k);
                    break;
                }
                _ => {
                    let v = entry.clone();
                    obj.insert(format!("encoder.{}", rng.gen_range(0..4)), v);
                    break;
                }
            }
        }
    }
    let h = header.to_string().into_bytes();
    let mut out = Vec::with_capacity(8 + h.len() + data.len());
    let len = if rng.gen_bool(0.1) {
        INTERESTING_U64[rng.gen_range(0..INTERESTING_U64.len())]
    } else {
        h.len() as u64
    };
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(&data);
    if rng.gen_bool(0.2) {
        let keep = rng.gen_range(0..=out.len());
        out.truncate(keep);
    }
    out
}

// ---------------------------------------------------------------------------------------------
// Targets.

fn idx_target() -> Target {
    let seeds = vec![
        fashion_images_head(),
        idx_file(&[5], 1),
        idx_file(&[3, 4, 5], 7),
        gzip(&idx_file(&[4, 6, 6], 3)),
        gzip(&idx_file(&[9], 1)),
    ];
    Target {
        name: "idx",
        // gzip may legitimately expand 1032:1 (DEFLATE's limit).
        alloc_floor: 1 << 20,
        alloc_ratio: 1100,
        seeds,
        mutate: |rng, seed, all| {
            // Mutate the plain bytes (and re-compress) or the compressed stream itself.
            let gz = seed.starts_with(&[0x1f, 0x8b]);
            let mut plain = if gz {
                let mut d = flate2::read::GzDecoder::new(seed);
                let mut v = Vec::new();
                std::io::Read::read_to_end(&mut d, &mut v)
                    .map(|_| v)
                    .unwrap_or_default()
            } else {
                seed.to_vec()
            };
            let hot: Vec<usize> = (0..8).chain((4..28).step_by(4)).collect();
            if gz && rng.gen_bool(0.3) {
                let mut b = seed.to_vec();
                mutate_bytes(rng, &mut b, &[0, 1, 2, 3, 10], &all[0]);
                return b;
            }
            mutate_bytes(rng, &mut plain, &hot, &all[1]);
            if gz || rng.gen_bool(0.2) {
                gzip(&plain)
            } else {
                plain
            }
        },
        run: |dir, input| {
            let p = dir.join("train-images-idx3-ubyte");
            std::fs::write(&p, input).unwrap();
            let name = ["train-images-idx3-ubyte"];
            match idx::read_idx(&p) {
                Ok(a) if a.dims.len() == 1 => verdict(idx::read_labels(&p), &name),
                Ok(_) => verdict(idx::read_images(&p), &name),
                Err(e) => verdict(Err::<(), _>(e), &name),
            }
        },
    }
}

fn cifar_target() -> Target {
    let rec = |label: &[u8], v: u8| {
        let mut r = label.to_vec();
        r.extend((0..3072).map(|i| (i as u8) ^ v));
        r
    };
    let names10 = b"airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n";
    let batch = |k: u8| [rec(&[k], k), rec(&[9 - k], 3)].concat();
    let b: Vec<Vec<u8>> = (1..=5).map(batch).collect();
    let ten = bundle(&[
        ("kind10", b""),
        ("batches.meta.txt", names10),
        ("data_batch_1.bin", &b[0]),
        ("data_batch_2.bin", &b[1]),
        ("data_batch_3.bin", &b[2]),
        ("data_batch_4.bin", &b[3]),
        ("data_batch_5.bin", &b[4]),
    ]);
    let fine: String = (0..100).map(|i| format!("f{i}\n")).collect();
    let coarse: String = (0..20).map(|i| format!("c{i}\n")).collect();
    let train100 = [rec(&[3, 99], 1), rec(&[19, 0], 2), rec(&[0, 50], 3)].concat();
    let hundred = bundle(&[
        ("kind100", b""),
        ("fine_label_names.txt", fine.as_bytes()),
        ("coarse_label_names.txt", coarse.as_bytes()),
        ("train.bin", &train100),
    ]);
    Target {
        name: "cifar",
        alloc_floor: 1 << 20,
        alloc_ratio: 4,
        seeds: vec![ten, hundred],
        mutate: |rng, seed, _| {
            mutate_bundle(rng, seed, |_, d| {
                // Label bytes of each record (3073 or 3074 bytes).
                (0..d.len())
                    .step_by(3073)
                    .chain((1..d.len()).step_by(3074))
                    .take(16)
                    .collect()
            })
        },
        run: |dir, input| {
            write_bundle(dir, input);
            let names = ["`"];
            if dir.join("kind100").exists() {
                verdict(
                    cifar::read_cifar100(dir, Split::Train, cifar::Cifar100Labels::Fine),
                    &names,
                )?;
                verdict(
                    cifar::read_cifar100(dir, Split::Train, cifar::Cifar100Labels::Coarse),
                    &names,
                )
            } else {
                verdict(cifar::read_cifar10(dir, Split::Train), &names)
            }
        },
    }
}

fn stl10_target() -> Target {
    let img = |v: u8| {
        (0..3 * 96 * 96)
            .map(|i| (i as u8).wrapping_add(v))
            .collect::<Vec<u8>>()
    };
    let x = [img(1), img(2)].concat();
    let u = img(9);
    let names = b"airplane\nbird\ncar\ncat\ndeer\ndog\nhorse\nmonkey\nship\ntruck\n";
    let seed = bundle(&[
        ("class_names.txt", names),
        ("train_X.bin", &x),
        ("train_y.bin", &[1, 10]),
        ("unlabeled_X.bin", &u),
    ]);
    Target {
        name: "stl10",
        alloc_floor: 1 << 20,
        alloc_ratio: 4,
        seeds: vec![seed],
        mutate: |rng, seed, _| mutate_bundle(rng, seed, |_, _| vec![0, 1, 27647, 27648]),
        run: |dir, input| {
            write_bundle(dir, input);
            verdict(stl10::read_stl10(dir, stl10::Stl10Split::Train), &["`"])?;
            verdict(
                stl10::read_stl10(dir, stl10::Stl10Split::TrainUnlabeled),
                &["`"],
            )
        },
    }
}

fn image_target() -> Target {
    Target {
        name: "image",
        // Decoded pixels are believed up to 1024 RGB bytes per file byte (1 MiB at least),
        // 16-bit RGBA decodes at up to 8/3 of that before conversion.
        alloc_floor: 8 << 20,
        alloc_ratio: 3 * 1024,
        seeds: image_seeds(),
        mutate: |rng, seed, all| {
            let mut b = seed.to_vec();
            let png = b.starts_with(b"\x89PNG");
            let hot: Vec<usize> = if png {
                vec![16, 17, 18, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28]
            } else {
                let sof = b.windows(2).position(|w| w == [0xff, 0xc0]).unwrap_or(2);
                (sof..sof + 12).collect()
            };
            let other = &all[rng.gen_range(0..all.len())];
            mutate_bytes(rng, &mut b, &hot, other);
            if png && rng.gen_bool(0.8) {
                fix_png_crcs(&mut b);
            }
            b
        },
        run: |dir, input| {
            let p = dir.join("x.jpg");
            let r = directclr::data::dataset::decode_bytes(input, &p);
            if let Ok(img) = &r {
                if img.data.len() != img.width * img.height * img.channels {
                    return Err("decoded size disagrees with the image's shape".into());
                }
            }
            verdict(r, &["x.jpg"])
        },
    }
}

fn config_target() -> Target {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
    let mut seeds: Vec<Vec<u8>> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| std::fs::read(e.unwrap().path()).unwrap())
        .collect();
    seeds.sort();
    seeds.push(TINY_CONFIG.as_bytes().to_vec());
    Target {
        name: "config",
        alloc_floor: 1 << 20,
        alloc_ratio: 64,
        seeds,
        mutate: |rng, seed, _| mutate_text(rng, seed),
        run: |dir, input| {
            let p = dir.join("run.toml");
            std::fs::write(&p, input).unwrap();
            let c = match TrainConfig::from_file(&p) {
                Ok(c) => c,
                Err(e) => return verdict(Err::<(), _>(e), &["`"]),
            };
            if let Err(e) = c.clone().check() {
                return verdict(Err::<(), _>(e), &["`"]);
            }
            // A valid config serialises (as the run folder's config.toml), reparses to itself
            // and diffs to nothing, so that its run folder can be resumed.
            let text = c.to_toml().map_err(|e| format!("to_toml: {e}"))?;
            let back = TrainConfig::from_toml(&text, &p).map_err(|e| format!("reparse: {e}"))?;
            let diff =
                directclr::train::differing_fields(&c, &back).map_err(|e| format!("diff: {e}"))?;
            if !diff.is_empty() {
                return Err(format!("round trip changed {diff:?}"));
            }
            Ok(None)
        },
    }
}

fn checkpoint_target() -> Target {
    let seed = checkpoint_seed();
    Target {
        name: "checkpoint",
        // The file is read whole once for its header, once for its tensors.
        alloc_floor: 1 << 20,
        alloc_ratio: 3,
        seeds: vec![seed.clone(), seed],
        mutate: mutate_safetensors,
        run: |dir, input| {
            let p = dir.join("checkpoint.safetensors");
            std::fs::write(&p, input).unwrap();
            let ck = match read_checkpoint(&p) {
                Ok(c) => c,
                Err(e) => return verdict(Err::<(), _>(e), &["checkpoint.safetensors"]),
            };
            // Restoring into a model of the seed's shapes.
            let target: Vec<(String, Tensor)> = [
                ("conv1.weight", &[2i64, 3, 1, 1][..]),
                ("bn1.running_mean", &[2]),
            ]
            .iter()
            .map(|(n, s)| {
                (
                    n.to_string(),
                    Tensor::zeros(*s, (tch::Kind::Float, tch::Device::Cpu)),
                )
            })
            .collect();
            verdict(
                directclr::model::load_state(
                    &target,
                    &directclr::model::Part::Encoder.section(&ck.tensors),
                    &[],
                    "checkpoint.safetensors",
                ),
                &["checkpoint.safetensors"],
            )
        },
    }
}

fn run_state_target() -> Target {
    let ck = checkpoint_seed();
    let metrics = concat!(
        r#"{"kind":"step","epoch":0,"step":1,"loss":3.1,"probe_loss":2.3,"probe_acc":0.1,"lr":0.0,"images_per_s":10.0}"#,
        "\n",
        r#"{"kind":"guard","epoch":0,"step":0,"failed_step":2,"cause":"spike","loss":null,"baseline":3.0,"action":"rollback","lr_scale":0.5,"rollbacks":1}"#,
        "\n",
        r#"{"kind":"epoch","epoch":0,"step":3,"loss":3.0,"probe_loss":2.2,"probe_acc":0.2,"lr":0.1,"images_per_s":10.0}"#,
        "\n",
        r#"{"kind":"step","epoch":1,"step":4,"loss":2.9,"probe_loss":2.2,"probe_acc":0.2,"lr":0.1,"images_per_s":10.0}"#,
        "\n"
    );
    let config = tiny_config().to_toml().unwrap();
    let full = bundle(&[
        ("config.toml", config.as_bytes()),
        ("metrics.jsonl", metrics.as_bytes()),
        ("checkpoint.safetensors", &ck),
    ]);
    let no_ckpt = bundle(&[
        ("config.toml", config.as_bytes()),
        ("metrics.jsonl", metrics.as_bytes()),
    ]);
    Target {
        name: "run_state",
        alloc_floor: 1 << 20,
        alloc_ratio: 3,
        seeds: vec![full, no_ckpt],
        mutate: |rng, seed, _| {
            if rng.gen_bool(0.3) {
                // The checkpoint alone, structure-aware.
                let mut files = unbundle(seed);
                if let Some(f) = files.iter_mut().find(|f| f.0 == "checkpoint.safetensors") {
                    f.1 = mutate_safetensors(rng, &f.1, &[Vec::new()]);
                    let refs: Vec<(&str, &[u8])> = files
                        .iter()
                        .map(|(n, d)| (n.as_str(), d.as_slice()))
                        .collect();
                    return bundle(&refs);
                }
            }
            mutate_bundle(rng, seed, |_, _| vec![0, 8])
        },
        run: |dir, input| {
            let root = dir.join("run");
            std::fs::create_dir_all(&root).unwrap();
            write_bundle(&root, input);
            let r = RunDir::open(&root, &tiny_config(), false);
            if let Ok(opened) = &r {
                // Whatever was kept of the log is whole JSON lines with steps within the
                // checkpoint's (none without a checkpoint).
                let last = match opened {
                    directclr::train::Opened::Resume(_, ck) => Some(ck.progress.step as u64),
                    directclr::train::Opened::Fresh(_) => None,
                };
                let text = std::fs::read_to_string(root.join("metrics.jsonl")).unwrap_or_default();
                for l in text.lines() {
                    let v: serde_json::Value = serde_json::from_str(l)
                        .map_err(|e| format!("kept a torn metrics line {l:?}: {e}"))?;
                    let step = v.get("step").and_then(|s| s.as_u64());
                    if last.is_none() || step.is_none_or(|s| Some(s) > last) {
                        return Err(format!("kept a line after the checkpoint: {l}"));
                    }
                }
            }
            verdict(r.map(|_| ()), &["`"])
        },
    }
}

/// The embeddings readers (`formats/`): .npy, .npz (stored and deflated, C and Fortran order),
/// safetensors and torch.save (the allow-list pickle reader), from the test fixtures; the run streams the whole matrix into the
/// covariance with d capped at 256 (8·d² bytes of covariance).
fn embeddings_target() -> Target {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/embeddings");
    let torch = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    let seeds = [
        "f16_c.npy",
        "f32_v3.npy",
        "f64_big_fortran.npy",
        "compressed.npz",
        "compressed_fortran.npz",
        "stored.npz",
        "bf16.safetensors",
        "two.safetensors",
    ]
    .iter()
    .map(|f| std::fs::read(dir.join(f)).unwrap())
    .chain(
        ["bare.pt", "nested.pth", "offset_f16.pt", "evil.pt"]
            .iter()
            .map(|f| std::fs::read(torch.join(f)).unwrap()),
    )
    .collect();
    Target {
        name: "embeddings",
        // Chunk buffers: the raw bytes (≤ the file) and their f64 values (≤ 4× for 2-byte
        // elements). The zip crate reserves its entry table from the count the archive
        // claims, capped at the central directory's offset: ≤ size_of::<ZipFileData>() (about
        // 130 bytes; a fuzz finding measured 2.26 MB for 17 kB) per byte of archive.
        alloc_floor: 1 << 20,
        alloc_ratio: 256,
        seeds,
        mutate: |rng, seed, all| {
            let mut b = seed.to_vec();
            // Header fields: magic, version, header length (npy: bytes 6..12; safetensors:
            // 0..8; zip: local header sizes and method 0..30), and the shape's digits.
            let mut hot: Vec<usize> = (0..30).collect();
            hot.extend(
                b.iter()
                    .take(256)
                    .enumerate()
                    .filter(|(_, c)| c.is_ascii_digit() || **c == b'\'' || **c == b'"')
                    .map(|(i, _)| i),
            );
            let other = rng.gen_range(0..all.len());
            mutate_bytes(rng, &mut b, &hot, &all[other]);
            b
        },
        run: |dir, input| {
            let ext = if input.starts_with(b"\x93NUMPY") {
                "npy"
            } else if input.starts_with(b"PK") && input.windows(8).any(|w| w == b"data.pkl") {
                "pt"
            } else if input.starts_with(b"PK") {
                "npz"
            } else {
                "safetensors"
            };
            let p = dir.join(format!("emb.{ext}"));
            std::fs::write(&p, input).unwrap();
            // The seeds' keys: `emb` (numpy, safetensors), `r` (torch, else the only tensor).
            let key = match ext {
                "npy" => None,
                "pt" if input.windows(1).any(|w| w == b"r") => Some("r"),
                "pt" => None,
                _ => Some("emb"),
            };
            let names = ["emb."];
            let mut file = match directclr::formats::open_matrix_limited(&p, key, 256) {
                Ok(f) => f,
                Err(e) => return verdict(Err::<(), _>(e), &names),
            };
            let moments = directclr::analysis::file_moments(
                &mut file,
                directclr::analysis::RowNormalisation::L2,
                None,
                &mut |_| {},
            );
            verdict(moments.and_then(|m| m.covariance_eigenvalues()), &names)
        },
    }
}

/// Encoder checkpoints written by real PyTorch (`torch.save`: the zip reader, the allow-list
/// pickle reader, every tensor's view against its storage, then the key-prefix search and the
/// load into a width-1/16 CIFAR ResNet-18), from `tests/fixtures/torch_real` and the hostile
/// `tests/fixtures/torch/evil.pt`.
fn torch_checkpoint_target() -> Target {
    let real = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch_real");
    let torch = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/torch");
    let seeds = [
        "bare.pt",
        "ddp.pt",
        "model_params.pth",
        "backbone_projector.pt",
    ]
    .iter()
    .map(|f| std::fs::read(real.join(f)).unwrap())
    .chain(std::iter::once(
        std::fs::read(torch.join("evil.pt")).unwrap(),
    ))
    .collect();
    Target {
        name: "torch_checkpoint",
        // Storages are read whole (≤ the file) into a libtorch tensor; the zip crate's entry
        // table as for `embeddings`.
        alloc_floor: 1 << 20,
        alloc_ratio: 256,
        seeds,
        mutate: |rng, seed, all| {
            let mut b = seed.to_vec();
            // The zip's local header, and the pickle's bytes (after the first entry's name).
            let mut hot: Vec<usize> = (0..30).collect();
            hot.extend(60..b.len().min(2000));
            let other = rng.gen_range(0..all.len());
            mutate_bytes(rng, &mut b, &hot, &all[other]);
            b
        },
        run: |dir, input| {
            let p = dir.join("weights.pt");
            std::fs::write(&p, input).unwrap();
            let vs = tch::nn::VarStore::new(tch::Device::Cpu);
            let config = directclr::model::ResNetConfig {
                arch: directclr::model::Arch::ResNet18,
                stem: directclr::model::Stem::Cifar,
                width_multiplier: 1.0 / 16.0,
                zero_init_residual: true,
            };
            let encoder = config.build(&vs.root()).unwrap();
            let r = directclr::model::load_encoder_file(&encoder, &p, None);
            verdict(r, &["weights.pt"])
        },
    }
}

// ---------------------------------------------------------------------------------------------
// CI: a few hundred seeded executions per target (seconds each).

#[test]
fn fuzz_idx() {
    campaign(idx_target(), 6000, 1);
}

#[test]
fn fuzz_cifar() {
    campaign(cifar_target(), 1000, 2);
}

#[test]
fn fuzz_stl10() {
    campaign(stl10_target(), 500, 3);
}

#[test]
fn fuzz_image_decoding() {
    campaign(image_target(), 10000, 4);
}

#[test]
fn fuzz_config() {
    campaign(config_target(), 4000, 5);
}

#[test]
fn fuzz_checkpoint() {
    campaign(checkpoint_target(), 5000, 6);
}

#[test]
fn fuzz_run_state() {
    campaign(run_state_target(), 1500, 7);
}

#[test]
fn fuzz_embeddings() {
    campaign(embeddings_target(), 3000, 8);
}

#[test]
fn fuzz_torch_checkpoint() {
    campaign(torch_checkpoint_target(), 400, 9);
}

/// The mutation engine itself: seeded (same seed, same inputs) and it does change inputs.
#[test]
fn mutations_are_seeded_and_change_the_input() {
    let seed = idx_file(&[3, 4, 5], 7);
    let run = |s| {
        let mut rng = ChaCha8Rng::seed_from_u64(s);
        (0..50)
            .map(|_| {
                let mut b = seed.clone();
                mutate_bytes(&mut rng, &mut b, &[4, 8], &[]);
                b
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(run(9), run(9));
    assert!(run(9).iter().filter(|b| **b != seed).count() >= 40);
    let files = unbundle(&bundle(&[("a.txt", b"x = 1\n"), ("b", &[0, 1, 2])]));
    assert_eq!(
        files,
        vec![
            ("a.txt".into(), b"x = 1\n".to_vec()),
            ("b".into(), vec![0, 1, 2])
        ]
    );
}

/// The oracles themselves: a panic, an allocation beyond the bound and an error that names
/// nothing are each reported as a finding; a clean input is not.
#[test]
fn the_oracles_catch_panics_large_allocations_and_unnamed_errors() {
    let t = Target {
        name: "oracle-self-test",
        alloc_floor: 4096,
        alloc_ratio: 1,
        seeds: vec![vec![9]],
        mutate: |_, s, _| s.to_vec(),
        run: |_, input| match input[0] {
            0 => panic!("boom"),
            1 => {
                let v = vec![1u8; 1 << 20];
                Ok(std::hint::black_box(v).is_empty().then(String::new))
            }
            2 => verdict(Err::<(), _>("an error without a name"), &["`"]),
            _ => verdict(Err::<(), _>("cannot read `x`"), &["`"]),
        },
    };
    let mut stats = Stats::default();
    for input in [[0u8], [1], [2], [3]] {
        exec(&t, &input, &mut stats);
    }
    assert_eq!(stats.findings.len(), 3, "{:?}", stats.findings);
    assert!(stats.findings[0].contains("panic: boom"));
    assert!(stats.findings[1].contains("allocated 1048576 bytes"));
    assert!(stats.findings[2].contains("names none"));
    assert_eq!((stats.errors, stats.execs), (1, 4));
}
