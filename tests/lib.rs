//! Cross-crate integration tests for zgres. The tests live beside this file (see
//! `Cargo.toml`); they start real ZooKeeper and PostgreSQL through `zgres-testkit`.
#![forbid(unsafe_code)]

pub mod e2e;
