//! Client sync: the sans-IO engine that keeps a client's outbox, its copy of
//! the server state and its local views consistent (see docs/sync-engine.md).
//!
//! - [`doc`]: [`Doc`], a document as the JSON text it came as or as fields.
//! - [`engine`]: [`ClientSync`], the client state machine. Inputs are a local
//!   mutation, a push answer, pulled or streamed changes and resync; every
//!   input returns [`Effects`] for the binding to persist in one transaction.
//! - [`apply`]: the server's per-mutation rules over any storage
//!   ([`apply::DocStore`]), run by the reference server and the model server.
//! - [`policy`]: conflict policies (server-wins, last-write-wins, field
//!   merge) and per-collection dispatch.
//! - [`plan`]: the step planner: what the browser binding writes for an
//!   input's effects (records, `_server` copies, outbox, conflicts, sweep).
//! - [`schedule`]: the loop's timing rules as data: the WebSocket
//!   keep-alive and the push backoff.
//! - [`fields`]: the server's document rules (field versions, conflict
//!   check, temp-id reference rewriting), shared by the reference server and
//!   the model server of the tests.

pub mod apply;
pub mod doc;
pub mod engine;
pub mod fields;
pub mod outbox;
pub mod plan;
pub mod policy;
pub mod schedule;

pub use doc::Doc;
pub use engine::write_stamp;
pub use engine::{
    ClientSync, ConflictInfo, ConflictPolicy, Effects, Entry, EntryState, Event, Meta, Rekey,
    Resolution, ServerDoc, ServerRecord, ServerWins, SyncError, ViewChange, MAX_STAMP,
};
