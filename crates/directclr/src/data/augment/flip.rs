//! Horizontal flip (torchvision's `RandomHorizontalFlip`). In the pipeline the flip is folded
//! into the resampling weights of the crop at no cost; this is the stand-alone form.

/// Mirrors each row in place.
///
/// # Shapes
/// `img`: `[c, h, w]` planar, `w` columns.
pub fn hflip<T>(img: &mut [T], width: usize) {
    if width == 0 {
        return;
    }
    for row in img.chunks_exact_mut(width) {
        row.reverse();
    }
}
