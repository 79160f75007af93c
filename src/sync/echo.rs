//! Frames of no news: the echoes of this client's own writes and changes
//! the stream delivered before, recognised by their versions and taken in
//! in memory: only the cursor and the clock move, and reach `_meta` with
//! the next step that writes (docs/architecture.md).

use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::JsResult;
use crate::idb::SERVER;
use syncstore_core::sorted::{SortedMap, SortedSet};

use std::rc::Rc;
use syncstore_core::protocol::{Change, ChangeStamp, FrameHead, ServerMessage};
use syncstore_core::sync::plan::synced_colls;
use syncstore_core::sync::ClientSync;
use syncstore_core::write::Key;

use super::*;

/// A frame of no news: the stamp of each change, and the cursor.
pub(super) type EchoFrame = (Vec<ChangeStamp>, String);

fn stamps_of(changes: &[Change]) -> Vec<ChangeStamp> {
    changes.iter().map(Change::stamp).collect()
}

impl SyncLoop {
    /// The `(version, ts)` of each change and the cursor of a `changes`
    /// frame whose every change is an echo the engine recognises, read
    /// without parsing the documents (a burst of own writes comes back as
    /// megabytes of them); `None` for any other frame.
    pub(super) fn echo_of(&self, text: &str) -> Option<EchoFrame> {
        // A frame's changes are in seq order: if the first is news, so is
        // the frame, and reading its head would be a second parse of it
        // (a catch-up is megabytes of such frames).
        if let Some(seq) = FrameHead::first_seq(text) {
            if !self.engine.borrow().is_echo_of([seq]) {
                return None;
            }
        }
        let head: FrameHead = serde_json::from_str(text).ok()?;
        if head.kind != "changes" {
            return None;
        }
        let cursor = head.cursor?;
        self.engine
            .borrow()
            .is_echo_of(head.changes.iter().map(|s| s.version))
            .then_some((head.changes, cursor))
    }

    /// The `(version, ts)` of each change and the cursor of every frame of
    /// `inputs`, if they are all socket frames carrying only echoes of this
    /// client's writes that their push answers settled.
    pub(super) fn echoes_only(&self, inputs: &[Input]) -> Option<Vec<EchoFrame>> {
        if inputs.is_empty() || self.has_news() {
            return None;
        }
        let eng = self.engine.borrow();
        inputs
            .iter()
            .map(|i| match i {
                Input::Echo(frame) => Some(frame.clone()),
                Input::Frame(ServerMessage::Changes { changes, cursor })
                    if eng.is_echo(changes) =>
                {
                    Some((stamps_of(changes), cursor.clone()))
                }
                _ => None,
            })
            .collect()
    }

    /// The frames of `inputs` (as [`Self::echoes_only`]) if they are all
    /// socket frames whose every change is no news: echoes the engine
    /// recognises, or changes to documents without outbox entries that
    /// IndexedDB already holds at that version or later (a frame repeating
    /// what a pull brought, the echo of a write settled long ago). Those
    /// are read in a readonly transaction, which neither waits for nor holds
    /// up the app's reads; only this loop moves stored server versions, so
    /// what it reads stays true until the step that follows.
    pub(super) async fn stale_frames(
        &self,
        inner: &Rc<Ctx>,
        inputs: &[Input],
    ) -> JsResult<Option<Vec<EchoFrame>>> {
        if let Some(frames) = self.echoes_only(inputs) {
            return Ok(Some(frames));
        }
        // During a sync from the start (a first sync, a resync) the frames
        // are news as a rule: a read to find stale ones would cost every
        // step a round trip before its writes (the ordinary step handles a
        // stale change all the same: by its version).
        if inputs.is_empty() || self.has_news() || self.progress.borrow().is_some() {
            return Ok(None);
        }
        let mut frames = vec![];
        let mut keys: Vec<Key> = vec![];
        let mut wanted: Vec<(Key, u64)> = vec![];
        {
            let eng = self.engine.borrow();
            if eng.resyncing() {
                return Ok(None);
            }
            for i in inputs {
                match i {
                    Input::Echo(frame) => frames.push(frame.clone()),
                    Input::Frame(ServerMessage::Changes { changes, cursor }) => {
                        if changes.iter().any(|c| eng.is_pending(&c.coll, &c.id)) {
                            return Ok(None);
                        }
                        keys.extend(ClientSync::keys_of_changes(changes));
                        wanted.extend(
                            changes
                                .iter()
                                .map(|c| ((c.coll.clone(), c.id.clone()), c.version)),
                        );
                        frames.push((stamps_of(changes), cursor.clone()));
                    }
                    _ => return Ok(None),
                }
            }
        }
        syncstore_core::sorted::sort_by(&mut keys, Ord::cmp);
        keys.dedup();
        let db = inner.db().await?;
        let mut stores: Vec<&str> = synced_colls(&inner.schema).collect();
        stores.push(SERVER);
        let tx = Db::tx(&db, &stores, false)?;
        let (states, _) = read_states(&tx, &keys, &SortedSet::new()).await?;
        let stored: SortedMap<Key, u64> = states
            .into_iter()
            .map(|r| ((r.coll, r.id), r.state.version))
            .collect();
        let stale = wanted
            .iter()
            .all(|(key, version)| stored.get(key).is_some_and(|v| v >= version));
        Ok(stale.then_some(frames))
    }

    /// Takes in frames of no news ([`Self::stale_frames`]): only the cursor
    /// and the clock move, in memory. They reach `_meta` with the next step
    /// that writes (a push answer, a pull page, a change): if the page goes
    /// first, the socket catches up from the cursor stored before and these
    /// frames are no news again. No transaction: nothing waits behind it.
    pub(super) fn echo_step(&self, frames: Vec<EchoFrame>) {
        {
            let mut eng = self.engine.borrow_mut();
            for (stamps, cursor) in &frames {
                eng.skip_echo_of(stamps, cursor);
            }
        }
        self.stored_now();
    }
}
