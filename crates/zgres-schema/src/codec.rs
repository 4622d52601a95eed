//! Encoding and decoding znode documents: versioned JSON objects with a `"v"` field.
//!
//! Decoding is the single gate through which ZooKeeper data enters zgres. It never panics and
//! reports what is wrong in terms an operator can act on: the znode path, and the field when the
//! problem is inside the document.

use std::fmt;

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::{Map, Value};

/// ZooKeeper's default `jute.maxbuffer`: no znode can hold more, so no document may be larger.
pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;

/// The limit of every document but the history: the largest real one (a state with plugin
/// metadata) is a few KiB, so anything near ZooKeeper's limit is hostile or broken.
pub const SMALL_DOCUMENT_BYTES: usize = 64 * 1024;

/// A JSON document stored in a zgres znode.
///
/// The `"v"` field is not part of the Rust type: [`encode`] adds it and [`decode`] checks and
/// removes it, so callers never handle versions by hand.
pub trait Document: Serialize + DeserializeOwned {
    /// The newest schema version this type reads and writes.
    const VERSION: u64;
    /// The oldest schema version this type reads (versions in between read as this type).
    const OLDEST_READ: u64 = Self::VERSION;
    /// The largest encoding accepted by [`decode`] and produced by [`encode`].
    const MAX_BYTES: usize = SMALL_DOCUMENT_BYTES;

    /// The version `self` is written as: [`Document::VERSION`], or an older one when `self`
    /// means the same to older readers (so they keep reading it).
    fn version(&self) -> u64 {
        Self::VERSION
    }
}

/// What is wrong with a document read from a znode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeErrorKind {
    /// Larger than its type allows ([`Document::MAX_BYTES`]).
    #[error("document is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Size of the data read.
        size: usize,
        /// The type's [`Document::MAX_BYTES`].
        limit: usize,
    },
    /// Not UTF-8 text.
    #[error("document is not UTF-8 (invalid byte at offset {valid_up_to})")]
    NotUtf8 {
        /// Offset of the first invalid byte.
        valid_up_to: usize,
    },
    /// Not well-formed JSON.
    #[error("malformed JSON at line {line} column {column}: {message}")]
    Malformed {
        /// 1-based line of the error.
        line: usize,
        /// 1-based column of the error.
        column: usize,
        /// The parser's description.
        message: String,
    },
    /// Valid JSON, but not an object.
    #[error("document is not a JSON object")]
    NotAnObject,
    /// The `"v"` field is absent.
    #[error("field `v`: missing schema version")]
    MissingVersion,
    /// The `"v"` field is not a non-negative integer.
    #[error("field `v`: schema version must be a non-negative integer, found {found}")]
    BadVersion {
        /// The JSON found, abbreviated.
        found: String,
    },
    /// A schema version this build does not understand (written by a newer or older zgres).
    #[error(
        "field `v`: unsupported schema version {found} (this zgres reads version {supported})"
    )]
    UnsupportedVersion {
        /// The version in the document.
        found: u64,
        /// The version this build reads.
        supported: u64,
    },
    /// A field is missing or has the wrong type or value.
    #[error("field `{field}`: {message}")]
    Field {
        /// Dotted path of the field (`wal.replay`, `entries[2].lsn`), or `.` for the top level.
        field: String,
        /// What is wrong with it.
        message: String,
    },
}

/// A document in a znode could not be decoded. Permanent: reading the same bytes again gives the
/// same error, so callers log it and treat the znode as unusable rather than retry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("znode {path}: {kind}")]
pub struct DecodeError {
    /// The znode the data came from.
    pub path: String,
    /// What is wrong.
    pub kind: DecodeErrorKind,
}

/// A document could not be encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EncodeError {
    /// The encoded document is larger than its type allows.
    #[error("encoded document is {size} bytes, over the {limit}-byte limit")]
    TooLarge {
        /// Encoded size.
        size: usize,
        /// The type's [`Document::MAX_BYTES`].
        limit: usize,
    },
    /// The type did not serialize to a JSON object (a bug in a [`Document`] impl).
    #[error("document type does not serialize to a JSON object: {0}")]
    NotAnObject(String),
}

/// Encodes `doc` as compact JSON with its `"v"` field.
///
/// # Errors
/// [`EncodeError::TooLarge`] when the result would exceed [`Document::MAX_BYTES`].
pub fn encode<T: Document>(doc: &T) -> Result<Vec<u8>, EncodeError> {
    let mut object = match serde_json::to_value(doc) {
        Ok(Value::Object(map)) => map,
        Ok(other) => return Err(EncodeError::NotAnObject(kind_of(&other).to_owned())),
        Err(e) => return Err(EncodeError::NotAnObject(e.to_string())),
    };
    object.insert("v".to_owned(), Value::from(doc.version()));
    let bytes = serde_json::to_vec(&object).expect("a JSON map always serializes");
    if bytes.len() > T::MAX_BYTES {
        return Err(EncodeError::TooLarge {
            size: bytes.len(),
            limit: T::MAX_BYTES,
        });
    }
    Ok(bytes)
}

/// Decodes the data of the znode at `path` as a `T`.
///
/// Unknown fields are ignored, so a newer zgres may add optional fields without a version bump;
/// anything that changes meaning bumps `"v"`, which older readers then refuse.
///
/// # Errors
/// A [`DecodeError`] naming `path` for oversized, non-UTF-8, malformed, non-object,
/// wrong-version or wrongly-typed data. Never panics, whatever the bytes.
pub fn decode<T: Document>(path: &str, data: &[u8]) -> Result<T, DecodeError> {
    let fail = |kind| DecodeError {
        path: path.to_owned(),
        kind,
    };
    if data.len() > T::MAX_BYTES {
        return Err(fail(DecodeErrorKind::TooLarge {
            size: data.len(),
            limit: T::MAX_BYTES,
        }));
    }
    let text = std::str::from_utf8(data).map_err(|e| {
        fail(DecodeErrorKind::NotUtf8 {
            valid_up_to: e.valid_up_to(),
        })
    })?;
    let value: Value = serde_json::from_str(text).map_err(|e| {
        fail(DecodeErrorKind::Malformed {
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    })?;
    let Value::Object(mut object) = value else {
        return Err(fail(DecodeErrorKind::NotAnObject));
    };
    check_version::<T>(&mut object).map_err(fail)?;
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|e| {
        fail(DecodeErrorKind::Field {
            field: e.path().to_string(),
            message: e.into_inner().to_string(),
        })
    })
}

fn check_version<T: Document>(object: &mut Map<String, Value>) -> Result<(), DecodeErrorKind> {
    let found = match object.remove("v") {
        None => return Err(DecodeErrorKind::MissingVersion),
        Some(Value::Number(n)) if n.as_u64().is_some() => n.as_u64().unwrap_or_default(),
        Some(other) => {
            return Err(DecodeErrorKind::BadVersion {
                found: Abbreviated(&other).to_string(),
            })
        }
    };
    if !(T::OLDEST_READ..=T::VERSION).contains(&found) {
        return Err(DecodeErrorKind::UnsupportedVersion {
            found,
            supported: T::VERSION,
        });
    }
    Ok(())
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// JSON shown in an error message, cut to a readable length.
struct Abbreviated<'a>(&'a Value);

impl fmt::Display for Abbreviated<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let text = self.0.to_string();
        if text.chars().count() > 40 {
            let head: String = text.chars().take(40).collect();
            write!(f, "{head}...")
        } else {
            f.write_str(&text)
        }
    }
}
