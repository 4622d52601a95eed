use super::*;
use proptest::prelude::*;
use std::io::Write;

#[test]
fn fires_once_at_the_deadline_and_only_when_armed() {
    let clock = FenceClock::new(Duration::from_secs(3));
    clock.confirm(1_000);
    clock.set_target(42);
    let deadline = 1_000 + 3_000_000_000;
    assert_eq!(clock.due(deadline), None, "disarmed clocks never fire");
    clock.armed.store(true, Ordering::SeqCst);
    assert_eq!(clock.due(deadline - 1), None);
    assert_eq!(clock.due(deadline), Some(42));
    assert_eq!(clock.due(deadline + 1), None, "fires once per arming");
    assert_eq!(clock.fired_count(), 1);
}

#[test]
fn graceful_shutdown_is_due_once_per_deadline_before_the_kill() {
    let clock = FenceClock::new(Duration::from_millis(3_000));
    clock.confirm(1_000);
    clock.set_target(42);
    clock.armed.store(true, Ordering::SeqCst);
    let deadline = 1_000 + 3_000_000_000;
    let demote_at = deadline - 1_000_000_000;
    assert!(clock.may_serve_as_primary(demote_at - 1));
    assert_eq!(clock.demote_due(demote_at - 1), None);
    assert!(
        !clock.may_serve_as_primary(demote_at),
        "no longer a primary for the API once the shutdown is due"
    );
    assert_eq!(clock.demote_due(demote_at), Some(42));
    assert_eq!(clock.demote_due(demote_at + 1), None, "asked once");
    assert_eq!(
        clock.due(deadline - 1),
        None,
        "the kill waits for the deadline"
    );
    // A confirmation moves the deadline: the node is a primary again, and may be demoted
    // again later.
    clock.confirm(2_000_000_000);
    assert!(clock.may_serve_as_primary(demote_at + 1));
    assert_eq!(clock.demote_due(2_000_000_000 + 2_000_000_000), Some(42));
    clock.set_target(0);
    assert!(!clock.may_serve_as_primary(0), "no PostgreSQL, no primary");
}

/// A log the test can read while the keeper writes it.
#[derive(Clone, Default)]
struct SharedLog(Arc<std::sync::Mutex<Vec<u8>>>);

impl Write for SharedLog {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl SharedLog {
    fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}

#[test]
fn keeper_asks_for_a_fast_shutdown_then_kills_only_what_is_left() {
    use std::os::unix::process::CommandExt;
    use std::os::unix::process::ExitStatusExt;
    // `sleep` ends on SIGINT, as the postmaster does after a fast shutdown.
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
    let log = SharedLog::default();
    let keeper_log = log.clone();
    let keeper =
        std::thread::spawn(move || run_keeper(std::io::BufReader::new(reader), None, keeper_log));
    let deadline = monotonic_ns() + 600_000_000;
    writeln!(writer, "arm {deadline} {} 400000000", child.id()).unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        status.signal(),
        Some(libc_sigint()),
        "ended by the fast shutdown"
    );
    assert!(
        monotonic_ns() < deadline,
        "the shutdown was asked for before the deadline"
    );
    while !log.text().contains("nothing killed") {
        assert!(monotonic_ns() < deadline + 5_000_000_000, "{}", log.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(writer);
    assert_eq!(keeper.join().unwrap(), 0, "nothing was left to kill");
    let text = log.text();
    assert!(text.contains("fast shutdown of PostgreSQL"), "{text}");
    assert!(!text.contains("killed PostgreSQL"), "{text}");
}

/// A board and the keeper's own descriptor for it, as a spawned keeper gets it.
fn board_pair() -> (board::DeadlineBoard, board::DeadlineBoard) {
    let board = board::DeadlineBoard::create().unwrap();
    let shared = std::os::fd::IntoRawFd::into_raw_fd(board.share().unwrap());
    (board, board::DeadlineBoard::adopt(shared).unwrap())
}

/// The deadman writes confirmations to the board only: the keeper must go by the board's
/// later deadline (not fence at the last line's), and fence at the board's deadline once the
/// confirmations stop.
#[test]
fn keeper_goes_by_its_board_and_fences_when_it_stops_moving() {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    let (board, keeper_board) = board_pair();
    let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
    let log = SharedLog::default();
    let keeper_log = log.clone();
    let keeper = std::thread::spawn(move || {
        run_keeper(
            std::io::BufReader::new(reader),
            Some(keeper_board),
            keeper_log,
        )
    });
    let budget = 300_000_000;
    let first = monotonic_ns() + budget;
    board.post(first).unwrap();
    writeln!(writer, "arm {first} {} 0", child.id()).unwrap();
    // Confirmations for three budgets, on the board only.
    let confirming_until = monotonic_ns() + 3 * budget;
    let mut last = first;
    while monotonic_ns() < confirming_until {
        last = monotonic_ns() + budget;
        board.post(last).unwrap();
        assert!(
            child.try_wait().unwrap().is_none(),
            "fenced while the board's deadline was ahead: {}",
            log.text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let status = child.wait().unwrap();
    assert!(!status.success(), "killed once the board stopped moving");
    assert!(
        monotonic_ns() >= last,
        "not before the board's last deadline"
    );
    drop(writer);
    assert_eq!(keeper.join().unwrap(), 1);
    assert!(log.text().contains("deadline passed"), "{}", log.text());
}

/// After `board off` (the deadman could no longer write it) the keeper goes by lines alone:
/// a board left showing a later deadline does not postpone the fence.
#[test]
fn keeper_ignores_its_board_once_told_it_is_off() {
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    let (board, keeper_board) = board_pair();
    board.post(monotonic_ns() + 3_600_000_000_000).unwrap();
    let deadline = monotonic_ns() + 200_000_000;
    let input = format!("board off\narm {deadline} {} 0\n", child.id());
    let (reader, mut writer) = std::os::unix::net::UnixStream::pair().unwrap();
    writer.write_all(input.as_bytes()).unwrap();
    let keeper = std::thread::spawn(move || {
        run_keeper(
            std::io::BufReader::new(reader),
            Some(keeper_board),
            std::io::sink(),
        )
    });
    let give_up = monotonic_ns() + 10_000_000_000;
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if monotonic_ns() > give_up {
            let _ = child.kill();
            panic!("not fenced at the line's deadline: the board still counted");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(!status.success(), "killed at the line's deadline");
    drop(writer);
    assert_eq!(keeper.join().unwrap(), 1);
}

fn libc_sigint() -> i32 {
    Signal::SIGINT as i32
}

#[test]
fn cannot_arm_past_the_deadline() {
    let clock = FenceClock::new(Duration::from_millis(1));
    clock.confirm(monotonic_ns().saturating_sub(1_000_000_000));
    assert!(!clock.arm());
    clock.confirm(monotonic_ns());
    assert!(clock.arm());
}

#[test]
fn keeper_protocol_round_trips() {
    let s = FenceState {
        armed: true,
        deadline_ns: 123,
        pgid: 77,
        grace_ns: 40,
    };
    assert_eq!(FenceState::from_keeper_line(&s.to_keeper_line()), Some(s));
    assert_eq!(
        FenceState::from_keeper_line("arm 123 77"),
        Some(FenceState { grace_ns: 0, ..s }),
        "an older deadman's line: no graceful step"
    );
    assert_eq!(FenceState::from_keeper_line("garbage 1 2"), None);
    assert_eq!(FenceState::from_keeper_line("arm x 1"), None);
}

#[test]
fn keeper_fences_when_its_input_closes_while_armed() {
    // A process group we own and may kill: a sleeping child in its own group.
    use std::os::unix::process::CommandExt;
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .process_group(0)
        .spawn()
        .unwrap();
    let far = monotonic_ns() + 3_600_000_000_000;
    let input = format!("arm {far} {}\n", child.id());
    let fenced = run_keeper(std::io::Cursor::new(input), None, std::io::sink());
    assert_eq!(fenced, 1);
    let status = child.wait().unwrap();
    assert!(!status.success(), "the child was killed");
}

#[test]
fn keeper_does_nothing_after_disarm() {
    let far = monotonic_ns() + 3_600_000_000_000;
    let input = format!("arm {far} 999999\ndisarm\n");
    assert_eq!(
        run_keeper(std::io::Cursor::new(input), None, std::io::sink()),
        0
    );
}

proptest! {
    /// Whatever the order of confirmations and checks, the fence never lets an armed clock
    /// run past `max(confirmed) + budget` without firing.
    #[test]
    fn never_past_the_deadline_unfenced(
        events in proptest::collection::vec((any::<bool>(), 0u64..10_000), 1..50)
    ) {
        let budget = 1_000;
        let clock = FenceClock::new(Duration::from_nanos(budget));
        clock.armed.store(true, Ordering::SeqCst);
        let mut now = 0u64;
        let mut max_confirmed = 0u64;
        for (is_confirm, step) in events {
            now += step;
            if is_confirm {
                let sent = now.saturating_sub(step / 2);
                clock.confirm(sent);
                max_confirmed = max_confirmed.max(sent);
            } else {
                let fired = clock.due(now).is_some();
                if now >= max_confirmed + budget {
                    prop_assert!(fired || !clock.is_armed());
                } else {
                    prop_assert!(!fired);
                }
                if fired { return Ok(()); }
            }
        }
    }
}

/// Found by the simulator (`zgres-sim` seed 3 with member cuts and PostgreSQL hangs,
/// `ensemble_sync_limit` 20): a primary on a member cut from the ensemble's leader learnt its
/// session had expired when the member dropped it, opened a new one, and that session's
/// answers moved the deadline of the fence armed for the old one; its hung PostgreSQL was
/// never fenced and took writes beside the new primary once it thawed. An armed fence is
/// confirmed only by the session it was armed in; a resumed session is that session.
#[test]
fn an_armed_fence_is_confirmed_only_by_the_session_it_was_armed_in() {
    let clock = Arc::new(FenceClock::new(Duration::from_secs(3)));
    let first = SessionFence::for_session(clock.clone(), false);
    let now = monotonic_ns();
    assert!(first.confirm(now));
    assert!(clock.arm());
    let deadline = clock.deadline_ns();
    let resumed = SessionFence::for_session(clock.clone(), true);
    assert!(
        resumed.confirm(now + 1),
        "a resumed session is the same session"
    );
    assert_eq!(clock.deadline_ns(), deadline + 1);
    let fresh = SessionFence::for_session(clock.clone(), false);
    assert!(!fresh.confirm(now + 1_000_000_000));
    assert_eq!(
        clock.deadline_ns(),
        deadline + 1,
        "a new session proves nothing about the old one's lock"
    );
    assert!(
        first.confirm(now + 2),
        "the old session's own answers still count"
    );
    clock.disarm();
    assert!(
        fresh.confirm(now + 1_000_000_000),
        "disarmed: any session confirms"
    );
    assert!(clock.arm());
    assert!(fresh.confirm(now + 1_500_000_000));
    assert!(
        !first.confirm(now + 2_000_000_000),
        "armed in the new session: the old one no longer confirms"
    );
}
