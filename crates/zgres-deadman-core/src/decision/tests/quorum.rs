//! Elections under a `/sync` quorum claim (`ANY k`, or a change of standbys under way).

use super::*;

fn synchronous() -> GroupConfig {
    GroupConfig {
        synchronous_mode: zgres_schema::documents::SyncMode::On,
        ..GroupConfig::default()
    }
}

fn claim(standbys: &[u8], quorum: u32) -> Fetched<SyncState> {
    Fetched::Valid(SyncState {
        primary: node(9),
        standbys: standbys.iter().copied().map(node).collect(),
        quorum: Some(quorum),
    })
}

#[test]
fn under_any_1_of_2_a_standby_takes_over_only_when_it_sees_the_other_behind_it() {
    let t = Instant::now();
    let sync = claim(&[1, 2], 1);
    let run = |mine: u64, peers: Vec<Peer>, at: Instant| {
        let mut d = decider(1);
        // The lock was seen held, then free from `t` on: the election clock starts there.
        d.decide(&obs(
            t,
            LockView::Other(Some(node(9))),
            standby(mine),
            vec![],
        ));
        let mut o = obs(t, LockView::Free, standby(mine), peers);
        o.config = synchronous();
        o.sync = sync.clone();
        if at > t {
            d.decide(&o);
            o.now = at;
        }
        let acquires = d.decide(&o).contains(&Action::AcquireLock);
        (acquires, d.last_ineligible())
    };
    let waited = t + Duration::from_secs(3);
    // Node 2 behind: node 1 has every commit node 2 has, so every acknowledged one.
    assert_eq!(
        run(500, vec![fresh(peer_state(2, Role::Replica, 400))], t),
        (true, None)
    );
    // Node 2 ahead: it is the better candidate, not node 1.
    assert!(!run(500, vec![fresh(peer_state(2, Role::Replica, 600))], t).0);
    // Node 2 unseen (or its state older than the lock's end): a commit may be only on it.
    // Waiting at first, then a lasting reason (a request naming node 1 is dropped).
    assert_eq!(
        run(500, vec![], t),
        (false, Some(Ineligible::WaitingForPeers))
    );
    assert_eq!(
        run(500, vec![], waited),
        (false, Some(Ineligible::QuorumUnseen))
    );
    assert!(Ineligible::QuorumUnseen.lasts_while_the_lock_is_free());
    let stale = Peer {
        state: peer_state(2, Role::Replica, 400),
        fresh: false,
    };
    assert!(!run(500, vec![stale], waited).0);
}

/// Found by `zgres-sim` (seed 80, `on` mode, replication cuts and failover requests): while the
/// primary widened `/sync` to a new standby before naming it (holders 0), the primary died and
/// an operator's failover named that standby. It counted as listed but unseen, a passing
/// reason, so the request held the old primary (the only node allowed) back for 23 s. A claim
/// with no holders says nothing of its standbys: it is a lasting "not synchronous".
#[test]
fn a_standby_listed_in_a_claim_of_no_holders_is_not_synchronous() {
    let t = Instant::now();
    let mut d = decider(2);
    let mut o = obs(
        t,
        LockView::Free,
        standby(900),
        vec![fresh(peer_state(1, Role::Replica, 100))],
    );
    o.config = synchronous();
    o.sync = claim(&[2], 0);
    assert!(!d.decide(&o).contains(&Action::AcquireLock));
    assert_eq!(d.last_ineligible(), Some(Ineligible::NotSynchronous));
}
