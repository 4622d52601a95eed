//! Talking to the operator at the terminal: confirmations, the editor, times given on the
//! command line.

use std::io::{BufRead, IsTerminal, Write};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{CtlError, Refusal, Usage};

/// Milliseconds since the epoch for `--scheduled`.
pub fn parse_scheduled(text: &str) -> Result<u64, Usage> {
    let scheduled = |source| Usage::Scheduled {
        text: text.to_owned(),
        source,
    };
    let at = match text.strip_prefix('+') {
        Some(offset) => humantime::parse_duration(offset)
            .map(|d| SystemTime::now() + d)
            .map_err(|e| scheduled(e.into()))?,
        None => humantime::parse_rfc3339_weak(text).map_err(|e| scheduled(e.into()))?,
    };
    Ok(at
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64))
}

/// Asks on the terminal; refuses when there is none (scripts say `--force`).
pub fn confirm(question: &str) -> Result<(), CtlError> {
    if !std::io::stdin().is_terminal() {
        return Err(Usage::NoTerminal {
            question: question.to_owned(),
        }
        .into());
    }
    eprint!("{question} [y/N] ");
    let _ = std::io::stderr().flush();
    let mut answer = String::new();
    let _ = std::io::stdin().lock().read_line(&mut answer);
    match answer.trim() {
        "y" | "Y" | "yes" => Ok(()),
        _ => Err(Refusal::Aborted.into()),
    }
}

/// Runs the operator's editor on `path` (no shell: the variable is split on whitespace).
pub async fn edit_file(path: &std::path::Path) -> Result<(), CtlError> {
    let editor = std::env::var("VISUAL")
        .or_else(|_| std::env::var("EDITOR"))
        .unwrap_or_else(|_| "vi".into());
    let mut words = editor.split_whitespace();
    let program = words.next().ok_or(Usage::EmptyEditor)?;
    let status = tokio::process::Command::new(program)
        .args(words)
        .arg(path)
        .status()
        .await
        .map_err(|source| Usage::Editor {
            program: program.to_owned(),
            source,
        })?;
    if status.success() {
        Ok(())
    } else {
        Err(Refusal::EditorFailed {
            program: program.to_owned(),
            status,
        }
        .into())
    }
}
