//! A standby whose next WAL is gone from the primary: reported, or wiped to be cloned again
//! when `reclone_on_missing_wal` allows it; never before the wait, and never while it moves.

use super::*;

/// Node 1, a standby of node 2 at `lsn`; node 2 the primary, keeping WAL from `oldest_kept`.
fn round(d: &mut Decider, now: Instant, lsn: u64, oldest_kept: u64) -> Decision {
    round_with(d, now, lsn, oldest_kept, false)
}

/// As [`round`], the standby restoring from an archive when `archive`.
fn round_with(
    d: &mut Decider,
    now: Instant,
    lsn: u64,
    oldest_kept: u64,
    archive: bool,
) -> Decision {
    let mut me = standby(lsn);
    me.probe.as_mut().unwrap().upstream = Some(node(2));
    me.probe.as_mut().unwrap().restores_from_archive = archive;
    following_primary_keeping(d, now, me, oldest_kept)
}

/// A round of node 1, running as `me`, following node 2, the primary, which keeps WAL from
/// `oldest_kept`.
fn following_primary_keeping(
    d: &mut Decider,
    now: Instant,
    me: LocalPostgres,
    oldest_kept: u64,
) -> Decision {
    let mut primary = peer_state(2, Role::Primary, 1 << 30);
    primary.wal.oldest_kept = Some(Lsn(oldest_kept));
    let o = obs(
        now,
        LockView::Other(Some(node(2))),
        me,
        vec![fresh(primary)],
    );
    d.decide_round(&o, RoundInputs::default())
}

fn wipes(decision: &Decision) -> bool {
    decision
        .actions
        .iter()
        .any(|a| matches!(a, Action::WipeDataDirectory { .. }))
}

fn reported(decision: &Decision) -> bool {
    decision
        .published
        .problems
        .iter()
        .any(|p| p.contains("gone from the primary"))
}

#[test]
fn a_standby_whose_wal_is_gone_is_reported_after_the_wait_and_not_wiped_by_default() {
    let t0 = Instant::now();
    let mut d = decider(1);
    let first = round(&mut d, t0, 100, 200);
    assert!(!reported(&first) && !wipes(&first));
    assert_eq!(
        first.wake_at,
        Some(t0 + MISSING_WAL_AFTER),
        "looks again when the wait ends"
    );
    let confirmed = round(&mut d, t0 + MISSING_WAL_AFTER, 100, 200);
    assert!(reported(&confirmed), "{:?}", confirmed.published);
    assert!(!wipes(&confirmed), "no data is deleted unless allowed");
    // Once it has what it needs (an operator re-cloned it, the primary kept older WAL), the
    // problem goes.
    let healed = round(&mut d, t0 + MISSING_WAL_AFTER * 2, 300, 200);
    assert!(!reported(&healed));
}

#[test]
fn with_reclone_allowed_it_is_wiped_once_confirmed() {
    let t0 = Instant::now();
    let mut d = decider(1);
    d.set_reclone(Reclone {
        on_missing_wal: true,
        ..Reclone::default()
    });
    assert!(!wipes(&round(&mut d, t0, 100, 200)));
    assert!(!wipes(&round(
        &mut d,
        t0 + MISSING_WAL_AFTER - Duration::from_millis(1),
        100,
        200
    )));
    let confirmed = round(&mut d, t0 + MISSING_WAL_AFTER, 100, 200);
    assert!(wipes(&confirmed), "{:?}", confirmed.actions);
}

#[test]
fn a_standby_that_moves_or_is_within_the_kept_wal_is_left_alone() {
    let t0 = Instant::now();
    let mut d = decider(1);
    d.set_reclone(Reclone {
        on_missing_wal: true,
        ..Reclone::default()
    });
    // Replaying its own pg_wal: it moves, so the wait starts over at every step.
    for step in 0..5u32 {
        let at = t0 + MISSING_WAL_AFTER * step;
        let decision = round(&mut d, at, 100 + u64::from(step), 200);
        assert!(!wipes(&decision) && !reported(&decision), "step {step}");
    }
    // At or past the oldest kept segment: nothing is missing, however long it stays.
    let mut d = decider(1);
    d.set_reclone(Reclone {
        on_missing_wal: true,
        ..Reclone::default()
    });
    for step in 0..3u32 {
        let decision = round(&mut d, t0 + MISSING_WAL_AFTER * step, 200, 200);
        assert!(!wipes(&decision) && !reported(&decision));
    }
}

#[test]
fn a_standby_with_a_restore_command_is_left_to_its_archive() {
    let t0 = Instant::now();
    let mut d = decider(1);
    d.set_reclone(Reclone {
        on_missing_wal: true,
        ..Reclone::default()
    });
    for step in 0..3u32 {
        let decision = round_with(&mut d, t0 + MISSING_WAL_AFTER * step, 100, 200, true);
        assert!(!wipes(&decision) && !reported(&decision), "step {step}");
    }
}

/// A running standby that does not answer yet (recovering, not consistent) whose own WAL ends
/// at `recovering_from`, the primary keeping WAL from `oldest_kept`.
fn recovering_round(
    d: &mut Decider,
    now: Instant,
    recovering_from: u64,
    oldest_kept: u64,
) -> Decision {
    let mut me = standby(0);
    me.probe = None;
    me.recovering_from = Some(Lsn(recovering_from));
    following_primary_keeping(d, now, me, oldest_kept)
}

#[test]
fn a_recovering_standby_whose_wal_is_gone_is_reported_and_wiped_when_allowed() {
    let t0 = Instant::now();
    let mut d = decider(1);
    assert!(!reported(&recovering_round(&mut d, t0, 100, 200)));
    let confirmed = recovering_round(&mut d, t0 + MISSING_WAL_AFTER, 100, 200);
    assert!(reported(&confirmed), "{:?}", confirmed.published);
    assert!(!wipes(&confirmed));

    let mut allowed = decider(1);
    allowed.set_reclone(Reclone {
        on_missing_wal: true,
        ..Reclone::default()
    });
    recovering_round(&mut allowed, t0, 100, 200);
    assert!(wipes(&recovering_round(
        &mut allowed,
        t0 + MISSING_WAL_AFTER,
        100,
        200
    )));
}

#[test]
fn a_recovering_standby_with_its_wal_at_hand_or_moving_is_left_to_recover() {
    let t0 = Instant::now();
    let mut d = decider(1);
    // Its own WAL reaches the primary's oldest: it can stream on from there.
    recovering_round(&mut d, t0, 300, 200);
    assert!(!reported(&recovering_round(
        &mut d,
        t0 + MISSING_WAL_AFTER,
        300,
        200
    )));
    // New segments keep arriving (streaming works): the wait starts over each time.
    let mut moving = decider(1);
    for step in 0..4u32 {
        let decision = recovering_round(
            &mut moving,
            t0 + MISSING_WAL_AFTER * step,
            100 + u64::from(step),
            1000,
        );
        assert!(!reported(&decision), "step {step}");
    }
}
