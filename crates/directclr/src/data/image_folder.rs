//! Image folders in the ImageNet layout: `root/<class>/**/<image>.{jpg,jpeg,png}`.
//!
//! Follows torchvision's `ImageFolder`: classes are the sub-folders of `root` sorted by name
//! (code-point order), label = position in that list; the files of a class are found by a
//! recursive walk (following links) with folders and then file names sorted the same way; the
//! extension test ignores case. Files are decoded on demand by the loader.
//!
//! [`read_images`] also takes a flat folder of images (ImageNet's raw `val/`, a folder of
//! photos): with no class folder in it, its image files, sorted by name, are one unlabelled set.

use std::path::{Path, PathBuf};

use super::dataset::UNLABELED;
use super::{DataError, Dataset};

/// File extensions read (lower case, without the dot).
pub const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

fn sort_key(p: &Path) -> &[u8] {
    p.as_os_str().as_encoded_bytes()
}

fn has_image_extension(p: &Path) -> bool {
    p.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

fn read_dir_sorted(dir: &Path) -> Result<(Vec<PathBuf>, Vec<PathBuf>), DataError> {
    let mut dirs = Vec::new();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| DataError::io(dir, e))? {
        let entry = entry.map_err(|e| DataError::io(dir, e))?;
        let path = entry.path();
        // `metadata` follows links, as torchvision's walk does.
        match std::fs::metadata(&path) {
            Ok(m) if m.is_dir() => dirs.push(path),
            Ok(m) if m.is_file() => files.push(path),
            _ => {}
        }
    }
    dirs.sort_by(|a, b| sort_key(a).cmp(sort_key(b)));
    files.sort_by(|a, b| sort_key(a).cmp(sort_key(b)));
    Ok((dirs, files))
}

/// The images under `dir`, in torchvision's order (`sorted(os.walk(dir))`, then sorted names).
fn walk(dir: &Path) -> Result<Vec<PathBuf>, DataError> {
    // Gather (folder, its sorted image files) for every folder, then sort the folders by path
    // string as Python sorts the tuples of `os.walk`.
    let mut folders: Vec<(PathBuf, Vec<PathBuf>)> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    let mut seen = std::collections::HashSet::new();
    while let Some(d) = stack.pop() {
        // Guard against link cycles.
        if let Ok(canon) = std::fs::canonicalize(&d) {
            if !seen.insert(canon) {
                continue;
            }
        }
        let (sub, files) = read_dir_sorted(&d)?;
        folders.push((
            d,
            files
                .into_iter()
                .filter(|f| has_image_extension(f))
                .collect(),
        ));
        stack.extend(sub);
    }
    folders.sort_by(|a, b| sort_key(&a.0).cmp(sort_key(&b.0)));
    Ok(folders.into_iter().flat_map(|(_, f)| f).collect())
}

/// Reads the file list of an image folder (`root/<class>/...`).
///
/// # Errors
/// A missing or unreadable `root`, a root without class folders, or a class folder without
/// any image ([`DataError::EmptyClass`]).
///
/// # Shapes
/// Labels `[n]` in `0..classes`; images are decoded on demand (interleaved `[h, w, c]`).
pub fn read_image_folder(root: &Path) -> Result<Dataset, DataError> {
    let (class_dirs, _) = read_dir_sorted(root)?;
    if class_dirs.is_empty() {
        return Err(DataError::Empty {
            path: root.into(),
            reason: "no class folder in it".into(),
        });
    }
    let mut names = Vec::with_capacity(class_dirs.len());
    let mut files = Vec::new();
    let mut labels = Vec::new();
    for (label, dir) in class_dirs.iter().enumerate() {
        let name = dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .ok_or_else(|| DataError::malformed(dir, "class folder without a name"))?;
        let found = walk(dir)?;
        if found.is_empty() {
            return Err(DataError::EmptyClass { path: dir.clone() });
        }
        labels.extend(std::iter::repeat_n(label as i64, found.len()));
        files.extend(found);
        names.push(name);
    }
    Dataset::from_files(files, labels, names, root)
}

/// Reads an image folder in the class layout ([`read_image_folder`]) or, when `root` holds no
/// sub-folder, as a flat folder: its image files sorted by name, every label [`UNLABELED`].
///
/// # Errors
/// A missing or unreadable `root`; a flat folder without any image file; the errors of
/// [`read_image_folder`] in the class layout.
pub fn read_images(root: &Path) -> Result<Dataset, DataError> {
    let (class_dirs, files) = read_dir_sorted(root)?;
    if !class_dirs.is_empty() {
        return read_image_folder(root);
    }
    let files: Vec<PathBuf> = files
        .into_iter()
        .filter(|f| has_image_extension(f))
        .collect();
    if files.is_empty() {
        return Err(DataError::Empty {
            path: root.into(),
            reason: format!(
                "no class folder and no image file ({}) in it",
                EXTENSIONS.join(", ")
            ),
        });
    }
    let labels = vec![UNLABELED; files.len()];
    Dataset::from_files(files, labels, Vec::new(), root)
}
