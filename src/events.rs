//! `db.on(type, cb)`: the store's events (`status`, `change`, `trace`, `idmap`,
//! `rejected`, `conflict`, `error`). Listeners are called with no Rust borrow
//! held; one that throws is rethrown asynchronously and the others still run.

use crate::error::JsResult;
use crate::glue;
use js_sys::Function;
use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use wasm_bindgen::prelude::*;

/// The event types `on` accepts.
pub const KINDS: [&str; 8] = [
    "status",
    "change",
    "idmap",
    "rejected",
    "conflict",
    "error",
    "trace",
    "versionchange",
];

type ReleaseFn = Closure<dyn Fn(u32)>;
/// `(id, kind, callback)` of each listener.
type Listeners = Rc<RefCell<Vec<(u32, &'static str, Function)>>>;

#[derive(Default)]
pub struct Events {
    listeners: Listeners,
    next_id: Cell<u32>,
    release: RefCell<Option<ReleaseFn>>,
    /// Another instance of the database listens for `change` (changes.rs).
    peers_want_changes: Cell<bool>,
}

impl Events {
    /// Adds a listener; returns the function that removes it. (The first
    /// `change` listener is announced by the caller: changes.rs.)
    pub fn on(&self, kind: &str, callback: Function) -> JsResult<Function> {
        let Some(kind) = KINDS.iter().find(|k| **k == kind) else {
            return Err(glue::make_error(
                "INVALID_EVENT",
                &format!("type: unknown event {kind:?} (known: {})", KINDS.join(" ")),
                false,
            ));
        };
        let id = self.next_id.get() + 1;
        self.next_id.set(id);
        self.listeners.borrow_mut().push((id, kind, callback));
        let mut release = self.release.borrow_mut();
        let release = release.get_or_insert_with(|| {
            let weak: Weak<RefCell<_>> = Rc::downgrade(&self.listeners);
            Closure::<dyn Fn(u32)>::new(move |id: u32| {
                if let Some(listeners) = weak.upgrade() {
                    listeners.borrow_mut().retain(|l| l.0 != id);
                }
            })
        });
        Ok(glue::unsubscriber(release.as_ref().unchecked_ref(), id))
    }

    /// True if anyone listens for `kind` (payloads are built only then).
    pub fn wanted(&self, kind: &str) -> bool {
        self.listeners.borrow().iter().any(|l| l.1 == kind)
    }

    pub fn peers_want_changes(&self) -> bool {
        self.peers_want_changes.get()
    }

    pub fn set_peers_want_changes(&self) {
        self.peers_want_changes.set(true);
    }

    /// Emits a JSON payload (an error's `{code, message, retryable}` as a
    /// `SyncStoreError`); builds the JS value only if someone listens.
    pub fn emit_value(&self, kind: &str, payload: &serde_json::Value) {
        if !self.wanted(kind) {
            return;
        }
        let js = if kind == "error" {
            crate::error::error_js(payload)
        } else {
            crate::idb::to_user_js(payload)
        };
        self.emit(kind, &js);
    }

    pub fn emit(&self, kind: &str, payload: &JsValue) {
        let targets: Vec<Function> = self
            .listeners
            .borrow()
            .iter()
            .filter(|l| l.1 == kind)
            .map(|l| l.2.clone())
            .collect();
        for f in targets {
            glue::call_listener(&f, payload);
        }
    }

    pub fn close(&self) {
        self.listeners.borrow_mut().clear();
    }
}
