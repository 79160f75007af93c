//! Socket frames planned ahead: while a step's writes commit, the loop
//! takes the next frames from the inbox and plans them on a copy of the
//! engine, assuming IndexedDB holds nothing of the documents they name (a
//! first sync, where it holds nothing at all). The next step checks that in
//! its own transaction before it writes anything (`applyIfAbsent` in
//! glue.js: no new outbox entry, the same leader term, no record and no
//! `_server` entry for any of the documents) and only then issues the
//! planned requests; if anything is stored that the plan did not read, it
//! writes nothing and the frames go through an ordinary step (read, decide,
//! write). So the parse, the engine and the planner of page n+1 run while
//! IndexedDB commits page n, and a page of new documents costs no read
//! round trip before its writes (docs/architecture.md, "The sync loop").

use super::*;
use crate::idb::{CONFLICTS, HELD, REJECTED};
use syncstore_core::sorted::{SortedMap, SortedSet};
use syncstore_core::sync::plan::{is_manual, Planner, StepPlan};

/// Frames taken from the inbox during a step's commit, for the next step.
pub(super) struct Ahead {
    /// The socket they came from ([`SyncLoop::socket_gen`]).
    pub gen: u32,
    /// As [`SyncLoop::take_frames`] gives them.
    pub inputs: Vec<Input>,
    pub plan: Option<Planned>,
}

/// What the step that takes in [`Ahead::inputs`] writes if nothing the
/// plan assumed absent is stored.
pub(super) struct Planned {
    /// The step ([`SyncLoop::steps`]) during whose commit it was planned:
    /// any other step since makes it stale.
    after: u64,
    /// The engine once the frames are taken in (evicted as after a commit).
    eng: ClientSync,
    /// The requests, as `applyOps` takes them.
    ops: JsValue,
    /// What `applyIfAbsent` checks first.
    check: JsValue,
    /// The rest of the plan, for after the commit (its `ops` moved out:
    /// the trace reads them only for outbox entries, and a plan made
    /// ahead has none).
    out: StepPlan,
}

impl SyncLoop {
    /// Called by a step once its requests are issued, before it awaits the
    /// commit: takes the next frames and plans them, when nothing can
    /// change what they do but what IndexedDB holds (no outbox entry, no
    /// held answer, no resync, no collection whose changes wait for the
    /// app).
    pub(super) fn plan_ahead(&self, inner: &Rc<Ctx>) {
        if self.ahead.borrow().is_some()
            || self.stopped.get()
            || self.has_news()
            || self.legacy_ids.get()
            || !self.held.borrow().is_empty()
        {
            return;
        }
        {
            let eng = self.engine.borrow();
            if eng.pending() > 0 || eng.resyncing() {
                return;
            }
        }
        let gen = self.socket_gen.get();
        {
            // Text frames of the current socket only: anything else (its
            // opening, its close) is the loop's to see when it comes to it.
            let inbox = self.inbox.borrow();
            if inbox.is_empty()
                || !inbox
                    .iter()
                    .all(|(g, e)| *g == gen && matches!(e, SocketEvent::Text(_)))
            {
                return;
            }
        }
        let mut inputs = self.take_frames(inner);
        for input in &mut inputs {
            if let Input::Frame(ServerMessage::Changes { changes, .. }) = input {
                changes.retain(|c| synced_spec(&inner.schema, &c.coll).is_some());
            }
        }
        let plan = self.plan_frames(inner, &inputs);
        *self.ahead.borrow_mut() = Some(Ahead { gen, inputs, plan });
    }

    /// The plan of `inputs` if they are all `changes` frames of
    /// collections that apply server changes as they come, with news.
    fn plan_frames(&self, inner: &Rc<Ctx>, inputs: &[Input]) -> Option<Planned> {
        let schema = &inner.schema;
        if inputs.is_empty() {
            return None;
        }
        for input in inputs {
            let Input::Frame(ServerMessage::Changes { changes, .. }) = input else {
                return None;
            };
            if changes
                .iter()
                .any(|c| self.manual.contains(&c.coll) || is_manual(schema, &c.coll))
            {
                return None;
            }
        }
        if self.echoes_only(inputs).is_some() {
            return None;
        }
        let mut eng = self.engine.borrow().clone_evicted();
        let keys = inputs.iter().flat_map(|i| match i {
            Input::Frame(m) => eng.keys_of_message(m),
            _ => vec![],
        });
        let needs = eng.needs(keys.collect::<Vec<_>>());
        for (coll, id) in &needs {
            eng.load(coll, id, None);
        }
        let mut copied = SortedSet::new();
        let mut out = StepPlan::default();
        {
            let mut planner = Planner {
                schema,
                copied: &mut copied,
                now: Date::now(),
                changes: crate::changes::wanted(inner),
            };
            let mut touched = false;
            for input in inputs {
                if let Input::Frame(m) = input {
                    let fx = eng.on_server_message(m, &self.policies);
                    touched |= !fx.is_empty();
                    planner.effects(&eng, &fx, &mut out, true);
                }
            }
            if touched {
                out.ops
                    .push(json!({"s": META, "put": {"k": "sync", "v": eng.meta_without_ids()}}));
            }
            planner.finish(&eng, &mut out);
        }
        if out.sweep.is_some() || !out.events.is_empty() || eng.pending() > 0 {
            return None;
        }
        eng.evict();
        let mut by_coll: SortedMap<&str, Vec<&str>> = SortedMap::new();
        for (coll, id) in &needs {
            by_coll.entry(coll).or_default().push(id);
        }
        let check = json!({
            "outbox": OUTBOX, "meta": META, "server": SERVER, "term": self.term,
            "lastMid": eng.next_mid() - 1,
            "keys": by_coll.into_iter().collect::<Vec<_>>(),
        });
        let ops = to_js(&std::mem::take(&mut out.ops));
        Some(Planned {
            after: self.steps.get(),
            eng,
            ops,
            check: to_js(&check),
            out,
        })
    }

    /// Takes in frames planned ahead: `Ok(false)` (nothing written) if the
    /// plan is stale or IndexedDB holds something it did not read; the
    /// caller then runs an ordinary step with the same frames.
    pub(super) async fn step_ahead(
        &self,
        inner: &Rc<Ctx>,
        inputs: &[Input],
        p: Planned,
    ) -> JsResult<bool> {
        if p.after != self.steps.get()
            || self.stopped.get()
            || self.has_news()
            || self.legacy_ids.get()
            || !self.held.borrow().is_empty()
        {
            crate::trace::planned(inner, changes_in(inputs), Some("stale"));
            return Ok(false);
        }
        self.steps.set(self.steps.get() + 1);
        self.last_step_at.set(Date::now());
        let mut stores: Vec<&str> = synced_colls(&inner.schema).chain([HELD]).collect();
        stores.extend([OUTBOX, SERVER, META, CONFLICTS, IDS, REJECTED]);
        let db = inner.db().await?;
        let tx = Db::tx(&db, &stores, true)?;
        let applied = JsFuture::from(glue::apply_if_absent(&tx, &p.check, &p.ops))
            .await
            .map_err(|e| storage(e, "sync"))?;
        if applied.as_bool() != Some(true) {
            // Aborted: nothing was written.
            crate::trace::planned(inner, changes_in(inputs), Some("stored"));
            return Ok(false);
        }
        crate::trace::planned(inner, changes_in(inputs), None);
        self.track_progress(inputs);
        self.outbox_dirty.set(false);
        // The engine runs ahead of IndexedDB from here, as in any step.
        *self.engine.borrow_mut() = p.eng;
        self.copied.borrow_mut().clear();
        self.plan_ahead(inner);
        if let Err(e) = crate::idb::committed(&tx, "sync").await {
            self.ahead.borrow_mut().take();
            self.reload(inner).await;
            return Err(e);
        }
        self.stored_now();
        self.storage_ok();
        self.after_commit(inner, p.out);
        self.report_status(inner);
        Ok(true)
    }

    /// The frames for the next step: those planned ahead (if they came from
    /// the current socket), else what the inbox holds.
    pub(super) fn next_frames(&self, inner: &Rc<Ctx>) -> (Vec<Input>, Option<Planned>) {
        match self.ahead.borrow_mut().take() {
            Some(a) if a.gen == self.socket_gen.get() => (a.inputs, a.plan),
            _ => (self.take_frames(inner), None),
        }
    }

    /// Frames wait to be taken in (in the inbox, or taken ahead).
    pub(super) fn frames_waiting(&self) -> bool {
        !self.inbox.borrow().is_empty() || self.ahead.borrow().is_some()
    }
}
