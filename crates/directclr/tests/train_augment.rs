//! The `[augment]` table of a run config: the authors' asymmetric recipe by default, keys merged
//! over it per view, every value written back into the resolved config, field-named errors for
//! unknown keys, wrong types and impossible values, and no resume across a change.

use std::path::Path;

use directclr::data::augment::{KernelSize, RandomResizedCrop};
use directclr::data::{RecipeConfig, ViewConfig};
use directclr::train::{differing_fields, AugmentConfig, TrainConfig, ViewAugment};
use directclr::Error;

mod config_util;
use config_util::{field_of, MINIMAL};

fn parse(augment: &str) -> Result<TrainConfig, Error> {
    TrainConfig::from_toml(&format!("{MINIMAL}{augment}"), Path::new("a.toml"))
}

/// The authors' view `i` written out by hand from REFERENCE.md, at `size` px.
fn reference_view(i: usize, size: usize) -> ViewConfig {
    use directclr::data::augment::{
        ColorJitter, GaussianBlur, Interpolation, Normalize, RandomGrayscale, RandomSolarize,
    };
    ViewConfig {
        crop: RandomResizedCrop {
            size,
            scale: (0.08, 1.0),
            ratio: (3.0 / 4.0, 4.0 / 3.0),
            interpolation: Interpolation::Bicubic,
        },
        flip_p: 0.5,
        color_jitter: ColorJitter {
            brightness: 0.4,
            contrast: 0.4,
            saturation: 0.2,
            hue: 0.1,
            p: 0.8,
        },
        grayscale: RandomGrayscale { p: 0.2 },
        blur: GaussianBlur {
            kernel: KernelSize::Fraction { fraction: 0.1 },
            sigma: (0.1, 2.0),
            p: [1.0, 0.1][i],
        },
        solarize: RandomSolarize {
            threshold: 128.0 / 255.0,
            p: [0.0, 0.2][i],
        },
        normalize: Normalize::IMAGENET,
    }
}

#[test]
fn without_the_table_the_recipe_is_the_authors_asymmetric_one() {
    let c = parse("").unwrap();
    assert_eq!(c.augment, AugmentConfig::authors());
    let checked = c.check().unwrap();
    let views = checked.recipe().views();
    assert_eq!(views, [reference_view(0, 32), reference_view(1, 32)]);
    // The same recipe as the data pipeline's own default at 32 px.
    assert_eq!(views, RecipeConfig::with_size(32).views.as_slice());
    // An empty table and empty view tables change nothing either.
    let c = parse("[augment]\n[augment.view1]\n[augment.view2]\n").unwrap();
    assert_eq!(c.augment, AugmentConfig::authors());
}

#[test]
fn given_keys_replace_the_authors_values_of_that_view_only() {
    let c = parse(
        r#"
[augment.view1]
crop = { scale = [0.2, 1.0] }
flip_p = 0.0
color_jitter = { p = 0.5, hue = 0.0 }
blur = { kernel = { fixed = { size = 3 } } }
[augment.view2]
solarize = { p = 0.0 }
grayscale = { p = 1.0 }
normalize = { mean = [0.5, 0.5, 0.5], std = [0.5, 0.5, 0.5] }
"#,
    )
    .unwrap();
    let views = c.clone().check().unwrap().recipe().views().to_vec();
    let mut v1 = reference_view(0, 32);
    v1.crop.scale = (0.2, 1.0);
    v1.flip_p = 0.0;
    v1.color_jitter.p = 0.5;
    v1.color_jitter.hue = 0.0;
    v1.blur.kernel = KernelSize::Fixed { size: 3 };
    let mut v2 = reference_view(1, 32);
    v2.solarize.p = 0.0;
    v2.grayscale.p = 1.0;
    v2.normalize.mean = [0.5; 3];
    v2.normalize.std = [0.5; 3];
    assert_eq!(views, [v1, v2]);
    // The crop side follows data.image_size.
    let mut big = c;
    big.data.image_size = 96;
    let views = big.check().unwrap().recipe().views().to_vec();
    assert_eq!((views[0].crop.size, views[1].crop.size), (96, 96));
}

#[test]
fn the_resolved_config_holds_every_value_and_reads_back_equal() {
    let c = parse("[augment.view2]\nblur = { p = 0.3 }\n").unwrap();
    let text = c.to_toml().unwrap();
    for key in [
        "[augment.view1]",
        "[augment.view2]",
        "flip_p = 0.5",
        "scale = [",
        "brightness = 0.4",
        "p = 0.3",
        "interpolation = \"bicubic\"",
    ] {
        assert!(text.contains(key), "`{key}` missing from\n{text}");
    }
    let back = TrainConfig::from_toml(&text, Path::new("config.toml")).unwrap();
    assert_eq!(back, c);
    assert_eq!(back.augment.view2.blur.p, 0.3); // shortest decimal written, read back: exact
    assert_eq!(back.augment.view1, ViewAugment::authors(0));
}

#[test]
fn unknown_keys_and_wrong_types_name_the_dotted_field() {
    let cases = [
        ("[augment.view1]\nflip = 0.5\n", "augment.view1.flip"),
        (
            "[augment.view2]\ncolor_jitter = { strength = 1.0 }\n",
            "augment.view2.color_jitter.strength",
        ),
        (
            "[augment.view1]\nflip_p = \"half\"\n",
            "augment.view1.flip_p",
        ),
        (
            "[augment.view1]\ncolor_jitter = { p = \"x\" }\n",
            "augment.view1.color_jitter.p",
        ),
        (
            "[augment.view2]\ncrop = { scale = [0.5] }\n",
            "augment.view2.crop.scale",
        ),
        (
            "[augment.view1]\nblur = { kernel = { fixed = { size = 3, fraction = 0.1 } } }\n",
            "augment.view1.blur.kernel",
        ),
    ];
    for (text, field) in cases {
        let got = field_of(parse(text).unwrap_err());
        assert!(
            got.starts_with(field),
            "{text}: got `{got}`, want `{field}`"
        );
    }
    // A third view is not a key of the table.
    let got = field_of(parse("[augment.view3]\nflip_p = 0.5\n").unwrap_err());
    assert!(got.contains("view3"), "got `{got}`");
}

#[test]
fn impossible_values_name_their_field_at_check() {
    let cases = [
        ("[augment.view1]\nflip_p = 1.5\n", "augment.view1.flip_p"),
        (
            "[augment.view2]\ncolor_jitter = { hue = 0.7 }\n",
            "augment.view2.color_jitter.hue",
        ),
        (
            "[augment.view1]\ncolor_jitter = { brightness = -0.1 }\n",
            "augment.view1.color_jitter.brightness",
        ),
        (
            "[augment.view1]\ncolor_jitter = { p = nan }\n",
            "augment.view1.color_jitter.p",
        ),
        (
            "[augment.view2]\ngrayscale = { p = -0.2 }\n",
            "augment.view2.grayscale.p",
        ),
        (
            "[augment.view1]\nblur = { sigma = [0.0, 1.0] }\n",
            "augment.view1.blur.sigma",
        ),
        (
            "[augment.view1]\nblur = { kernel = { fixed = { size = 4 } } }\n",
            "augment.view1.blur.kernel.size",
        ),
        (
            "[augment.view2]\nblur = { p = 2.0 }\n",
            "augment.view2.blur.p",
        ),
        (
            "[augment.view2]\nsolarize = { threshold = 2.0 }\n",
            "augment.view2.solarize.threshold",
        ),
        (
            "[augment.view1]\ncrop = { scale = [0.5, 0.2] }\n",
            "augment.view1.crop.scale",
        ),
        (
            "[augment.view1]\ncrop = { ratio = [0.0, 1.0] }\n",
            "augment.view1.crop.ratio",
        ),
        (
            "[augment.view2]\nnormalize = { std = [0.2, 0.0, 0.2] }\n",
            "augment.view2.normalize.std",
        ),
    ];
    for (text, field) in cases {
        let c = parse(text).unwrap_or_else(|e| panic!("{text}: {e}"));
        assert_eq!(field_of(c.check().unwrap_err()), field, "{text}");
    }
}

#[test]
fn a_changed_augmentation_forbids_resuming_the_run() {
    let a = parse("").unwrap();
    let b = parse("[augment.view2]\nsolarize = { p = 0.5 }\n").unwrap();
    assert_eq!(
        differing_fields(&a, &b).unwrap(),
        vec!["augment.view2.solarize.p"]
    );
    // A folder written before the table existed resumes under the defaults.
    assert!(differing_fields(&a, &parse("[augment]\n").unwrap())
        .unwrap()
        .is_empty());
}

#[test]
fn f32_settings_are_written_by_their_shortest_decimal_and_read_back_exactly() {
    let text = parse("").unwrap().to_toml().unwrap();
    assert!(
        text.contains("0.485,") && text.contains("0.229,") && !text.contains("0.48500001"),
        "{text}"
    );
    // The solarisation threshold 128/255 is written as its shortest f32 decimal.
    assert!(text.contains("threshold = 0.5019608\n"), "{text}");
    let back = TrainConfig::from_toml(&text, Path::new("config.toml")).unwrap();
    assert_eq!(back.augment, parse("").unwrap().augment);
    // Any f32 survives the shortest decimal → nearest f64 → f32 round trip, bit for bit.
    use directclr::data::augment::short_f32::widen;
    use rand::{Rng, SeedableRng};
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
    for _ in 0..200_000 {
        let v = f32::from_bits(rng.gen::<u32>());
        if v.is_finite() {
            assert_eq!((widen(v) as f32).to_bits(), v.to_bits(), "{v:e}");
        }
    }
    for v in [
        0.0f32,
        -0.0,
        1.0,
        128.0 / 255.0,
        f32::MIN_POSITIVE,
        f32::MAX,
        1e-45,
    ] {
        assert_eq!((widen(v) as f32).to_bits(), v.to_bits(), "{v:e}");
    }
}
