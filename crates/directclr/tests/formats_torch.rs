//! `torch.save` files read without executing anything: a bare tensor, nested dicts of tensors
//! (`{"backbone": state_dict}`), a column-major view, a view at an offset of an f16 storage,
//! against the same values read from .npy; and a pickle that names `os.system`, refused by name.
//! Fixtures: `tests/fixtures/torch/make_torch_fixtures.py`.

use std::path::{Path, PathBuf};

use directclr::analysis::{embedding_moments, file_moments, RowNormalisation};
use directclr::formats::{open_matrix, torch_zip, ElementType, MatrixOrder};
use directclr::Error;
use tch::{Kind, Tensor};

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/torch")
        .join(name)
}

fn spectrum(path: &Path, key: Option<&str>) -> Vec<f64> {
    let mut file = open_matrix(path, key).unwrap();
    file_moments(&mut file, RowNormalisation::L2, None, &mut |_| {})
        .unwrap()
        .covariance_eigenvalues()
        .unwrap()
}

fn error(path: &Path, key: Option<&str>) -> String {
    match open_matrix(path, key) {
        Err(e @ Error::Format { .. }) => e.to_string(),
        Err(e) => panic!("not a format error: {e}"),
        Ok(_) => panic!("{path:?} {key:?} opened"),
    }
}

#[test]
fn saved_tensors_read_the_same_values_as_numpy() {
    // Same f32 values in the same row order through the same accumulator: the same bits.
    let reference = spectrum(&fixture("emb_reference.npy"), None);
    assert_eq!(spectrum(&fixture("bare.pt"), None), reference);
    assert_eq!(
        spectrum(&fixture("nested.pth"), Some("backbone.embeddings")),
        reference
    );
    // A column-major view (strides (1, N)) of the same values.
    let m = open_matrix(&fixture("nested.pth"), Some("backbone.column_major")).unwrap();
    assert_eq!(m.layout().order, MatrixOrder::ColumnMajor);
    assert_eq!(
        spectrum(&fixture("nested.pth"), Some("backbone.column_major")),
        reference
    );
}

#[test]
fn a_view_at_an_offset_of_an_f16_storage() {
    // Rows 50..250 of a 300-row f16 storage: the same values as the f32 reference rounded to
    // f16, read by the in-memory accumulator from an f16 tensor: the same bits.
    let m = open_matrix(&fixture("offset_f16.pt"), None).unwrap();
    assert_eq!(m.layout().element, ElementType::F16);
    assert_eq!(m.name(), Some("r"));
    let emb = Tensor::read_npy(fixture("emb_reference.npy")).unwrap();
    let expected = embedding_moments(&emb.to_kind(Kind::Half), RowNormalisation::L2)
        .unwrap()
        .covariance_eigenvalues()
        .unwrap();
    assert_eq!(spectrum(&fixture("offset_f16.pt"), None), expected);
}

#[test]
fn tensors_are_named_by_their_dotted_path() {
    let (prefix, tensors, _) = torch_zip::tensors(&fixture("nested.pth")).unwrap();
    assert_eq!(prefix, "nested/");
    let names: Vec<&str> = tensors.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "backbone.embeddings",
            "backbone.labels",
            "backbone.column_major",
            "first_column"
        ]
    );
    let e = error(&fixture("nested.pth"), None);
    assert!(
        e.contains("4 tensors") && e.contains("`backbone.embeddings`"),
        "{e}"
    );
    let e = error(&fixture("nested.pth"), Some("backbone.labels"));
    assert!(e.contains("LongStorage"), "{e}");
    let e = error(&fixture("nested.pth"), Some("first_column"));
    assert!(e.contains("2-D"), "{e}");
}

#[test]
fn code_in_a_pickle_is_refused_by_name_and_never_run() {
    let e = error(&fixture("evil.pt"), None);
    assert!(e.contains("`os.system`") && e.contains("allow-list"), "{e}");
    // The legacy format and other files that are not zip archives.
    let dir = tempfile::tempdir().unwrap();
    let legacy = dir.path().join("legacy.pt");
    std::fs::write(&legacy, b"\x80\x02\x8a\x0alz\xfc\x9cF\xf9 j\xa8P\x19.").unwrap();
    let e = error(&legacy, None);
    assert!(
        e.contains("legacy format") && e.contains("save it again"),
        "{e}"
    );
}

#[test]
fn truncated_and_corrupt_pickles_are_errors() {
    use directclr::formats::pickle;
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(fixture("bare.pt")).unwrap();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(&bytes)).unwrap();
    let mut pkl = Vec::new();
    std::io::Read::read_to_end(&mut archive.by_name("archive/data.pkl").unwrap(), &mut pkl)
        .unwrap();
    assert!(pickle::read(&pkl).is_ok());
    for cut in [0, 1, 40, 100, pkl.len() - 1] {
        assert!(pickle::read(&pkl[..cut]).is_err(), "cut at {cut}");
    }
    // A storage key that is not a plain name (it names an archive entry).
    let at = pkl
        .windows(6)
        .position(|w| w == b"X\x01\0\0\x000")
        .expect("the storage key '0'");
    let mut bad = pkl.clone();
    bad[at + 5] = b'/';
    let e = pickle::read(&bad).unwrap_err();
    assert!(e.contains("storage key `/`"), "{e}");
    // Cut files.
    for keep in [10, 200, 4000] {
        let p = dir.path().join(format!("cut{keep}.pt"));
        std::fs::write(&p, &bytes[..keep]).unwrap();
        let e = error(&p, None);
        assert!(e.contains(&format!("cut{keep}.pt")), "{e}");
    }
}
