//! The step: read, decide, write in one transaction (see the module docs
//! of `sync` and docs/architecture.md "The sync loop"), the records it reads
//! and the app's conflict resolvers it asks.

use crate::ctx::Ctx;
use crate::db::Db;
use crate::error::{storage, JsResult};
use crate::glue;
use crate::idb::{
    coll_range, outbox_entries, parse, to_js, wait, CONFLICTS, HELD, IDS, META, OUTBOX, REJECTED,
    SERVER,
};
use js_sys::{Date, Function};
use serde::Serialize;
use serde_json::{json, Value};
use std::rc::Rc;
use syncstore_core::protocol::DocText;
use syncstore_core::protocol::MutationResult;
use syncstore_core::protocol::{Change, PushResponse, ServerMessage};
use syncstore_core::schema::ConflictMode;
use syncstore_core::sorted::{SortedMap, SortedSet};
use syncstore_core::sync::plan::{synced_colls, synced_spec, Planner, StepPlan};
use syncstore_core::sync::policy::{Decision, Policies};
use syncstore_core::sync::{ClientSync, Doc, Entry, Event, ServerDoc, ServerRecord};
use syncstore_core::write::Key;
use wasm_bindgen::prelude::*;
use wasm_bindgen_futures::JsFuture;
use web_sys::IdbKeyRange;

use super::*;

/// How a step ended.
pub(super) enum Stepped {
    Done,
    /// A narrow step found it must write records: nothing was written.
    Widen,
    /// A peek found it must write (an entry stored again, a server copy)
    /// or read `_server` after all: nothing was written, and the engine
    /// was reloaded if it had run.
    Write,
}

/// The scope and mode of a step's transaction.
#[derive(Clone, Copy, PartialEq)]
pub(super) enum Scope {
    /// Readonly, internal stores: takes new entries in when that writes
    /// nothing but the engine's meta, which waits for the next step that
    /// writes (docs/architecture.md "The sync loop").
    Peek,
    /// Readwrite, internal stores only.
    Narrow,
    /// Readwrite, every store the loop uses.
    Full,
}

/// A copy of `inputs` if they are push answers only, every result of
/// them applied and no temporary id mapped (see `SyncLoop::step`).
fn settles_only(inputs: &[Input]) -> Option<Vec<Input>> {
    if inputs.is_empty() {
        return None;
    }
    inputs
        .iter()
        .map(|i| match i {
            Input::Push(r, decided)
                if r.id_map.is_empty()
                    && r.results
                        .iter()
                        .all(|m| matches!(m, MutationResult::Applied { .. })) =>
            {
                Some(Input::Push(r.clone(), decided.clone()))
            }
            _ => None,
        })
        .collect()
}

/// True if a planned request goes to one of `stores`.
pub(super) fn in_scope(op: &Value, stores: &[&str]) -> bool {
    op.get("s")
        .and_then(Value::as_str)
        .is_some_and(|s| stores.contains(&s))
}

impl SyncLoop {
    /// Runs engine inputs in one readwrite transaction: first the outbox
    /// entries queued since the last step, then `inputs`. Read, decide,
    /// write: the server state of the documents they name is read in the
    /// transaction (the engine holds only pending documents'), the engine
    /// decides, the effects are written; after the commit, subscriptions
    /// refresh and events fire.
    pub(super) async fn step(&self, inner: &Rc<Ctx>, inputs: Vec<Input>) -> JsResult<()> {
        // Taking in new entries alone writes no record as a rule (the write
        // path wrote them): such a step leaves the collections out of its
        // scope, so that the app's reads and live-query refreshes, which
        // IndexedDB would queue behind a readwrite transaction over their
        // collection, do not wait for it. It widens (starts again over
        // every store) when an entry may be rewritten, before the engine
        // has seen anything.
        // Most often it writes nothing but the engine's meta (the clock,
        // the last mid taken in), which can wait for the next step that
        // writes anyway (a lost meta only makes a reload take the same
        // entries in again): it then reads in a readonly transaction, which
        // the app's next write waits for only while it reads, not while
        // the engine decides and a readwrite transaction commits.
        if inputs.is_empty() && !self.legacy_ids.get() {
            let peeked = self.step_in(inner, vec![], Scope::Peek).await?;
            let done = match peeked {
                Stepped::Write => self.step_in(inner, vec![], Scope::Narrow).await?,
                other => other,
            };
            if let Stepped::Done = done {
                return Ok(());
            }
        }
        // Storing push answers that every mutation was applied as sent (no
        // conflict, no refusal, no temporary id mapped) writes settle
        // markers and outbox deletes as a rule: no record, so the
        // collections stay out of the step's transaction too, and the
        // app's writes and reads do not queue behind it. (A server copy
        // or a view to store after all widens it.)
        if let Some(copy) = settles_only(&inputs) {
            if let Stepped::Done = self.step_in(inner, copy, Scope::Narrow).await? {
                return Ok(());
            }
        }
        self.step_in(inner, inputs, Scope::Full).await.map(|_| ())
    }

    /// One step over every store the loop uses, or over the internal
    /// stores only ([`Scope`]); a narrow one that finds it must write a
    /// record aborts and answers [`Stepped::Widen`], a peek that finds it
    /// must write anything but the meta answers [`Stepped::Write`].
    pub(super) async fn step_in(
        &self,
        inner: &Rc<Ctx>,
        mut inputs: Vec<Input>,
        scope: Scope,
    ) -> JsResult<Stepped> {
        let narrow = scope != Scope::Full;
        let peek = scope == Scope::Peek;
        self.last_step_at.set(Date::now());
        self.steps.set(self.steps.get() + 1);
        let schema = &inner.schema;
        self.track_progress(&inputs);
        // Changes to collections this store does not sync (another app's,
        // in the same namespace) are not its business: not loaded, not
        // decided, not stored. The cursor still moves past them.
        for input in &mut inputs {
            let changes = match input {
                Input::Pull(p) => &mut p.changes,
                Input::Frame(ServerMessage::Changes { changes, .. }) => changes,
                _ => continue,
            };
            changes.retain(|c| synced_spec(schema, &c.coll).is_some());
        }
        if let Some(frames) = self.stale_frames(inner, &inputs).await? {
            self.echo_step(frames);
            return Ok(Stepped::Done);
        }
        let last_mid = self.engine.borrow().next_mid() - 1;
        // A peek over entries this tab handed over reads no outbox, and
        // leaves it out of its scope (see `SyncLoop::hand_off`); nor
        // `_server`, if the writes saved a copy of every document the
        // engine does not hold: that copy is what `_server` holds for it
        // now, and the app's next write, over its collection, the outbox
        // and `_server`, then does not wait for the peek.
        let (handed, mut known) = match peek.then(|| self.handed_after(last_mid)).flatten() {
            Some(h) => (Some(h.entries), h.known),
            None => (None, None),
        };
        let mut stores: Vec<&str> = if narrow {
            vec![]
        } else {
            synced_colls(schema).chain([HELD]).collect()
        };
        if handed.is_none() {
            stores.push(OUTBOX);
        }
        if known.is_none() {
            stores.push(SERVER);
        }
        stores.extend([META, CONFLICTS, IDS, REJECTED]);
        let db = inner.db().await?;
        let tx = Db::tx(&db, &stores, !peek)?;
        // Held changes of collections being pulled, read before the engine runs.
        let mut released: Vec<Vec<Change>> = vec![];
        for input in &inputs {
            if let Input::Release(coll) = input {
                let req = Db::store(&tx, HELD)?
                    .get_all_with_key(&coll_range(coll)?.into())
                    .map_err(|e| storage(e, "read held changes"))?;
                released.push(parse(&wait(&req, "read held changes").await?).unwrap_or_default());
            }
        }
        let term = Db::store(&tx, META)?
            .get(&"leader".into())
            .map_err(|e| storage(e, "read leader"))?;
        let open = Db::store(&tx, CONFLICTS)?
            .get_all_keys()
            .map_err(|e| storage(e, "read conflicts"))?;
        let mut reqs = vec![term, open];
        if handed.is_none() {
            let range =
                IdbKeyRange::lower_bound_with_open(&JsValue::from_f64(last_mid as f64), true)
                    .map_err(|e| storage(e, "key range"))?;
            let req = Db::store(&tx, OUTBOX)?
                .get_all_with_key(&range)
                .map_err(|e| storage(e, "read outbox"))?;
            reqs.push(req);
            // What is committed from now on is news for the next step
            // (writes wait for this transaction); a step that fails reads
            // it again.
            self.outbox_dirty.set(false);
        }
        let got = crate::idb::wait_all(&reqs.iter().collect::<Vec<_>>(), "read outbox").await?;
        let conflicted: Vec<(String, String)> = parse(&got[1]).unwrap_or_default();
        self.hold_the_lead(&tx, &got[0])?;
        let mut out = StepPlan {
            conflicted: conflicted.into_iter().collect(),
            ..StepPlan::default()
        };
        // The outbox entries queued since the last step; those of a batch
        // record are stored again under their own mids.
        let records: Vec<Value> = match handed {
            Some(entries) => entries,
            None => parse(&got[2]).unwrap_or_default(),
        };
        let batched: SortedSet<u64> = records
            .iter()
            .filter_map(|r| {
                let first = r.get("mid")?.as_u64()?;
                let n = r.get("batch")?.as_array()?.len() as u64;
                Some(first..first + n)
            })
            .flatten()
            .collect();
        let mut queued: Vec<Entry> = vec![];
        for raw in outbox_entries(records) {
            let mid = raw.get("mid").cloned();
            match Entry::from_json(raw) {
                Ok(e) => queued.push(e),
                Err(field) => {
                    // Cannot be sent as stored: drop it rather than block the queue.
                    glue::warn(
                        &format!(
                            "syncstore: dropping a malformed outbox entry (missing or invalid `{field}`)"
                        ),
                        &JsValue::UNDEFINED,
                    );
                    if let Some(mid) = mid {
                        out.ops.push(json!({"s": OUTBOX, "del": mid}));
                    }
                }
            }
        }
        let widen = narrow && {
            let eng = self.engine.borrow();
            queued
                .iter()
                .any(|e| eng.may_rewrite(&e.mutation) || self.manual.contains(&e.mutation.coll))
        };
        if widen {
            let _ = tx.abort();
            return Ok(Stepped::Widen);
        }
        // Entries of a batch record are stored again under their own mids,
        // a malformed one is dropped: writes. (An edit the write path
        // stored as a follow-up, without a base, is one in the engine too:
        // `_server` holds a copy exactly while the document has outbox
        // entries; write.rs `Stored::under`.)
        if peek && (!batched.is_empty() || !out.ops.is_empty()) {
            let _ = tx.abort();
            return Ok(Stepped::Write);
        }
        // A step with nothing to take in proves nothing about storage
        // (it commits on a full disk): only one that does ends a retry.
        let takes_in = !inputs.is_empty() || !queued.is_empty();
        // Documents written since the last step (no step has run since:
        // each takes in every queued entry first): an insert found no
        // record, and any other first edit of a server document saved it
        // in `_server` (write.rs), so their records cannot be the server's
        // document; only `_server` is read for them.
        let fresh: SortedSet<Key> = {
            let eng = self.engine.borrow();
            queued
                .iter()
                .map(|e| eng.keys_of_local(&e.mutation))
                .collect()
        };
        // Read: the server state of every document the step names.
        let needs = {
            let eng = self.engine.borrow();
            let mut keys: Vec<Key> = fresh.iter().cloned().collect();
            let mut released_keys = released.iter();
            for input in &inputs {
                match input {
                    Input::Push(r, _) => keys.extend(eng.keys_of_push(r)),
                    Input::Pull(p) => keys.extend(ClientSync::keys_of_changes(&p.changes)),
                    Input::Frame(m) => keys.extend(eng.keys_of_message(m)),
                    Input::Echo(..) => {}
                    Input::Release(_) => {
                        if let Some(c) = released_keys.next() {
                            keys.extend(ClientSync::keys_of_changes(c));
                        }
                    }
                    Input::Unpark(_) => {}
                }
            }
            eng.needs(keys)
        };
        let (states, copied) = match known.as_mut().map(|k| take_states(k, &needs)) {
            Some(Some(read)) => read,
            Some(None) => {
                // Not foreseen above: a readwrite step reads `_server`.
                let _ = tx.abort();
                return Ok(Stepped::Write);
            }
            None => read_states(&tx, &needs, &fresh).await?,
        };
        {
            let mut eng = self.engine.borrow_mut();
            let mut held: SortedMap<Key, ServerDoc> = states
                .into_iter()
                .map(|r| ((r.coll, r.id), r.state))
                .collect();
            for (coll, id) in &needs {
                eng.load(coll, id, held.remove(&(coll.clone(), id.clone())));
            }
            let mut c = self.copied.borrow_mut();
            for k in needs {
                if copied.contains(&k) {
                    c.insert(k);
                } else {
                    c.remove(&k);
                }
            }
        }
        let mut released = released.into_iter();
        {
            let mut copied = self.copied.borrow_mut();
            let mut planner = Planner {
                schema,
                copied: &mut copied,
                now: Date::now(),
                changes: crate::changes::wanted(inner),
            };
            let mut eng = self.engine.borrow_mut();
            let mut touched = false;
            for e in queued {
                // As the write stored it (an entry of a batch record is
                // stored again in any case, under its own mid).
                let (stored_base, stored_ts) = (e.mutation.base, e.mutation.ts);
                let stored_state = e.state;
                let stored_doc = e.base_doc;
                let own_record = !batched.contains(&e.mutation.mid);
                let mut m = e.mutation;
                // The base is the server version the write saw: the
                // engine's server state now (steps and writes are
                // serialized by IndexedDB), unless an unsettled
                // edit of the document comes first.
                m.base = eng.base_for(&m.coll, &m.id);
                m.ts = Some(eng.stamp_local(m.ts, Date::now() as u64));
                let mid = m.mid;
                let written = m.clone();
                // The write path stored this view in the write's own
                // transaction (writes and steps are serialized, so it
                // applied the write to the view the engine has): the engine
                // reports it again only if it rewrote the entry (a
                // temporary id it has mapped since, e.g. in another tab's
                // write); else writing it again would be a second put and a
                // second refresh of every live query.
                let parked = self.manual.contains(&m.coll);
                match eng.local_stored(m, parked) {
                    Ok(mut fx) => {
                        touched = true;
                        // An entry the engine left as the write stored it
                        // (the common case: an insert, or an edit of a
                        // document with no earlier entry) is not put again.
                        let as_stored = |e: &Entry| {
                            own_record
                                && e.mutation == written
                                && (written.base, written.ts) == (stored_base, stored_ts)
                                && e.state == stored_state
                                && e.base_doc == stored_doc
                        };
                        fx.outbox_put.retain(|e| !as_stored(e));
                        planner.effects(&eng, &fx, &mut out, false);
                    }
                    Err(why) => {
                        glue::warn(
                            &format!("syncstore: dropping a malformed outbox entry: {why}"),
                            &JsValue::UNDEFINED,
                        );
                        out.ops.push(json!({"s": OUTBOX, "del": mid}));
                    }
                }
            }
            for input in inputs {
                let fx = match input {
                    Input::Push(r, decided) => {
                        let policies = Policies {
                            decided,
                            ..self.policies.clone()
                        };
                        eng.on_push_response(&r, &policies)
                    }
                    Input::Pull(mut p) => {
                        self.hold(&eng, p.resync, &mut p.changes, &mut out.ops);
                        eng.on_pull(&p)
                    }
                    Input::Frame(mut m) => {
                        match &mut m {
                            ServerMessage::Changes { changes, .. } => {
                                self.hold(&eng, false, changes, &mut out.ops)
                            }
                            ServerMessage::Resync { .. } => {
                                self.hold(&eng, true, &mut vec![], &mut out.ops)
                            }
                            _ => {}
                        }
                        eng.on_server_message(&m, &self.policies)
                    }
                    Input::Echo((stamps, cursor)) => eng.skip_echo_of(&stamps, &cursor),
                    Input::Release(_) => {
                        let changes = released.next().unwrap_or_default();
                        for c in &changes {
                            out.ops.push(json!({"s": HELD, "del": [c.coll, c.seq]}));
                        }
                        touched |= !changes.is_empty();
                        eng.on_changes(&changes, None, None, false)
                    }
                    Input::Unpark(coll) => eng.unpark(&coll),
                };
                touched |= !fx.is_empty();
                planner.effects(&eng, &fx, &mut out, true);
            }
            if self.legacy_ids.get() {
                // Written by a version that kept the id map in `_meta`.
                for (t, id) in eng.id_map() {
                    out.ops.push(json!({"s": IDS, "put": {"t": t, "id": id}}));
                }
                touched = true;
            }
            if touched {
                out.ops
                    .push(json!({"s": META, "put": {"k": "sync", "v": eng.meta_without_ids()}}));
            }
            planner.finish(&eng, &mut out);
        }
        if narrow && !out.ops.iter().all(|o| in_scope(o, &stores)) {
            // Not foreseen above: the engine ran ahead; start again from
            // what is stored, over every store.
            let _ = tx.abort();
            self.reload(inner).await;
            return Ok(Stepped::Widen);
        }
        if peek && !out.ops.iter().all(|o| o["s"] == META) {
            // Not foreseen above (a server copy to save, an entry the
            // engine changed): start again from what is stored, readwrite.
            let _ = tx.abort();
            self.reload(inner).await;
            return Ok(Stepped::Write);
        }
        if peek {
            // Only the meta: it waits for the next step that writes.
            out.ops.clear();
        }
        let swept = if out.ops.is_empty() {
            js_sys::Array::new()
        } else {
            glue::apply_ops(&tx, &to_js(&out.ops))
        };
        if !narrow {
            // The next frames are planned while this commits (ahead.rs).
            self.plan_ahead(inner);
        }
        let stored = if peek {
            Ok(())
        } else {
            crate::idb::committed(&tx, "sync").await
        };
        if let Err(e) = stored {
            // Frames taken ahead are lost with the step, as its own are:
            // nothing planned on a commit that failed is used.
            if self.ahead.borrow().is_some() {
                self.drop_socket();
            }
            // The engine ran ahead of what was stored: start again from IndexedDB.
            self.reload(inner).await;
            return Err(e);
        }
        self.legacy_ids.set(false);
        self.stored_now();
        if takes_in && !peek {
            self.storage_ok();
        }
        {
            let mut eng = self.engine.borrow_mut();
            eng.evict();
            let mut copied = self.copied.borrow_mut();
            Planner {
                schema,
                copied: &mut copied,
                now: 0.0,
                changes: false,
            }
            .evicted(&eng);
        }
        for k in swept.iter() {
            let k: Option<(String, String)> = parse(&k);
            if let Some((coll, id)) = k {
                out.changes
                    .push(json!({"coll": coll, "id": id, "op": "delete", "deleted": true}));
                out.colls.insert(coll);
            }
        }
        self.after_commit(inner, out);
        // Every committed step may change `pending`: followers hear it now,
        // not at the end of the tick (after the next request's round trip).
        self.report_status(inner);
        Ok(Stepped::Done)
    }

    /// Follows a sync from the start (a new store's first sync, a resync)
    /// through the inputs that bring it: pull pages and socket frames.
    pub(super) fn track_progress(&self, inputs: &[Input]) {
        let eng = self.engine.borrow();
        let from_start = eng.cursor().is_none() || eng.resyncing();
        let mut p = self.progress.borrow_mut();
        for input in inputs {
            match input {
                Input::Pull(page) if page.resync => {
                    *p = Some(Progress {
                        received: 0,
                        total: None,
                    })
                }
                Input::Frame(ServerMessage::Resync { .. }) => {
                    *p = Some(Progress {
                        received: 0,
                        total: None,
                    })
                }
                Input::Pull(page) => {
                    if p.is_none() && from_start {
                        *p = Some(Progress {
                            received: 0,
                            total: None,
                        });
                    }
                    if let Some(pr) = p.as_mut() {
                        pr.received += page.changes.len() as u64;
                        pr.total = pr.total.or(page.total);
                    }
                    if !page.more {
                        *p = None;
                    }
                }
                Input::Frame(ServerMessage::Changes { changes, .. }) => {
                    if p.is_none() && from_start {
                        *p = Some(Progress {
                            received: 0,
                            total: None,
                        });
                    }
                    if let Some(pr) = p.as_mut() {
                        pr.received += changes.len() as u64;
                    }
                }
                Input::Echo((stamps, _)) => {
                    if let Some(pr) = p.as_mut() {
                        pr.received += stamps.len() as u64;
                    }
                }
                Input::Frame(ServerMessage::Synced { .. }) => *p = None,
                _ => {}
            }
        }
    }

    /// Checks the leader term a step read (`_meta` `leader`): if another
    /// tab took over (this one froze, or its lock was stolen), the step
    /// writes nothing and this client stops.
    pub(super) fn hold_the_lead(
        &self,
        tx: &web_sys::IdbTransaction,
        leader: &JsValue,
    ) -> JsResult<()> {
        let term = js_sys::Reflect::get(leader, &"v".into())
            .ok()
            .and_then(|v| v.as_f64());
        if term == Some(self.term) {
            return Ok(());
        }
        let _ = tx.abort();
        self.stopped.set(true);
        self.waker.wake();
        Err(glue::make_error(
            "LEADERSHIP_LOST",
            "another tab now syncs this database",
            true,
        ))
    }

    /// Rebuilds the engine from IndexedDB after a step that did not commit.
    pub(super) async fn reload(&self, inner: &Rc<Ctx>) {
        if let Ok((eng, copied, legacy)) = Self::load(inner).await {
            *self.engine.borrow_mut() = eng;
            *self.copied.borrow_mut() = copied;
            self.legacy_ids.set(legacy);
            self.stored_now();
        }
    }

    /// Asks the app's resolver functions about the conflicts in a push
    /// answer (no engine borrow is held while they run; one may be async).
    /// A resolver that throws or answers nonsense decides nothing: the
    /// collection's safe default (server-wins) applies, and an `error`
    /// event says why.
    pub(super) async fn decide(
        &self,
        inner: &Rc<Ctx>,
        resp: &PushResponse,
    ) -> SortedMap<u64, Decision> {
        let mut out = SortedMap::new();
        for r in &resp.results {
            let MutationResult::Conflict { mid, id, doc, .. } = r else {
                continue;
            };
            let (f, ctx) = {
                let eng = self.engine.borrow();
                let Some(e) = eng.outbox().iter().find(|e| e.mutation.mid == *mid) else {
                    continue;
                };
                let coll = &e.mutation.coll;
                let Some(f) = inner.resolvers.get(coll) else {
                    continue;
                };
                let ctx = json!({
                    "collection": coll, "id": id, "local": eng.view(coll, &e.mutation.id),
                    "remote": doc, "base": e.base_doc,
                });
                (f.clone(), ctx)
            };
            match self.ask_resolver(inner, &f, &ctx, id).await {
                Ok(d) => {
                    out.insert(*mid, d);
                }
                Err(why) => inner.publish(
                    "error",
                    json!({
                        "code": "RESOLVER_FAILED",
                        "message": format!("the conflict resolver of {} failed for {id} ({why}); the server's document stands", ctx["collection"].as_str().unwrap_or("")),
                        "retryable": false,
                    }),
                ),
            }
        }
        out
    }

    pub(super) async fn ask_resolver(
        &self,
        inner: &Rc<Ctx>,
        f: &Function,
        ctx: &Value,
        id: &str,
    ) -> Result<Decision, String> {
        let got = glue::call_resolver(f, &crate::idb::to_user_js(ctx));
        let field = |k: &str| js_sys::Reflect::get(&got, &k.into()).unwrap_or_default();
        let mut answer = field("ok");
        if answer.is_undefined() && !field("error").is_undefined() {
            let why = field("error").as_string().unwrap_or_default();
            return Err(format!("it threw: {why}"));
        }
        if answer.has_type::<js_sys::Promise>() {
            answer = JsFuture::from(answer.unchecked_into::<js_sys::Promise>())
                .await
                .map_err(|e| format!("its promise rejected: {e:?}"))?;
        }
        let text = glue::encode_json(&answer, "resolution", "INVALID_DOCUMENT")
            .map_err(|e| ErrorInfo::of(&e).message)?;
        let v: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
        let Value::Object(mut doc) = v else {
            return Err(
                "it must return a document or { keep: \"local\" | \"remote\" | \"both\" }".into(),
            );
        };
        if doc.len() == 1 {
            match doc.get("keep").and_then(Value::as_str) {
                Some("local") => return Ok(Decision::KeepLocal),
                Some("remote") => return Ok(Decision::KeepRemote),
                Some("both") => {
                    return Ok(Decision::KeepBoth {
                        id: inner.new_temp_id(),
                    })
                }
                Some(other) => return Err(format!("unknown keep {other:?}")),
                None => {}
            }
        }
        match doc.get("id") {
            None => {}
            Some(Value::String(s)) if s == id => {}
            Some(_) => return Err("the document's id differs from the conflicting one".into()),
        }
        doc.shift_remove("id");
        if serde_json::to_string(&doc).map_or(0, |t| t.len()) > inner.schema.max_doc_bytes {
            return Err("the document is too large".into());
        }
        Ok(Decision::Doc(doc))
    }

    /// Moves server changes to `"manual"` collections out of `changes` into
    /// `_held`. A resync clears what was held (the stream from zero brings
    /// it again) and, while it runs, nothing is held: the rebuilt server
    /// state must be complete when it replaces the old one.
    pub(super) fn hold(
        &self,
        eng: &ClientSync,
        resync: bool,
        changes: &mut Vec<Change>,
        ops: &mut Vec<Value>,
    ) {
        if self.manual.is_empty() {
            return;
        }
        if resync {
            ops.push(json!({"s": HELD, "clear": true}));
            return;
        }
        if eng.resyncing() {
            return;
        }
        changes.retain(|c| {
            // This client's own writes coming back are not news: applying
            // them settles their outbox entries, or their push answer did
            // already (the stored version, loaded for this step, has them).
            let own = eng
                .awaited_version(&c.coll, &c.id)
                .is_some_and(|v| v >= c.version)
                || eng
                    .server_doc(&c.coll, &c.id)
                    .is_some_and(|d| d.version >= c.version);
            if self.manual.contains(&c.coll) && !own {
                ops.push(json!({"s": HELD, "put": c}));
                false
            } else {
                true
            }
        });
    }

    pub(super) fn after_commit(&self, inner: &Rc<Ctx>, out: StepPlan) {
        crate::trace::step(inner, &out);
        for e in &out.events {
            if let Event::Idmap { tmp, id } = e {
                inner.add_alias(tmp, id);
            }
        }
        let restamped: Vec<String> = out
            .restamped
            .iter()
            .filter(|c| !out.colls.contains(*c))
            .cloned()
            .collect();
        if !out.colls.is_empty() {
            let colls: Vec<String> = out.colls.into_iter().collect();
            inner.live.changed(&colls, true);
        }
        if !restamped.is_empty() {
            inner.live.restamped(&restamped, true);
        }
        for e in &out.events {
            let kind = match e {
                Event::Idmap { .. } => "idmap",
                Event::Rejected { .. } => "rejected",
                Event::Conflict { .. } => "conflict",
            };
            let mut v = to_value(e);
            if let Event::Conflict { coll, .. } = e {
                v["policy"] = json!(policy_name(inner, coll));
            }
            inner.publish(kind, v);
        }
        if !out.changes.is_empty() {
            inner.publish(
                "change",
                json!({"changes": out.changes, "origin": "remote"}),
            );
        }
    }
}

/// A record of `_ids`.
#[derive(serde::Deserialize)]
pub(super) struct IdRecord {
    t: String,
    id: String,
}

/// The id map: `_ids`, plus what `_meta` still holds from a version that
/// kept it there (true if it did).
pub(crate) async fn read_id_map(inner: &Rc<Ctx>) -> JsResult<(bool, SortedMap<String, String>)> {
    let db = inner.db().await?;
    let tx = Db::tx(&db, &[META, IDS], false)?;
    let read = |r: Result<web_sys::IdbRequest, JsValue>| r.map_err(|e| storage(e, "read"));
    let reqs = [
        read(Db::store(&tx, META)?.get(&"sync".into()))?,
        read(Db::store(&tx, IDS)?.get_all())?,
    ];
    let got = crate::idb::wait_all(&reqs.iter().collect::<Vec<_>>(), "read the id map").await?;
    let mut map: SortedMap<String, String> = js_sys::Reflect::get(&got[0], &"v".into())
        .ok()
        .filter(|v| !v.is_undefined())
        .and_then(|v| js_sys::Reflect::get(&v, &"idMap".into()).ok())
        .and_then(|m| parse::<SortedMap<String, String>>(&m))
        .unwrap_or_default();
    let legacy = !map.is_empty();
    add_ids(&mut map, &got[1]);
    Ok((legacy, map))
}

/// Adds the records of `_ids` (a `getAll`) to an id map.
pub(super) fn add_ids(map: &mut SortedMap<String, String>, records: &JsValue) {
    let ids: Vec<IdRecord> = parse(records).unwrap_or_default();
    map.extend(ids.into_iter().map(|r| (r.t, r.id)));
}

/// The stored server state of `keys` (see glue.js `loadStates`), and the
/// keys among them whose state `_server` holds.
pub(super) async fn read_states(
    tx: &web_sys::IdbTransaction,
    keys: &[Key],
    fresh: &SortedSet<Key>,
) -> JsResult<(Vec<ServerRecord>, SortedSet<Key>)> {
    if keys.is_empty() {
        return Ok((vec![], SortedSet::new()));
    }
    let named: Vec<Value> = keys
        .iter()
        .map(|k| {
            if fresh.contains(k) {
                json!([k.0, k.1, 1])
            } else {
                json!([k.0, k.1])
            }
        })
        .collect();
    let text = JsFuture::from(glue::load_states(tx, SERVER, &to_js(&named)))
        .await
        .map_err(|e| storage(e, "read server state"))?
        .as_string()
        .unwrap_or_default();
    let got: Vec<(Option<ServerDoc>, bool)> = serde_json::from_str(&text)
        .map_err(|e| storage(JsValue::from_str(&e.to_string()), "read server state"))?;
    let mut states = vec![];
    let mut copied = SortedSet::new();
    for ((coll, id), (state, has_copy)) in keys.iter().zip(got) {
        if has_copy {
            copied.insert((coll.clone(), id.clone()));
        }
        if let Some(state) = state {
            states.push(ServerRecord {
                coll: coll.clone(),
                id: id.clone(),
                state,
            });
        }
    }
    Ok((states, copied))
}

impl SyncLoop {
    /// The server state of the documents of `handed` entries that the
    /// engine does not hold, if the writes saved a `_server` copy of
    /// every one (see `SyncLoop::hand_off`); None if one must be read.
    #[inline(never)]
    pub(super) fn handed_states(&self, handed: &[Handed]) -> Option<SortedMap<Key, ServerDoc>> {
        let mut known = SortedMap::new();
        let mut keys = Vec::with_capacity(handed.len());
        for h in handed {
            let coll = h.entry.get("coll")?.as_str()?;
            let id = h.entry.get("id")?.as_str()?;
            let key = (coll.to_owned(), id.to_owned());
            if let Some(state) = h.copy.as_ref().and_then(|c| copy_state(c, coll, id)) {
                known.insert(key.clone(), state);
            }
            keys.push(key);
        }
        let eng = self.engine.borrow();
        eng.needs(keys)
            .iter()
            .all(|k| known.contains_key(k))
            .then_some(known)
    }
}

/// `read_states`' answer for `needs` from `known` (`handed_states`), or
/// None if one of them is not there.
#[inline(never)]
fn take_states(
    known: &mut SortedMap<Key, ServerDoc>,
    needs: &[Key],
) -> Option<(Vec<ServerRecord>, SortedSet<Key>)> {
    let mut states = Vec::with_capacity(needs.len());
    for (coll, id) in needs {
        let state = known.remove(&(coll.clone(), id.clone()))?;
        states.push(ServerRecord {
            coll: coll.clone(),
            id: id.clone(),
            state,
        });
    }
    Some((states, needs.iter().cloned().collect()))
}

/// The server state a `_server` copy (`plan::server_copy`) of `coll`/`id`
/// holds, as `read_states` reads it (glue.js `loadStates`).
fn copy_state(copy: &Value, coll: &str, id: &str) -> Option<ServerDoc> {
    if copy.get("coll")?.as_str()? != coll
        || copy.get("id")?.as_str()? != id
        || copy.get("m").is_some()
    {
        return None;
    }
    let version = copy.get("version")?.as_u64()?;
    let gen = copy.get("g").and_then(Value::as_u64).unwrap_or(0);
    let doc = match copy.get("d") {
        Some(Value::String(text)) => Some(Doc::Text(DocText::from_text(text.clone()).ok()?)),
        Some(_) => return None,
        None => None,
    };
    Some(ServerDoc { doc, version, gen })
}

/// True if conflicts of `coll` wait for the app (`conflicts: "manual"`).
/// The name of a collection's conflict policy, as the options give it.
pub(super) fn policy_name(inner: &Ctx, coll: &str) -> &'static str {
    match inner.schema.collections.get(coll).map(|s| s.conflicts) {
        Some(ConflictMode::LastWriteWins) => "lastWriteWins",
        Some(ConflictMode::FieldMerge) => "fieldMerge",
        Some(ConflictMode::Custom) => "custom",
        Some(ConflictMode::Manual) => "manual",
        _ => "serverWins",
    }
}

pub(super) fn to_value(v: &impl Serialize) -> Value {
    serde_json::to_value(v).expect("sync types serialize")
}

#[cfg(test)]
mod tests {
    use super::copy_state;
    use serde_json::json;
    use syncstore_core::sync::plan::{server_copy, settle_marker};
    use syncstore_core::sync::ServerDoc;

    /// What `read_states` makes of a `_server` entry: glue.js `loadStates`
    /// writes `{"doc": d, "version": v, "gen": g}` for a copy.
    fn as_read(copy: &serde_json::Value) -> ServerDoc {
        let doc = copy["d"].as_str().unwrap_or("null");
        let text = format!(
            r#"{{"doc":{doc},"version":{},"gen":{}}}"#,
            copy["version"],
            copy["g"].as_u64().unwrap_or(0)
        );
        serde_json::from_str(&text).unwrap()
    }

    #[test]
    fn a_handed_copy_is_the_state_read_states_would_read() {
        let doc = json!({"id": "a", "title": "x \"y\"", "n": [1, 2.5, null]});
        for (doc, gen) in [(Some(&doc), 0), (Some(&doc), 3), (None, 0)] {
            let copy = server_copy("todos", "a", doc, 7, gen);
            let state = copy_state(&copy, "todos", "a").expect("a copy");
            assert_eq!(state, as_read(&copy), "{copy}");
            assert_eq!((state.version, state.gen), (7, gen));
            assert_eq!(state.doc.is_some(), doc.is_some());
        }
    }

    #[test]
    fn only_a_copy_of_the_entry_s_own_document_counts() {
        let copy = server_copy("todos", "a", Some(&json!({"id": "a"})), 7, 0);
        assert!(copy_state(&copy, "todos", "b").is_none());
        assert!(copy_state(&copy, "lists", "a").is_none());
        let marker = settle_marker(
            "todos",
            "a",
            &ServerDoc {
                doc: None,
                version: 7,
                gen: 0,
            },
        );
        assert!(copy_state(&marker, "todos", "a").is_none());
    }
}
