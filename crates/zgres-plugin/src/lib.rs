//! C-ABI plugin interface for zgres (host-side loader and plugin-side macro).
//!
//! Not implemented yet: this crate is a placeholder in the workspace layout. It is the only
//! crate where `unsafe` will be allowed, each block with a `// SAFETY:` comment; until then it
//! has none.
#![deny(unsafe_code)]
