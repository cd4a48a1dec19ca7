//! The `[augment]` table of a run: the augmentations of the two views, the authors' asymmetric
//! recipe (REFERENCE.md) unless a field says otherwise.
//!
//! ```toml
//! [augment.view1]                        # only the fields that differ from the authors' view 1
//! crop = { scale = [0.2, 1.0] }
//! color_jitter = { p = 0.5 }
//! [augment.view2]
//! solarize = { p = 0.0 }
//! ```
//!
//! Each view is merged field by field over the authors' view of the same index (view 1: blur
//! p 1.0, solarize p 0.0; view 2: blur p 0.1, solarize p 0.2; both: crop scale 0.08–1 bicubic,
//! flip p 0.5, colour jitter (0.4, 0.4, 0.2, 0.1) with p 0.8, grayscale p 0.2, blur σ ∈ [0.1, 2],
//! ImageNet normalisation). Inside a sub-table (`crop`, `color_jitter`, `blur`, …) the keys given
//! replace the authors' and the others stay. The crop side is `data.image_size`, not set here.
//! The run folder's `config.toml` holds every value of both views.

use serde::de::{self, Deserializer};
use serde::{Deserialize, Serialize};

use crate::data::augment::{Interpolation, RandomResizedCrop};
use crate::data::{Recipe, RecipeConfig, ViewConfig};
use crate::{Error, Result};

/// The random resized crop of a view, without its side (`data.image_size`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CropAugment {
    /// Range of the crop's area as a fraction of the image's (torchvision's `scale`).
    pub scale: (f64, f64),
    /// Range of the crop's aspect ratio, width / height (torchvision's `ratio`).
    pub ratio: (f64, f64),
    /// Resampling filter.
    pub interpolation: Interpolation,
}

/// The augmentations of one view as a run's configuration holds them: the data pipeline's
/// [`ViewConfig`] with a crop without its side (`data.image_size`).
pub type ViewAugment = ViewConfig<CropAugment>;

impl ViewAugment {
    /// The authors' view 1 (`index` 0) or view 2 (`index` 1).
    pub fn authors(index: usize) -> Self {
        let v = match index {
            0 => ViewConfig::byol(1.0, 0.0),
            _ => ViewConfig::byol(0.1, 0.2),
        };
        v.with_crop(|c| CropAugment {
            scale: c.scale,
            ratio: c.ratio,
            interpolation: c.interpolation,
        })
    }

    /// The data pipeline's view with crops of `size` px.
    pub fn view(&self, size: usize) -> ViewConfig {
        self.with_crop(|c| RandomResizedCrop {
            size,
            scale: c.scale,
            ratio: c.ratio,
            interpolation: c.interpolation,
        })
    }
}

/// The `[augment]` table: one [`ViewAugment`] per view. Deserialising merges the given keys
/// over [`AugmentConfig::authors`]; unknown keys and wrong types are errors whose message
/// starts with the dotted field (`augment.view2.blur.p: …`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct AugmentConfig {
    /// The first view.
    pub view1: ViewAugment,
    /// The second view.
    pub view2: ViewAugment,
}

impl Default for AugmentConfig {
    fn default() -> Self {
        Self::authors()
    }
}

impl AugmentConfig {
    /// The authors' asymmetric recipe.
    pub fn authors() -> Self {
        AugmentConfig {
            view1: ViewAugment::authors(0),
            view2: ViewAugment::authors(1),
        }
    }

    /// Validates both views at crops of `size` px into the loader's recipe. Impossible values
    /// are [`Error::InvalidConfig`] naming the field, e.g. `augment.view1.color_jitter.p`.
    pub fn recipe(&self, size: usize) -> Result<Recipe> {
        let views = vec![self.view1.view(size), self.view2.view(size)];
        for (i, v) in views.iter().enumerate() {
            v.check(&format!("augment.view{}", i + 1))
                .map_err(|e| match e {
                    crate::data::DataError::InvalidParameter { field, reason } => {
                        Error::config(field, reason)
                    }
                    other => other.into(),
                })?;
        }
        RecipeConfig { views }.check().map_err(Error::from)
    }
}

/// Splits an error message written by [`AugmentConfig`]'s or
/// [`crate::model::EncoderConfig`]'s deserialiser into (field, reason).
pub(crate) fn field_of_message(message: &str) -> Option<(&str, &str)> {
    let (field, reason) = message.split_once(": ")?;
    ((field.starts_with("augment.") || field.starts_with("model."))
        && !field.contains(char::is_whitespace))
    .then_some((field, reason))
}

impl<'de> Deserialize<'de> for AugmentConfig {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Raw {
            #[serde(default)]
            view1: Option<toml::Table>,
            #[serde(default)]
            view2: Option<toml::Table>,
        }
        let raw = Raw::deserialize(d)?;
        let base = AugmentConfig::authors();
        Ok(AugmentConfig {
            view1: merge(&base.view1, raw.view1, "augment.view1")?,
            view2: merge(&base.view2, raw.view2, "augment.view2")?,
        })
    }
}

/// `given` over `base`, two levels deep: a key of the view replaces the authors' value, or, for
/// a sub-table, the keys it gives replace theirs. Errors name the dotted field under `prefix`.
fn merge<E: de::Error>(
    base: &ViewAugment,
    given: Option<toml::Table>,
    prefix: &str,
) -> std::result::Result<ViewAugment, E> {
    let Some(given) = given else {
        return Ok(*base);
    };
    let fail = |field: String, reason: String| E::custom(format!("{field}: {reason}"));
    let mut table = match toml::Value::try_from(base) {
        Ok(toml::Value::Table(t)) => t,
        other => {
            return Err(fail(
                prefix.to_string(),
                format!("the authors' view does not serialise as a table ({other:?})"),
            ))
        }
    };
    let expected = |t: &toml::Table| t.keys().cloned().collect::<Vec<_>>().join(", ");
    for (key, value) in given {
        let field = format!("{prefix}.{key}");
        let Some(slot) = table.get_mut(&key) else {
            return Err(fail(
                field,
                format!("unknown field, expected one of: {}", expected(&table)),
            ));
        };
        match (slot, value) {
            (toml::Value::Table(old), toml::Value::Table(new)) => {
                for (k, v) in new {
                    if !old.contains_key(&k) {
                        return Err(fail(
                            format!("{field}.{k}"),
                            format!("unknown field, expected one of: {}", expected(old)),
                        ));
                    }
                    old.insert(k, v);
                }
            }
            (slot, value) => *slot = value,
        }
    }
    serde_path_to_error::deserialize(toml::Value::Table(table)).map_err(|e| {
        let path = e.path().to_string();
        let field = if path == "." || path.is_empty() {
            prefix.to_string()
        } else {
            format!("{prefix}.{path}")
        };
        fail(field, e.into_inner().to_string())
    })
}
