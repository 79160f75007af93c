//! The sans-IO engine of syncstore.
//!
//! Nothing in this crate performs I/O: the browser binding (`syncstore`) and
//! the reference server feed it inputs and carry out what it returns.
//!
//! - [`schema`]: collections and indexes declared at open.
//! - [`write`]: validates mutations and turns them into records and outbox
//!   entries (where a mutation is validated and queued).
//! - [`query`]: query parsing, evaluation and index planning.
//! - [`keys`]: the IndexedDB key encoding of indexed values.
//! - [`protocol`]: the wire types shared with the sync server.

pub mod error;
pub mod ids;
pub mod json;
pub mod keys;
pub mod protocol;
pub mod query;
pub mod schema;
pub mod sorted;
pub mod sync;
pub mod write;

pub use error::CoreError;
