//! The shared model of what zgres keeps in ZooKeeper.
//!
//! This crate does no I/O. It knows:
//! - where every znode lives under a configurable root ([`paths`]);
//! - the typed identifiers used in those paths and documents ([`ids`], [`lsn`]);
//! - the JSON documents stored in each znode and how to encode and decode them safely
//!   ([`documents`], [`codec`]);
//! - whether a `/conn` document may be used to reach its node ([`conn_check`]).
//!
//! Every reader of ZooKeeper data goes through [`codec::decode`], which never panics: malformed,
//! oversized, non-UTF-8 or unknown-version data comes back as a [`codec::DecodeError`] that names
//! the znode and, where there is one, the offending field.
#![forbid(unsafe_code)]

pub mod codec;
pub mod conn_check;
pub mod documents;
pub mod fetched;
pub mod history;
pub mod ids;
pub mod lsn;
pub mod paths;
pub mod pg_settings;
pub mod slots;

pub use codec::{
    decode, encode, DecodeError, DecodeErrorKind, Document, EncodeError, MAX_DOCUMENT_BYTES,
    SMALL_DOCUMENT_BYTES,
};
pub use conn_check::ConnProblem;
pub use fetched::{Fetched, UnreadableFilter};
pub use history::HistoryView;
pub use ids::{GroupName, IdError, NodeId, NodeName, SystemId, Timeline};
pub use lsn::{Lsn, LsnParseError};
pub use paths::{Dir, PathError, ZkLayout, Znode};
pub use slots::{PermanentSlot, PermanentSlots, SlotName};
