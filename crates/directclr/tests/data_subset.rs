//! The Fashion-MNIST subset shipped in `data/fashion-mnist-subset` (for the quick start) reads
//! back with the expected counts and equals the head of the full data set.

use std::path::Path;

use directclr::data::{
    dataset::Split,
    idx::{read_split, IdxDataset},
    Images,
};

fn pixels(d: &directclr::data::Dataset) -> &directclr::data::ImageArray {
    match d.images() {
        Images::Array(a) => a,
        Images::Files(_) => panic!("IDX data is in memory"),
    }
}

#[test]
fn shipped_subset_is_the_head_of_fashion_mnist() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let subset = root.join("data/fashion-mnist-subset");
    assert!(
        subset.join("LICENSE").is_file(),
        "the MIT licence ships with the data"
    );
    let train = read_split(&subset, IdxDataset::FashionMnist, Split::Train).unwrap();
    let test = read_split(&subset, IdxDataset::FashionMnist, Split::Test).unwrap();
    assert_eq!(pixels(&train).shape(), [10_000, 1, 28, 28]);
    assert_eq!(pixels(&test).shape(), [2_000, 1, 28, 28]);
    assert_eq!(&train.labels()[..10], &[9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
    // Every class is present in both splits.
    for c in 0..10 {
        assert!(train.labels().iter().filter(|&&l| l == c).count() > 800);
        assert!(test.labels().iter().filter(|&&l| l == c).count() > 150);
    }
    let full = root.join("../shared/data/fashion-mnist");
    if full.exists() {
        for (split, n) in [(Split::Train, 10_000), (Split::Test, 2_000)] {
            let a = read_split(&subset, IdxDataset::FashionMnist, split).unwrap();
            let b = read_split(&full, IdxDataset::FashionMnist, split).unwrap();
            assert_eq!(a.labels(), &b.labels()[..n]);
            for i in [0, 1, n / 2, n - 1] {
                assert_eq!(
                    pixels(&a).get(i).unwrap().data,
                    pixels(&b).get(i).unwrap().data,
                    "image {i}"
                );
            }
        }
    }
}
