//! Times the Section 5 toy run (L = 2, 10,000 steps, batch 128, f32) without measurements, in
//! process: `cargo run --release --example toy_step [steps]`.
use directclr::theory::{train, ToyConfig};

fn main() {
    let steps = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10_000);
    let mut c = ToyConfig::implicit_regularization(2);
    c.steps = steps;
    c.log_every = steps;
    let start = std::time::Instant::now();
    let run = train(&c).expect("the paper's settings are valid");
    let s = start.elapsed().as_secs_f64();
    println!(
        "{steps} steps in {s:.3} s ({:.1} µs/step), final loss {:?}",
        1e6 * s / steps as f64,
        run.last().loss
    );
}
