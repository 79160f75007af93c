//! syncstore: placeholder
