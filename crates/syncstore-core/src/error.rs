//! Errors the engine reports. Each has a stable `code` the JS binding exposes.

use thiserror::Error;

/// An error caused by what the caller passed in: nothing was written.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CoreError {
    #[error("{0}")]
    InvalidDocument(String),
    #[error("{0}")]
    InvalidId(String),
    #[error("{0}")]
    InvalidPatch(String),
    #[error("{0}")]
    InvalidQuery(String),
    #[error("{0}")]
    UnknownOperator(String),
    #[error("{0}")]
    InvalidSchema(String),
    #[error("{0}")]
    InvalidOptions(String),
    #[error("{0}")]
    UnknownCollection(String),
    #[error("document {limit} bytes limit exceeded at {path}: {size} bytes")]
    DocTooLarge {
        path: String,
        size: usize,
        limit: usize,
    },
    #[error("{coll}: no document with id {id:?} at {path}")]
    NotFound {
        path: String,
        coll: String,
        id: String,
    },
    #[error("{coll}: a document with id {id:?} already exists ({path})")]
    AlreadyExists {
        path: String,
        coll: String,
        id: String,
    },
}

impl CoreError {
    /// The stable, documented error code.
    pub fn code(&self) -> &'static str {
        match self {
            CoreError::InvalidDocument(_) => "INVALID_DOCUMENT",
            CoreError::InvalidId(_) => "INVALID_ID",
            CoreError::InvalidPatch(_) => "INVALID_PATCH",
            CoreError::InvalidQuery(_) => "INVALID_QUERY",
            CoreError::UnknownOperator(_) => "UNKNOWN_OPERATOR",
            CoreError::InvalidSchema(_) => "INVALID_SCHEMA",
            CoreError::InvalidOptions(_) => "INVALID_OPTIONS",
            CoreError::UnknownCollection(_) => "UNKNOWN_COLLECTION",
            CoreError::DocTooLarge { .. } => "DOC_TOO_LARGE",
            CoreError::NotFound { .. } => "NOT_FOUND",
            CoreError::AlreadyExists { .. } => "ALREADY_EXISTS",
        }
    }
}

pub type Result<T, E = CoreError> = std::result::Result<T, E>;
