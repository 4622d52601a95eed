//! Figures printed by benchmarks.

/// Prints min/median/max of `samples` (seconds), for benchmarks.
pub fn summary(name: &str, samples: &[f64]) {
    if samples.is_empty() {
        println!("{name:<58} runs=0");
        return;
    }
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

/// The nearest-rank `p`-th percentile (0 < p <= 100) of `samples`, which must not be empty.
pub fn percentile(samples: &[f64], p: f64) -> f64 {
    let mut sorted = samples.to_vec();
    sorted.sort_by(f64::total_cmp);
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// Prints p50, p99 and max of `samples` (seconds), for benchmarks.
pub fn percentiles(name: &str, samples: &[f64]) {
    if samples.is_empty() {
        println!("{name:<58} runs=0");
        return;
    }
    println!(
        "{name:<58} runs={} p50={:.3}s p99={:.3}s max={:.3}s",
        samples.len(),
        percentile(samples, 50.0),
        percentile(samples, 99.0),
        percentile(samples, 100.0),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let samples: Vec<f64> = (1..=10).map(f64::from).collect();
        assert_eq!(percentile(&samples, 50.0), 5.0);
        assert_eq!(percentile(&samples, 99.0), 10.0);
        assert_eq!(percentile(&samples, 10.0), 1.0);
        assert_eq!(percentile(&[3.0], 99.0), 3.0);
    }
}
