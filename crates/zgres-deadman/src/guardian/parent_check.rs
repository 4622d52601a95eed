//! Closing the parent-death race of PostgreSQL's start.
//!
//! `setpriv --pdeathsig=KILL` asks the kernel to kill PostgreSQL when its parent, the guardian,
//! dies — from the moment `setpriv` has made that call. A guardian killed between its spawn and
//! that call (a tiny window, wide on a loaded machine) would leave a postmaster nobody fences.
//! So `setpriv` runs a two-line shell after it: the shell's parent must still be the guardian
//! that started it (its pid in [`GUARDIAN_PID_VAR`]), or PostgreSQL is not started at all.
//! Once the check passed, the parent-death signal covers every later moment.

/// The environment variable through which the guardian tells the check its own pid.
pub const GUARDIAN_PID_VAR: &str = "ZGRES_GUARDIAN_PID";

/// The exit status of a start refused because the guardian was already gone.
pub const ORPHANED_EXIT: i32 = 70;

/// The check, a POSIX shell script; the program and its arguments follow as `"$@"` (never
/// parsed by the shell). Without the variable (not started by a guardian) it only runs them.
const SCRIPT: &str = "if [ -n \"${ZGRES_GUARDIAN_PID:-}\" ] && [ \"$PPID\" != \"$ZGRES_GUARDIAN_PID\" ]; then exit 70; fi\nunset ZGRES_GUARDIAN_PID\nexec \"$@\"";

/// `program_and_args` (what `setpriv` runs after its `--`) behind the check.
pub fn checked(program_and_args: Vec<String>) -> Vec<String> {
    let mut args = vec![
        "/bin/sh".to_owned(),
        "-c".to_owned(),
        SCRIPT.to_owned(),
        "zgres-postmaster".to_owned(),
    ];
    args.extend(program_and_args);
    args
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn run(guardian_pid: Option<u32>, marker: &std::path::Path) -> Option<i32> {
        let args = checked(vec![
            "/bin/sh".into(),
            "-c".into(),
            "touch \"$1\"".into(),
            "marker".into(),
            marker.display().to_string(),
        ]);
        let mut command = Command::new("setpriv");
        command.arg("--pdeathsig=KILL").arg("--").args(&args);
        command.env_remove(GUARDIAN_PID_VAR);
        if let Some(pid) = guardian_pid {
            command.env(GUARDIAN_PID_VAR, pid.to_string());
        }
        command.status().unwrap().code()
    }

    #[test]
    fn the_program_runs_when_its_parent_is_the_guardian_that_started_it() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        assert_eq!(run(Some(std::process::id()), &marker), Some(0));
        assert!(marker.exists());
    }

    /// Regression (CI, a loaded machine): the guardian was killed before `setpriv` set the
    /// parent-death signal, and the stand-in postmaster lived on, reparented. Here the
    /// variable names a pid that is not the parent, as it would after such a death.
    #[test]
    fn a_program_whose_guardian_is_already_gone_is_not_started() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        assert_eq!(
            run(Some(std::process::id() + 1_000_000), &marker),
            Some(ORPHANED_EXIT)
        );
        assert!(!marker.exists());
    }

    #[test]
    fn without_a_guardian_the_program_just_runs() {
        let dir = tempfile::tempdir().unwrap();
        let marker = dir.path().join("ran");
        assert_eq!(run(None, &marker), Some(0));
        assert!(marker.exists());
    }
}
