//! Pure document logic shared by every `Store`: RFC 7396 merge patch,
//! per-path field versions and the conflict rules, temp-id reference
//! rewriting. It lives in `syncstore_core::sync::fields` so the core's model
//! server (used by the sync simulation) applies the very same rules.

pub use syncstore_core::sync::fields::{
    leaves, merge_patch, rewrite_refs, temp_strings, touched_paths, FieldVersions, Path,
};
