//! The sans-IO engine of syncstore.
//!
//! Nothing in this crate performs I/O: the browser binding (`syncstore`) and
//! the reference server feed it inputs and carry out what it returns.

pub mod protocol;
