//! The qualitative results of Sections 4–5 at the paper's settings (seeded, CPU), and the
//! repeatability of the toy runs.

use directclr::theory::{
    experiments::{self, Overrides},
    train, NoiseSupport, ToyConfig,
};
use directclr::Error;

#[test]
fn runs_repeat_bit_for_bit_and_measuring_does_not_change_them() {
    let mut c = ToyConfig::implicit_regularization(2);
    c.steps = 300;
    c.samples = 1000;
    let a = train(&c).unwrap();
    let b = train(&c).unwrap();
    assert_eq!(a.weights, b.weights);
    assert_eq!(a.last().embedding_spectrum, b.last().embedding_spectrum);
    c.log_every = 7;
    let sparse = train(&c).unwrap();
    assert_eq!(
        a.weights, sparse.weights,
        "measurement frequency must not change the trajectory"
    );
    c.seed = 1;
    assert_ne!(train(&c).unwrap().weights, a.weights);
}

/// Theorem 1: with noise std 1.5 on the last 8 of 16 coordinates, X (Eqn 6) has 8 negative
/// eigenvalues, along (mostly) the noisy coordinates; exactly those directions of W shrink; the
/// embedding variance along the noisy coordinates falls by more than two orders of magnitude
/// relative to the clean ones and 8 embedding dimensions collapse (eigenvalue < 1e-2 × largest).
/// With std 0.01, X has no negative eigenvalue and nothing collapses.
#[test]
fn strong_augmentation_collapses_exactly_along_negative_directions_of_x() {
    let out = tempfile::tempdir().unwrap();
    let r =
        experiments::strong_augmentation(&[0.01, 1.5], 8, 1e-2, &Overrides::default(), out.path())
            .unwrap();
    let (weak, strong) = (&r.runs[0], &r.runs[1]);

    assert_eq!((weak.x_negative_initial, weak.x_negative_mean), (0, 0));
    assert_eq!(weak.decayed_directions, 0);
    assert!(
        (0.5..2.0).contains(&weak.noisy_to_clean_variance_final),
        "{}",
        weak.noisy_to_clean_variance_final
    );
    assert_eq!(
        weak.collapsed_final, weak.collapsed_initial,
        "no dimension collapses under weak noise"
    );

    assert_eq!(strong.x_negative_initial, 8);
    assert_eq!(strong.x_negative_mean, 8);
    assert_eq!(strong.decayed_directions, strong.x_negative_mean);
    assert_eq!(strong.negative_and_decayed, strong.x_negative_mean);
    assert!(
        strong.negative_eigenvectors_in_noisy_coordinates > 0.9,
        "{}",
        strong.negative_eigenvectors_in_noisy_coordinates
    );
    assert!(strong.noisy_to_clean_variance_final < 1e-2 * strong.noisy_to_clean_variance_initial);
    assert_eq!(strong.collapsed_final, strong.x_negative_mean);

    // The fixed-X closed form agrees with RK4 integration.
    assert!(
        r.fixed_x.rk4_relative_error < 1e-6,
        "{}",
        r.fixed_x.rk4_relative_error
    );
    for f in [
        "summary.json",
        "summary.csv",
        "final_spectra.png",
        "x_eigenvalues.png",
        "fixed_x.json",
        "noise-1.5/spectrum.csv",
        "noise-1.5/spectrum_evolution.png",
    ] {
        assert!(out.path().join(f).is_file(), "{f} written");
    }
}

/// Figure 6 and Section 5: one linear layer does not collapse; L = 2, 3, 4 collapse strictly
/// more dimensions (eigenvalue < 1e-4 × largest); L = 2 with ReLU collapses too. Two layers
/// align: the misalignment ‖[W1W1ᵀ, W2ᵀW2]‖/(‖W1W1ᵀ‖‖W2ᵀW2‖) falls at least 10-fold and A = V2ᵀU1
/// is closer to a signed permutation than a random orthogonal matrix (row dominance > 0.5;
/// about 0.35 for random 16×16).
#[test]
fn depth_collapses_more_and_layers_align() {
    let out = tempfile::tempdir().unwrap();
    let r = experiments::depth(4, 1e-4, &Overrides::default(), out.path()).unwrap();
    let collapsed: Vec<usize> = r.runs.iter().map(|run| run.collapsed).collect();
    assert_eq!(collapsed[0], 0, "L = 1 does not collapse: {collapsed:?}");
    assert!(
        collapsed[1] > 0 && collapsed[1] < collapsed[2] && collapsed[2] < collapsed[3],
        "{collapsed:?}"
    );
    assert!(collapsed[4] > 0, "L = 2 with ReLU collapses: {collapsed:?}");

    let r = experiments::implicit_regularization(
        2,
        1e-4,
        &Overrides::default(),
        &out.path().join("implicit"),
    )
    .unwrap();
    assert!(
        r.misalignment.1 < 0.1 * r.misalignment.0,
        "{:?}",
        r.misalignment
    );
    assert!(
        r.alignment_row_dominance > 0.5,
        "{}",
        r.alignment_row_dominance
    );
    assert!(r.collapsed.1 > 0);
    for f in [
        "alignment.png",
        "singular_values_w1.png",
        "singular_values_w2.png",
        "embedding_spectrum.png",
        "alignment_layer1.csv",
    ] {
        assert!(out.path().join("implicit").join(f).is_file(), "{f} written");
    }
}

#[test]
fn impossible_settings_are_refused_with_the_field_name() {
    let field_of = |c: ToyConfig| match train(&c) {
        Err(Error::InvalidConfig { field, .. }) => field,
        other => panic!("expected a config error, got {other:?}"),
    };
    let base = ToyConfig::strong_augmentation(1.0);
    assert_eq!(
        field_of(ToyConfig {
            batch: 20_000,
            ..base.clone()
        }),
        "batch"
    );
    assert_eq!(
        field_of(ToyConfig {
            noise_support: NoiseSupport::Last(17),
            ..base.clone()
        }),
        "noisy_dims"
    );
    assert_eq!(
        field_of(ToyConfig {
            lr: -1.0,
            ..base.clone()
        }),
        "lr"
    );
    assert_eq!(
        field_of(ToyConfig {
            temperature: f64::NAN,
            ..base.clone()
        }),
        "temperature"
    );
    assert_eq!(
        field_of(ToyConfig {
            steps: 0,
            ..base.clone()
        }),
        "steps"
    );
    assert_eq!(
        field_of(ToyConfig {
            noise_std: -0.1,
            ..base
        }),
        "noise_std"
    );
}
