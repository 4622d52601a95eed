//! A lock holder whose PostgreSQL runs but stops answering (hung storage, SIGSTOP): the
//! restart bound runs from its last answer.

use super::*;

fn hung() -> LocalPostgres {
    LocalPostgres {
        probe: None,
        streaming: None,
        ..primary()
    }
}

/// The round in which PostgreSQL hung may wait on it for seconds after the probe (each
/// statement gets up to 3 s), and the next probe gives up only 3 s later: seen 6.5 s after
/// its last answer, a hung primary must not get another full bound from then.
#[test]
fn a_hung_primary_gives_the_lock_up_within_the_bound_of_its_last_answer() {
    let t = Instant::now();
    let at = |ms: u64| t + Duration::from_millis(ms);
    let mut d = decider(1);
    assert_eq!(d.decide(&obs(t, LockView::Ours, primary(), vec![])), []);
    let first_silence = d.decide_round(
        &obs(at(6_500), LockView::Ours, hung(), vec![]),
        RoundInputs::default(),
    );
    assert_eq!(first_silence.actions, []);
    assert_eq!(
        first_silence.wake_at,
        Some(at(10_000)),
        "the bound (10 s in these tests) runs out 10 s after the last answer"
    );
    assert_eq!(
        d.restart_bound_ends(),
        Some(at(10_000)),
        "the shell's next probe waits until then at most, not a whole query timeout"
    );
    assert_eq!(
        d.decide(&obs(at(9_500), LockView::Ours, hung(), vec![])),
        []
    );
    assert_eq!(
        d.decide(&obs(at(10_000), LockView::Ours, hung(), vec![])),
        [
            Action::StopPostgres {
                immediate: true,
                reason: "primary did not come back within the restart timeout",
            },
            Action::ReleaseLock { quiet: true },
        ]
    );
    assert_eq!(
        d.restart_bound_ends(),
        None,
        "nothing is timed once given up"
    );
}

/// A primary that answered, then was seen stopped (a crash wakes the deadman at once) and
/// restarted, gets the whole bound from when it was seen down, however long its recovery is
/// silent; an answer from before a silent stretch of several rounds dates nothing.
#[test]
fn a_crashed_primary_gets_the_whole_bound_from_its_crash() {
    let t = Instant::now();
    let at = |ms: u64| t + Duration::from_millis(ms);
    let mut d = decider(1);
    assert_eq!(d.decide(&obs(t, LockView::Ours, primary(), vec![])), []);
    let down = stopped(DataDirKind::Primary);
    assert_eq!(
        d.decide(&obs(at(1_900), LockView::Ours, down, vec![])),
        [Action::StartPrimary]
    );
    assert_eq!(
        d.decide(&obs(at(2_500), LockView::Ours, hung(), vec![])),
        []
    );
    assert_eq!(
        d.decide(&obs(at(11_800), LockView::Ours, hung(), vec![])),
        []
    );
    assert_eq!(
        d.decide(&obs(at(11_900), LockView::Ours, hung(), vec![]))
            .last(),
        Some(&Action::ReleaseLock { quiet: true })
    );
}
