//! Which operator callback a change of the local PostgreSQL calls for (Patroni's `on_start`,
//! `on_stop`, `on_role_change`).
//!
//! Decided from what the rounds observe, not from the deadman's own actions, so that a
//! PostgreSQL stopped by the fence, crashed, or promoted by anyone is reported the same way
//! as one the deadman started or stopped: a script that moves a virtual IP sees every change.

/// A callback, by the name the program gets as its first argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackAction {
    /// PostgreSQL started and answers.
    OnStart,
    /// PostgreSQL stopped (by the deadman, the fence, or a crash).
    OnStop,
    /// PostgreSQL re-read its configuration at the deadman's request.
    OnReload,
    /// PostgreSQL changed between primary and replica while running.
    OnRoleChange,
}

impl CallbackAction {
    /// The name passed to the program (`on_start`, ...).
    pub fn name(self) -> &'static str {
        match self {
            CallbackAction::OnStart => "on_start",
            CallbackAction::OnStop => "on_stop",
            CallbackAction::OnReload => "on_reload",
            CallbackAction::OnRoleChange => "on_role_change",
        }
    }
}

/// The role passed to a callback as its second argument.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallbackRole {
    /// Accepts writes (`primary`, Patroni 4's name).
    Primary,
    /// In recovery (`replica`).
    Replica,
}

impl CallbackRole {
    /// The name passed to the program.
    pub fn name(self) -> &'static str {
        match self {
            CallbackRole::Primary => "primary",
            CallbackRole::Replica => "replica",
        }
    }
}

/// What the local PostgreSQL was last seen doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Running {
    /// Not running.
    Stopped,
    /// Running and answering in this role.
    As(CallbackRole),
}

/// The callback due when PostgreSQL goes from `before` to `now`, and the phase to remember.
/// `now` is `None` while PostgreSQL runs but does not answer yet (starting, recovering): that
/// changes nothing until it answers or stops.
pub fn due(
    before: Running,
    now: Option<Running>,
) -> (Option<(CallbackAction, CallbackRole)>, Running) {
    let Some(now) = now else {
        return (None, before);
    };
    let event = match (before, now) {
        (Running::Stopped, Running::As(role)) => Some((CallbackAction::OnStart, role)),
        (Running::As(role), Running::Stopped) => Some((CallbackAction::OnStop, role)),
        (Running::As(old), Running::As(new)) if old != new => {
            Some((CallbackAction::OnRoleChange, new))
        }
        _ => None,
    };
    (event, now)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const PRIMARY: Running = Running::As(CallbackRole::Primary);
    const REPLICA: Running = Running::As(CallbackRole::Replica);

    #[test]
    fn each_change_calls_its_callback() {
        use CallbackAction::*;
        use CallbackRole::*;
        let cases = [
            (Running::Stopped, Some(REPLICA), Some((OnStart, Replica))),
            (REPLICA, Some(PRIMARY), Some((OnRoleChange, Primary))),
            (PRIMARY, Some(Running::Stopped), Some((OnStop, Primary))),
            (PRIMARY, Some(REPLICA), Some((OnRoleChange, Replica))),
            (PRIMARY, Some(PRIMARY), None),
            (Running::Stopped, Some(Running::Stopped), None),
            // Not answering yet: nothing, and the last known phase is kept.
            (PRIMARY, None, None),
        ];
        for (before, now, expected) in cases {
            assert_eq!(due(before, now).0, expected, "{before:?} -> {now:?}");
        }
        assert_eq!(due(PRIMARY, None).1, PRIMARY);
    }

    fn phase() -> impl Strategy<Value = Option<Running>> {
        prop_oneof![
            Just(None),
            Just(Some(Running::Stopped)),
            Just(Some(PRIMARY)),
            Just(Some(REPLICA)),
        ]
    }

    proptest! {
        /// Whatever PostgreSQL does, a script sees starts and stops alternate, every role it is
        /// told is the role PostgreSQL was seen in, and the last role it was told is the current
        /// one while PostgreSQL runs.
        #[test]
        fn starts_and_stops_alternate_and_the_last_role_told_is_current(
            phases in proptest::collection::vec(phase(), 0..40)
        ) {
            let mut seen = Running::Stopped;
            let mut running_told = false;
            let mut last_role = None;
            for now in phases {
                let (event, next) = due(seen, now);
                if let Some((action, role)) = event {
                    match action {
                        CallbackAction::OnStart => {
                            prop_assert!(!running_told);
                            running_told = true;
                        }
                        CallbackAction::OnStop => {
                            prop_assert!(running_told);
                            prop_assert_eq!(Some(role), last_role);
                            running_told = false;
                        }
                        CallbackAction::OnRoleChange => prop_assert!(running_told),
                        CallbackAction::OnReload => prop_assert!(false, "not decided here"),
                    }
                    if action != CallbackAction::OnStop {
                        last_role = Some(role);
                    }
                }
                seen = next;
                if let Running::As(role) = seen {
                    prop_assert!(running_told);
                    prop_assert_eq!(last_role, Some(role));
                }
            }
        }
    }
}
