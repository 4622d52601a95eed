//! Operator CLI for zgres groups.
//!
//! Not implemented yet: this crate is a placeholder in the workspace layout.
#![forbid(unsafe_code)]

/// Exit status of a binary whose behaviour is not implemented yet (`EX_UNAVAILABLE`).
pub const EXIT_NOT_IMPLEMENTED: i32 = 69;
