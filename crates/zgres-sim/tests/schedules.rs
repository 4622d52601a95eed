//! The simulator as a test: random schedules break no invariant, the schedules that found bugs
//! stay fixed, and the checker finds a deliberately broken fence.

use zgres_sim::checker::Violation;
use zgres_sim::{run, Bug, Settings};

#[test]
fn random_schedules_with_overlapping_faults_break_no_invariant() {
    let settings = Settings::default();
    let mut promotions = 0;
    for seed in 1..=400 {
        let outcome = run(seed, settings);
        assert!(
            outcome.violations.is_empty(),
            "seed {seed}: {:?}\nfaults: {:?}",
            outcome.violations,
            outcome.faults
        );
        promotions += outcome.promotions;
    }
    // The faults do cause failovers (the schedules test something).
    assert!(
        promotions > 100,
        "only {promotions} promotions in 400 schedules"
    );
}

/// Seeds on which a standby that received WAL past the promoted replica's fork point never
/// followed the new primary again (fixed by rewinding a standby stuck behind the primary's
/// timeline; see `decision::divergence`).
#[test]
fn diverged_standby_seeds_recover() {
    for seed in [223, 372, 822, 978, 1284, 1963] {
        let outcome = run(seed, Settings::default());
        assert!(
            outcome.violations.is_empty(),
            "seed {seed}: {:?}",
            outcome.violations
        );
    }
}

#[test]
fn a_fence_that_waits_for_the_expiry_lets_two_primaries_write() {
    let settings = Settings {
        bug: Some(Bug::FenceFromExpiry),
        ..Settings::default()
    };
    let found = (1..=200).find_map(|seed| {
        run(seed, settings)
            .violations
            .into_iter()
            .find(|v| matches!(v, Violation::TwoWritablePrimaries { .. }))
    });
    assert!(
        found.is_some(),
        "the checker missed the broken fence in 200 schedules"
    );
}
