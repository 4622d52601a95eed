//! Figures printed by benchmarks.

/// Prints min/median/max of `samples` (seconds), for benchmarks.
pub fn summary(name: &str, samples: &[f64]) {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let median = if sorted.len() % 2 == 1 {
        sorted[sorted.len() / 2]
    } else {
        (sorted[sorted.len() / 2 - 1] + sorted[sorted.len() / 2]) / 2.0
    };
    println!(
        "{name:<58} runs={} min={:.2}s median={:.2}s max={:.2}s  [{}]",
        sorted.len(),
        sorted[0],
        median,
        sorted[sorted.len() - 1],
        samples
            .iter()
            .map(|s| format!("{s:.2}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
}
