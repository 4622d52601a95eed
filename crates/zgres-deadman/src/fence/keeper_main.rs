//! The fence keeper process's own loop (`zgres-deadman --fence-keeper`): it enforces the
//! deadline the deadman sends it, and fences at once if the deadman dies while armed.

use std::io::{BufRead, Write};
use std::time::Duration;

use super::board::{DeadlineBoard, BOARD_OFF_LINE};
use super::instance::{kill_instance, KnownInstance};
use super::{ask_fast_shutdown, monotonic_ns, FenceState, FenceStep};

/// How soon the keeper reads a new postmaster's directory again ([`KnownInstance::pending`]).
const LEARN_RETRY: Duration = Duration::from_millis(20);

/// What the reader thread passes on from the keeper's input.
enum Input {
    /// A new fence state.
    State(FenceState),
    /// The deadman stopped writing the board: go by lines alone from now on.
    BoardOff,
    /// The input closed: the deadman is gone (or done).
    Closed,
}

/// The fence keeper process's main loop: reads protocol lines from `input` until EOF, kills
/// the armed process group when its deadline passes, and at once if `input` closes while armed
/// (the deadman died). With a `board`, the deadline is the later of the last line's and the
/// board's, read whenever the keeper wakes (see [`super::board`]). Returns how many times it
/// fenced.
pub fn run_keeper(
    input: impl BufRead + Send + 'static,
    mut board: Option<DeadlineBoard>,
    mut log: impl Write,
) -> u64 {
    let (tx, rx) = std::sync::mpsc::channel::<Input>();
    // Reading is blocking; a reader thread turns it into messages the timer loop can wait on.
    std::thread::spawn(move || {
        for line in input.lines() {
            let Ok(line) = line else { break };
            let message = if line == BOARD_OFF_LINE.trim_end() {
                Input::BoardOff
            } else if let Some(state) = FenceState::from_keeper_line(&line) {
                Input::State(state)
            } else {
                continue;
            };
            if tx.send(message).is_err() {
                return;
            }
        }
        let _ = tx.send(Input::Closed);
    });
    let mut current: Option<FenceState> = None;
    // The deadline for which the fast shutdown was asked for (once per deadline).
    let mut demoted_for = None;
    let mut fenced = 0;
    // The armed target's data directory, read while its postmaster lives: when the deadman dies
    // its guardian takes the postmaster down with it, and the backends left must still go.
    let mut known = KnownInstance::default();
    loop {
        if let Some(s) = current.filter(|s| s.armed) {
            known.learn(s.pgid);
        }
        // Confirmations since the last line: the board holds the deadline in force.
        current = current.map(|s| s.with_board_deadline(board.as_ref().and_then(|b| b.read())));
        let now = monotonic_ns();
        let step = current.map_or(FenceStep::Idle, |s| s.step(now, demoted_for));
        let mut wait = match step {
            // Only a message or the board can move the deadline; the board is read on waking.
            FenceStep::WaitUntil(at) => Duration::from_nanos(at.saturating_sub(now)),
            FenceStep::Idle => Duration::from_secs(3600),
            FenceStep::Demote | FenceStep::Kill => Duration::ZERO,
        };
        if current.is_some_and(|s| s.armed && known.pending(s.pgid)) {
            // A postmaster just started: its directory shows once `setpriv` executed
            // `postgres`, and must be read before a deadman's death takes it down.
            wait = wait.min(LEARN_RETRY);
        }
        if let (Some(s), FenceStep::Demote) = (current, step) {
            demoted_for = Some(s.deadline_ns);
            if ask_fast_shutdown(s.pgid) {
                let _ = writeln!(
                    log,
                    "zgres fence keeper: session not confirmed; fast shutdown of PostgreSQL {} ({} ms before the deadline)",
                    s.pgid,
                    s.deadline_ns.saturating_sub(now) / 1_000_000
                );
            }
            continue;
        }
        if let (Some(s), FenceStep::Kill) = (current, step) {
            fenced += kill(s, &known, "deadline passed", &mut log);
            current = None;
            continue;
        }
        match rx.recv_timeout(wait) {
            Ok(Input::State(state)) => current = Some(state),
            Ok(Input::BoardOff) => board = None,
            Ok(Input::Closed) | Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                if let Some(s) = current.filter(|s| s.armed) {
                    fenced += kill(s, &known, "deadman gone while armed", &mut log);
                }
                return fenced;
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
        }
    }
}

/// Kills PostgreSQL whole (its postmaster's group and the instance's other processes, see
/// [`super::instance`]) and says so; 1 if something was killed.
fn kill(s: FenceState, known: &KnownInstance, why: &str, log: &mut dyn Write) -> u64 {
    let now = monotonic_ns();
    let killed = kill_instance(s.pgid, known.dir(s.pgid));
    if killed.any() {
        let _ = writeln!(
            log,
            "zgres fence keeper: {why}; killed PostgreSQL group {} and {} of its processes outside it (instance in {}; deadline {} ns, now {} ms past it)",
            s.pgid,
            killed.strays,
            killed.dir.as_deref().map_or("an unknown directory".into(), |d| d.display().to_string()),
            s.deadline_ns,
            now.saturating_sub(s.deadline_ns) / 1_000_000
        );
        1
    } else {
        let _ = writeln!(
            log,
            "zgres fence keeper: {why}; PostgreSQL group {} already gone, nothing killed",
            s.pgid
        );
        0
    }
}
