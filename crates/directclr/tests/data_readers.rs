//! Readers: small files written in each exact format and read back; malformed files; the real
//! Fashion-MNIST.

use std::io::Write;
use std::path::{Path, PathBuf};

use directclr::data::cifar::{read_cifar10, read_cifar100, Cifar100Labels};
use directclr::data::dataset::Split;
use directclr::data::idx::{read_idx, read_split, IdxDataset};
use directclr::data::image_folder::read_image_folder;
use directclr::data::stl10::{read_stl10, Stl10Split};
use directclr::data::{DataError, Images, UNLABELED};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn idx_bytes(dims: &[u32], data: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 0x08, dims.len() as u8];
    for d in dims {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend_from_slice(data);
    v
}

fn gz(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn write(path: &Path, bytes: &[u8]) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.gen()).collect()
}

fn array(ds: &directclr::data::Dataset) -> &directclr::data::ImageArray {
    match ds.images() {
        Images::Array(a) => a,
        Images::Files(_) => panic!("expected an in-memory dataset"),
    }
}

#[test]
fn idx_plain_and_gzip_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    let pixels = random_bytes(5 * 4 * 3, 1);
    let labels = [3u8, 1, 4, 1, 5];
    for (compress, suffix) in [(false, ""), (true, ".gz")] {
        let d = dir.path().join(suffix.trim_start_matches('.'));
        let enc = |b: Vec<u8>| if compress { gz(&b) } else { b };
        write(
            &d.join(format!("train-images-idx3-ubyte{suffix}")),
            &enc(idx_bytes(&[5, 4, 3], &pixels)),
        );
        write(
            &d.join(format!("train-labels-idx1-ubyte{suffix}")),
            &enc(idx_bytes(&[5], &labels)),
        );
        let ds = read_split(&d, IdxDataset::Mnist, Split::Train).unwrap();
        assert_eq!(ds.len(), 5);
        assert_eq!(array(&ds).shape(), [5, 1, 4, 3]);
        assert_eq!(array(&ds).data(), pixels.as_slice());
        assert_eq!(ds.labels(), &[3, 1, 4, 1, 5]);
        assert_eq!(ds.class_names()[4], "4");
        // Pixel (row 2, col 1) of image 3.
        assert_eq!(
            array(&ds).get(3).unwrap().at(0, 2, 1),
            pixels[3 * 12 + 2 * 3 + 1]
        );
    }
}

#[test]
fn idx_malformed_files_are_named_errors() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("x-idx3-ubyte");
    let expect_malformed = |bytes: &[u8], what: &str| {
        write(&p, bytes);
        match read_idx(&p) {
            Err(DataError::Malformed { path, reason }) => {
                assert_eq!(path, p);
                assert!(reason.contains(what), "{reason} lacks {what}");
            }
            other => panic!("expected Malformed({what}), got {other:?}"),
        }
    };
    expect_malformed(&idx_bytes(&[5, 4, 3], &[0; 59]), "more than the file");
    expect_malformed(&idx_bytes(&[5, 4, 3], &[0; 61]), "trailing");
    expect_malformed(&[1, 0, 8, 1, 0, 0, 0, 1, 0], "magic");
    expect_malformed(&[0, 0, 0x0d, 1, 0, 0, 0, 1, 0, 0, 0, 0], "not supported");
    expect_malformed(&[0, 0, 8, 3, 0, 0], "dimension sizes");
    // A header claiming 2^32·2^32·2^32 bytes must be refused before any allocation.
    expect_malformed(
        &idx_bytes(&[u32::MAX, u32::MAX, u32::MAX], &[1, 2, 3]),
        "more than the file",
    );
    // Same in gzip: a tiny file whose header claims 4 GiB, and a truncated stream.
    expect_malformed(
        &gz(&idx_bytes(&[u32::MAX, 1024, 1024], &[7; 100])),
        "more than the file",
    );
    expect_malformed(&gz(&idx_bytes(&[100, 10, 10], &[7; 500])), "truncated");
    let mut cut = gz(&idx_bytes(&[10, 10, 10], &[7; 1000]));
    cut.truncate(cut.len() / 2);
    write(&p, &cut);
    assert!(matches!(read_idx(&p), Err(DataError::Malformed { .. })));
}

#[test]
fn idx_label_count_mismatch_and_missing_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    match read_split(d, IdxDataset::FashionMnist, Split::Test) {
        Err(DataError::Io { path, .. }) => assert!(path.ends_with("t10k-images-idx3-ubyte")),
        other => panic!("{other:?}"),
    }
    write(
        &d.join("t10k-images-idx3-ubyte"),
        &idx_bytes(&[3, 2, 2], &[0; 12]),
    );
    write(
        &d.join("t10k-labels-idx1-ubyte.gz"),
        &gz(&idx_bytes(&[2], &[0, 1])),
    );
    match read_split(d, IdxDataset::FashionMnist, Split::Test) {
        Err(
            e @ DataError::LabelCountMismatch {
                images: 3,
                labels: 2,
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains("t10k-images-idx3-ubyte") && msg.contains("t10k-labels-idx1-ubyte.gz"),
                "{msg}"
            );
        }
        other => panic!("{other:?}"),
    }
    write(
        &d.join("t10k-labels-idx1-ubyte.gz"),
        &gz(&idx_bytes(&[3], &[0, 1, 10])),
    );
    assert!(matches!(
        read_split(d, IdxDataset::FashionMnist, Split::Test),
        Err(DataError::Malformed { .. })
    ));
    write(
        &d.join("t10k-images-idx3-ubyte"),
        &idx_bytes(&[0, 2, 2], &[]),
    );
    write(
        &d.join("t10k-labels-idx1-ubyte.gz"),
        &gz(&idx_bytes(&[0], &[])),
    );
    assert!(matches!(
        read_split(d, IdxDataset::FashionMnist, Split::Test),
        Err(DataError::Empty { .. })
    ));
}

/// The real Fashion-MNIST shipped with the project (values read with Python's gzip module).
#[test]
fn real_fashion_mnist() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/data/fashion-mnist");
    if !dir.exists() {
        eprintln!("skipping: {} not found", dir.display());
        return;
    }
    let train = read_split(&dir, IdxDataset::FashionMnist, Split::Train).unwrap();
    assert_eq!(array(&train).shape(), [60000, 1, 28, 28]);
    assert_eq!(&train.labels()[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    for c in 0..10 {
        assert_eq!(train.labels().iter().filter(|&&l| l == c).count(), 6000);
    }
    let img0 = array(&train).get(0).unwrap();
    assert_eq!(img0.data[96], 1);
    assert_eq!(img0.data[99], 13);
    assert_eq!(img0.data[100], 73);
    assert_eq!(img0.data.iter().map(|&v| v as u64).sum::<u64>(), 76247);
    assert_eq!(
        array(&train)
            .get(59999)
            .unwrap()
            .data
            .iter()
            .map(|&v| v as u64)
            .sum::<u64>(),
        16684
    );
    assert_eq!(train.class_names()[9], "Ankle boot");
    let test = read_split(&dir, IdxDataset::FashionMnist, Split::Test).unwrap();
    assert_eq!(test.len(), 10000);
    assert_eq!(&test.labels()[..10], &[9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
    let t0 = array(&test).get(0).unwrap();
    assert_eq!(t0.at(0, 14, 14), 110);
    assert_eq!(t0.data.iter().map(|&v| v as u64).sum::<u64>(), 33456);
}

fn cifar_record(label_bytes: &[u8], pixels: &[u8]) -> Vec<u8> {
    let mut v = label_bytes.to_vec();
    v.extend_from_slice(pixels);
    v
}

#[test]
fn cifar10_binary() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cifar-10-batches-bin");
    let names = "airplane\nautomobile\nbird\ncat\ndeer\ndog\nfrog\nhorse\nship\ntruck\n\n";
    write(&d.join("batches.meta.txt"), names.as_bytes());
    let mut all = Vec::new();
    for b in 1..=5u8 {
        let mut file = Vec::new();
        for r in 0..3u8 {
            let px = random_bytes(3072, (b * 10 + r) as u64);
            file.extend(cifar_record(&[(b + r) % 10], &px));
            all.push(((b + r) % 10, px));
        }
        write(&d.join(format!("data_batch_{b}.bin")), &file);
    }
    write(&d.join("test_batch.bin"), &cifar_record(&[7], &[9; 3072]));
    let train = read_cifar10(&d, Split::Train).unwrap();
    assert_eq!(array(&train).shape(), [15, 3, 32, 32]);
    assert_eq!(train.class_names().len(), 10);
    assert_eq!(train.class_names()[9], "truck");
    for (i, (l, px)) in all.iter().enumerate() {
        assert_eq!(train.labels()[i], *l as i64);
        let img = array(&train).get(i).unwrap();
        // Channel 2 (blue), row 5, column 7 is byte 2·1024 + 5·32 + 7 of the record.
        assert_eq!(img.at(2, 5, 7), px[2048 + 5 * 32 + 7]);
        assert_eq!(img.data, px.as_slice());
    }
    let test = read_cifar10(&d, Split::Test).unwrap();
    assert_eq!(test.labels(), &[7]);
    // A truncated batch names its file.
    write(&d.join("data_batch_3.bin"), &[0; 3072]);
    match read_cifar10(&d, Split::Train) {
        Err(DataError::Malformed { path, reason }) => {
            assert!(path.ends_with("data_batch_3.bin"));
            assert!(reason.contains("3073"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    // A label beyond the classes names its file.
    write(
        &d.join("data_batch_3.bin"),
        &cifar_record(&[10], &[0; 3072]),
    );
    match read_cifar10(&d, Split::Train) {
        Err(DataError::Malformed { path, .. }) => assert!(path.ends_with("data_batch_3.bin")),
        other => panic!("{other:?}"),
    }
    std::fs::remove_file(d.join("data_batch_5.bin")).unwrap();
    assert!(matches!(
        read_cifar10(&d, Split::Train),
        Err(DataError::Io { .. })
    ));
}

#[test]
fn cifar100_binary_fine_and_coarse() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("cifar-100-binary");
    let fine: String = (0..100).map(|i| format!("fine{i}\n")).collect();
    let coarse: String = (0..20).map(|i| format!("coarse{i}\n")).collect();
    write(&d.join("fine_label_names.txt"), fine.as_bytes());
    write(&d.join("coarse_label_names.txt"), coarse.as_bytes());
    let px = random_bytes(3072, 5);
    let mut file = cifar_record(&[3, 77], &px);
    file.extend(cifar_record(&[19, 99], &[1; 3072]));
    write(&d.join("train.bin"), &file);
    let f = read_cifar100(&d, Split::Train, Cifar100Labels::Fine).unwrap();
    assert_eq!(f.labels(), &[77, 99]);
    assert_eq!(f.class_names()[77], "fine77");
    assert_eq!(array(&f).get(0).unwrap().data, px.as_slice());
    let c = read_cifar100(&d, Split::Train, Cifar100Labels::Coarse).unwrap();
    assert_eq!(c.labels(), &[3, 19]);
    assert_eq!(c.class_names().len(), 20);
    write(&d.join("test.bin"), &file[..3000]);
    assert!(matches!(
        read_cifar100(&d, Split::Test, Cifar100Labels::Fine),
        Err(DataError::Malformed { .. })
    ));
}

#[test]
fn stl10_binary_column_major() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("stl10_binary");
    let names: String = (0..10).map(|i| format!("class{i}\n")).collect();
    write(&d.join("class_names.txt"), names.as_bytes());
    let side = 96;
    // Pixel (c, y, x) of image n is stored at c·96² + x·96 + y.
    let value =
        |n: usize, c: usize, y: usize, x: usize| ((n * 31 + c * 7 + y * 3 + x * 5) % 251) as u8;
    let mut file = Vec::new();
    for n in 0..3 {
        let mut rec = vec![0u8; 3 * side * side];
        for c in 0..3 {
            for y in 0..side {
                for x in 0..side {
                    rec[c * side * side + x * side + y] = value(n, c, y, x);
                }
            }
        }
        file.extend(rec);
    }
    write(&d.join("train_X.bin"), &file);
    write(&d.join("train_y.bin"), &[1, 10, 4]);
    write(&d.join("unlabeled_X.bin"), &file[..2 * 3 * side * side]);
    let train = read_stl10(&d, Stl10Split::Train).unwrap();
    assert_eq!(array(&train).shape(), [3, 3, 96, 96]);
    assert_eq!(train.labels(), &[0, 9, 3]);
    for n in 0..3 {
        let img = array(&train).get(n).unwrap();
        for (c, y, x) in [(0, 0, 1), (1, 5, 90), (2, 95, 3), (0, 17, 17)] {
            assert_eq!(img.at(c, y, x), value(n, c, y, x));
        }
    }
    let un = read_stl10(&d, Stl10Split::Unlabeled).unwrap();
    assert_eq!(un.labels(), &[UNLABELED, UNLABELED]);
    let both = read_stl10(&d, Stl10Split::TrainUnlabeled).unwrap();
    assert_eq!(both.labels(), &[0, 9, 3, UNLABELED, UNLABELED]);
    assert_eq!(array(&both).get(4).unwrap().at(1, 2, 3), value(1, 1, 2, 3));
    write(&d.join("train_y.bin"), &[1, 10]);
    assert!(matches!(
        read_stl10(&d, Stl10Split::Train),
        Err(DataError::LabelCountMismatch {
            images: 3,
            labels: 2,
            ..
        })
    ));
    write(&d.join("train_y.bin"), &[1, 11, 2]);
    assert!(matches!(
        read_stl10(&d, Stl10Split::Train),
        Err(DataError::Malformed { .. })
    ));
    write(&d.join("train_X.bin"), &file[..1000]);
    assert!(matches!(
        read_stl10(&d, Stl10Split::Train),
        Err(DataError::Malformed { .. })
    ));
}

/// Writes an RGB image with a JPEG or PNG encoder.
pub fn write_image(path: &Path, w: u32, h: u32, seed: u64) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let img = image::RgbImage::from_fn(w, h, |_, _| image::Rgb([rng.gen(), rng.gen(), rng.gen()]));
    img.save(path).unwrap();
}

#[test]
fn image_folder_layout_and_order() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("train");
    // Classes sorted by code point: "B" < "a" < "a-b" < "ab".
    for (cls, files) in [
        ("a", vec!["2.png", "10.JPG", "sub/0.jpeg", "notes.txt"]),
        ("B", vec!["x.png"]),
        ("ab", vec!["z.jpg"]),
        ("a-b", vec!["q.png"]),
    ] {
        for f in files {
            let p = root.join(cls).join(f);
            if f.ends_with(".txt") {
                write(&p, b"not an image");
            } else {
                write_image(&p, 9, 7, f.len() as u64);
            }
        }
    }
    let ds = read_image_folder(&root).unwrap();
    assert_eq!(ds.class_names(), &["B", "a", "a-b", "ab"]);
    let files: Vec<PathBuf> = match ds.images() {
        Images::Files(f) => f
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().to_path_buf())
            .collect(),
        Images::Array(_) => panic!(),
    };
    let expect: Vec<PathBuf> = [
        "B/x.png",
        "a/10.JPG",
        "a/2.png",
        "a/sub/0.jpeg",
        "a-b/q.png",
        "ab/z.jpg",
    ]
    .iter()
    .map(PathBuf::from)
    .collect();
    assert_eq!(files, expect);
    assert_eq!(ds.labels(), &[0, 1, 1, 1, 2, 3]);
    // PNG decodes losslessly to the written pixels.
    let img = ds.image(0).unwrap();
    let v = img.view();
    assert_eq!((v.channels, v.height, v.width), (3, 7, 9));
    let reference = image::open(root.join("B/x.png")).unwrap().to_rgb8();
    assert_eq!(v.data, reference.as_raw().as_slice());

    std::fs::create_dir_all(root.join("empty")).unwrap();
    match read_image_folder(&root) {
        Err(e @ DataError::EmptyClass { .. }) => assert!(e.to_string().contains("empty"), "{e}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        read_image_folder(&dir.path().join("missing")),
        Err(DataError::Io { .. })
    ));
    let bare = dir.path().join("bare");
    std::fs::create_dir_all(&bare).unwrap();
    assert!(matches!(
        read_image_folder(&bare),
        Err(DataError::Empty { .. })
    ));
}

#[test]
fn image_headers_cannot_claim_more_than_the_file_holds() {
    use directclr::data::dataset::decode_bytes;
    let dir = tempfile::tempdir().unwrap();
    // A real PNG and JPEG decode; the same PNG with its IHDR size patched to 60000×60000
    // (CRC fixed) is refused before any allocation of its 10 GB.
    let p = dir.path().join("a.png");
    write_image(&p, 20, 10, 1);
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(decode_bytes(&bytes, &p).unwrap().width, 20);
    let j = dir.path().join("a.jpg");
    write_image(&j, 20, 10, 1);
    assert_eq!(
        decode_bytes(&std::fs::read(&j).unwrap(), &j)
            .unwrap()
            .height,
        10
    );
    let mut big = bytes.clone();
    // IHDR data starts at byte 16: width, height (big-endian u32); its CRC covers bytes 12..29.
    big[16..20].copy_from_slice(&60000u32.to_be_bytes());
    big[20..24].copy_from_slice(&60000u32.to_be_bytes());
    let crc = crc32(&big[12..29]);
    big[29..33].copy_from_slice(&crc.to_be_bytes());
    match decode_bytes(&big, &p) {
        Err(DataError::Decode { reason, .. }) => assert!(reason.contains("more than"), "{reason}"),
        other => panic!("{other:?}"),
    }
    // The JPEG with its frame header (SOF0: FF C0, length, precision, height, width) patched
    // to 16000×16000 (within zune-jpeg's own 16384 limit).
    let mut jb = std::fs::read(&j).unwrap();
    let sof = jb.windows(2).position(|w| w == [0xff, 0xc0]).unwrap();
    jb[sof + 5..sof + 7].copy_from_slice(&16000u16.to_be_bytes());
    jb[sof + 7..sof + 9].copy_from_slice(&16000u16.to_be_bytes());
    match decode_bytes(&jb, &j) {
        Err(DataError::Decode { reason, .. }) => assert!(reason.contains("more than"), "{reason}"),
        other => panic!("{other:?}"),
    }
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
