//! The write path and the sync engine agree on the base of an edit.
//!
//! The write path (`write::apply`) stores each edit's outbox entry with a
//! base: the document's server version, or none for the follow-up of an
//! unsettled edit, which it recognises by the server copy the first edit
//! saved in `_server` (`Stored::under`). When the step takes the entry in,
//! the engine gives its own (`ClientSync::base_for`: none while the
//! document has outbox entries). They must agree, or the step stores the
//! entry a second time (in the browser, a readwrite step beside the app's
//! writes). Here a device keeps what the browser would (records, `_server`,
//! the entries written since the last step) as the write path and the step
//! planner write it, and steps read it as glue.js `loadStates` does,
//! against the model server.

mod common;

use std::collections::BTreeMap;
use syncstore_core::sorted::SortedSet;

use common::model::ModelServer;
use common::Rng;
use serde_json::{json, Value};
use syncstore_core::protocol::{
    Change, Mutation, MutationResult, PullResponse, PushResponse, ServerMessage,
};
use syncstore_core::schema::Schema;
use syncstore_core::sync::plan::{Planner, StepPlan};
use syncstore_core::sync::{ClientSync, Entry, ServerDoc, ServerWins};
use syncstore_core::write::{self, Key, ServerEntry, Stored};

const COLL: &str = "todos";

enum Input {
    Push(PushResponse),
    Frame(ServerMessage),
    Pull(PullResponse),
}

/// A client as the browser binding stores it.
struct Device {
    name: &'static str,
    schema: Schema,
    eng: ClientSync,
    copied: SortedSet<Key>,
    /// The collection's records by id.
    records: BTreeMap<String, Value>,
    /// `_server` by document id: copies and settle markers.
    server: BTreeMap<String, Value>,
    /// Outbox entries written since the last step (mids assigned).
    queued: Vec<Value>,
    next_mid: u64,
    /// Per entry taken in: (mid, the base the write path stored, the
    /// base the engine gave).
    bases: Vec<(u64, Option<u64>, Option<u64>)>,
    /// Answers and frames not delivered yet.
    answers: Vec<PushResponse>,
    frames: Vec<ServerMessage>,
}

impl Device {
    fn new(name: &'static str) -> Self {
        Device {
            name,
            schema: Schema::from_options(&json!({"collections": {COLL: {"indexes": ["n"]}}}))
                .unwrap(),
            eng: ClientSync::new(),
            copied: SortedSet::new(),
            records: BTreeMap::new(),
            server: BTreeMap::new(),
            queued: vec![],
            next_mid: 1,
            bases: vec![],
            answers: vec![],
            frames: vec![],
        }
    }

    /// The document as the write path reads it: the record, under its
    /// `_server` entry (src/writes.rs `stored`).
    fn stored(&self, id: &str) -> Option<Stored> {
        let rec = self.records.get(id)?;
        let stored = Stored {
            doc: serde_json::from_str(rec["d"].as_str().unwrap()).unwrap(),
            version: rec["v"].as_u64(),
            gen: rec["g"].as_u64().unwrap_or(0),
            conflict: rec.get("c").is_some(),
            server_copy: rec.get("s").is_some(),
        };
        let entry = match self.server.get(id) {
            None => ServerEntry::None,
            Some(e) if e.get("m").is_some() => ServerEntry::Marker {
                version: e["version"].as_u64(),
                gen: e["g"].as_u64().unwrap_or(0),
            },
            Some(_) => ServerEntry::Copy,
        };
        Some(stored.under(entry))
    }

    /// One awaited write of `ops`, in its own transaction.
    fn write(&mut self, ops: Value) {
        let muts = write::parse_ops(&ops, &self.schema, false, || unreachable!()).unwrap();
        let current = write::reads_needed(&muts)
            .into_iter()
            .map(|k| {
                let s = self.stored(&k.1);
                (k, s)
            })
            .collect();
        let plan = write::apply(&muts, &self.schema, false, &current).unwrap();
        for w in plan.writes {
            match w.record {
                Some(r) => self.records.insert(w.id, r),
                None => self.records.remove(&w.id),
            };
        }
        for c in plan.server_copies {
            self.server.insert(c["id"].as_str().unwrap().into(), c);
        }
        for mut e in plan.outbox {
            e["mid"] = json!(self.next_mid);
            self.next_mid += 1;
            self.queued.push(e);
        }
    }

    fn update(&mut self, id: &str, patch: Value) {
        self.write(json!([{"op": "update", "coll": COLL, "id": id, "patch": patch}]));
    }

    /// The server state of a document, read as glue.js `loadStates` reads
    /// it, and whether `_server` holds an entry for it.
    fn load_state(&self, id: &str, fresh: bool) -> (Option<ServerDoc>, bool) {
        let c = self.server.get(id);
        let r = self.records.get(id);
        let state = match c {
            Some(c) if c.get("m").is_some() => {
                r.map(|r| json!({"doc": parse(&r["d"]), "version": c["version"], "gen": c["g"]}))
            }
            Some(c) => {
                Some(json!({"doc": c.get("d").map(parse), "version": c["version"], "gen": c["g"]}))
            }
            None => r
                .filter(|r| !fresh && r["v"].is_u64() && r.get("s").is_none())
                .map(|r| json!({"doc": parse(&r["d"]), "version": r["v"], "gen": r["g"]})),
        };
        let state = state.map(|mut s| {
            if s["gen"].is_null() {
                s["gen"] = json!(0);
            }
            serde_json::from_value(s).unwrap()
        });
        (state, c.is_some())
    }

    /// One step (src/sync/step.rs `step_in`): the entries written since
    /// the last step, then `inputs`; read, decide, write.
    fn step(&mut self, inputs: Vec<Input>) {
        let queued: Vec<Entry> = self
            .queued
            .drain(..)
            .map(|e| serde_json::from_value(e).unwrap())
            .collect();
        let fresh: SortedSet<Key> = queued
            .iter()
            .map(|e| self.eng.keys_of_local(&e.mutation))
            .collect();
        let mut keys: Vec<Key> = fresh.iter().cloned().collect();
        for i in &inputs {
            match i {
                Input::Push(r) => keys.extend(self.eng.keys_of_push(r)),
                Input::Frame(m) => keys.extend(self.eng.keys_of_message(m)),
                Input::Pull(p) => keys.extend(ClientSync::keys_of_changes(&p.changes)),
            }
        }
        for k in self.eng.needs(keys) {
            let (state, copied) = self.load_state(&k.1, fresh.contains(&k));
            self.eng.load(&k.0, &k.1, state);
            if copied {
                self.copied.insert(k);
            } else {
                self.copied.remove(&k);
            }
        }
        let mut out = StepPlan::default();
        let mut planner = Planner {
            schema: &self.schema,
            copied: &mut self.copied,
            now: 0.0,
            changes: false,
        };
        for e in queued {
            let mut m = e.mutation;
            let stored = m.base;
            m.base = self.eng.base_for(&m.coll, &m.id);
            self.bases.push((m.mid, stored, m.base));
            let fx = self.eng.local_stored(m, false).unwrap();
            planner.effects(&self.eng, &fx, &mut out, false);
        }
        for i in inputs {
            let fx = match i {
                Input::Push(r) => self.eng.on_push_response(&r, &ServerWins),
                Input::Frame(m) => self.eng.on_server_message(&m, &ServerWins),
                Input::Pull(p) => self.eng.on_pull(&p),
            };
            planner.effects(&self.eng, &fx, &mut out, true);
        }
        planner.finish(&self.eng, &mut out);
        for op in &out.ops {
            let rows = match op["s"].as_str() {
                Some(COLL) => &mut self.records,
                Some("_server") => &mut self.server,
                _ => continue,
            };
            if let Some(v) = op.get("put") {
                rows.insert(v["id"].as_str().unwrap().into(), v.clone());
            } else if let Some(k) = op.get("del") {
                let id = if k.is_array() { &k[1] } else { k };
                rows.remove(id.as_str().unwrap());
            }
        }
        self.eng.evict();
        planner.evicted(&self.eng);
        self.check_copies();
    }

    /// After every step: `_server` holds a copy of a server document exactly
    /// while the engine has outbox entries for it.
    fn check_copies(&self) {
        for id in self.records.keys() {
            let s = self.stored(id).unwrap();
            assert_eq!(
                s.server_copy,
                self.eng.has_entries(COLL, id) && self.eng.server_doc(COLL, id).is_some(),
                "{}: {id}: server copy {:?} / the engine's entries {:?}",
                self.name,
                self.server.get(id),
                self.eng
                    .outbox()
                    .iter()
                    .filter(|e| e.mutation.id == *id)
                    .collect::<Vec<_>>()
            );
        }
    }

    /// Takes in the entries written since the last step.
    fn take_in(&mut self) {
        self.step(vec![]);
    }

    /// Sends what is pending; the answer and the frame of its changes wait
    /// in `answers` and `frames`.
    fn send(&mut self, srv: &mut ModelServer) {
        let batch: Vec<Mutation> = self.eng.next_push(100);
        if batch.is_empty() {
            return;
        }
        let (resp, changes) = srv.push(self.name, &batch);
        self.answers.push(resp);
        if let Some(f) = srv.live_frame(&changes) {
            self.frames.push(f);
        }
    }

    fn answer(&mut self) {
        let r = self.answers.remove(0);
        self.step(vec![Input::Push(r)]);
    }

    /// The next live frame: no news (the echo of a write settled on its
    /// answer) touches no record (src/sync/step.rs `stale_frames`).
    fn frame(&mut self) {
        let f = self.frames.remove(0);
        if let ServerMessage::Changes { changes, cursor } = &f {
            if self.eng.is_echo(changes) {
                self.eng.skip_echo(changes, cursor);
                return;
            }
        }
        self.step(vec![Input::Frame(f)]);
    }

    fn pull(&mut self, srv: &ModelServer) {
        loop {
            let p = srv.pull(self.name, self.eng.cursor(), 100);
            let more = p.more;
            self.step(vec![Input::Pull(p)]);
            if !more {
                return;
            }
        }
    }

    /// The base stored with the last entry taken in.
    fn last_base(&self) -> Option<u64> {
        self.bases.last().unwrap().1
    }

    fn assert_bases_agree(&self) {
        let differ: Vec<_> = self.bases.iter().filter(|(_, w, e)| w != e).collect();
        assert!(
            differ.is_empty(),
            "{}: (mid, written base, engine's base) that differ: {differ:?}",
            self.name
        );
    }
}

fn parse(text: &Value) -> Value {
    serde_json::from_str(text.as_str().unwrap()).unwrap()
}

fn version(srv: &ModelServer, id: &str) -> u64 {
    let c: Vec<Change> = srv.pull("reader", None, 1000).changes;
    c.iter()
        .filter(|c| c.id == id)
        .map(|c| c.version)
        .max()
        .unwrap()
}

/// A device that pulled document `a` (`{n: 1}`), inserted by another client.
fn pulled() -> (Device, ModelServer) {
    let mut srv = ModelServer::new();
    let mut other = Device::new("other");
    other.write(json!([{"op": "insert", "coll": COLL, "doc": {"id": "a", "n": 1}}]));
    other.take_in();
    other.send(&mut srv);
    let mut d = Device::new("device");
    d.pull(&srv);
    assert!(d.stored("a").unwrap().version.is_some());
    (d, srv)
}

#[test]
fn an_edit_the_server_applied_as_a_no_op_leaves_no_copy_behind() {
    let (mut d, mut srv) = pulled();
    let v = version(&srv, "a");
    // The patch the document already satisfies: applied at the version
    // held, no new version, no change to stream.
    d.update("a", json!({"n": 1}));
    d.take_in();
    assert_eq!(d.last_base(), Some(v));
    d.send(&mut srv);
    assert!(d.frames.is_empty(), "a no-op commits no change");
    assert!(matches!(
        d.answers[0].results[0],
        MutationResult::Applied { prev: None, version, .. } if version == v
    ));
    d.answer();
    assert!(!d.eng.has_entries(COLL, "a"));
    assert_eq!(
        d.server["a"]["m"], 1,
        "a settle marker in place of the copy"
    );
    // The next edit is no follow-up: based on the version, as the engine says.
    d.update("a", json!({"n": 2}));
    d.take_in();
    assert_eq!(d.last_base(), Some(v));
    d.assert_bases_agree();
    d.send(&mut srv);
    d.answer();
    assert_eq!(srv.live_docs()[&(COLL.into(), "a".into())]["n"], 2);
}

#[test]
fn an_edit_whose_change_arrived_before_its_answer_leaves_no_copy_behind() {
    let (mut d, mut srv) = pulled();
    d.update("a", json!({"n": 2}));
    d.take_in();
    d.send(&mut srv);
    // The socket brings the change before the push answer comes.
    d.frame();
    d.answer();
    let v = version(&srv, "a");
    assert!(!d.eng.has_entries(COLL, "a"));
    d.update("a", json!({"n": 3}));
    d.take_in();
    assert_eq!(d.last_base(), Some(v));
    d.assert_bases_agree();
}

#[test]
fn a_refused_edit_that_changed_nothing_leaves_no_copy_behind() {
    let (mut d, srv) = pulled();
    let v = version(&srv, "a");
    d.update("a", json!({"n": 1}));
    d.take_in();
    let mid = d.bases.last().unwrap().0;
    d.step(vec![Input::Push(PushResponse {
        results: vec![MutationResult::Rejected {
            mid,
            code: "FORBIDDEN".into(),
            message: "read only".into(),
        }],
        id_map: Default::default(),
        last_mutation_id: mid,
    })]);
    d.update("a", json!({"n": 2}));
    d.take_in();
    assert_eq!(d.last_base(), Some(v));
    d.assert_bases_agree();
}

#[test]
fn a_follow_up_of_an_unsettled_edit_has_no_base_on_both_sides() {
    let (mut d, mut srv) = pulled();
    let v = version(&srv, "a");
    d.update("a", json!({"n": 2}));
    d.take_in();
    d.send(&mut srv);
    // Written while the first edit waits for its answer, taken in after.
    d.update("a", json!({"n": 3}));
    d.answer();
    d.frame();
    assert_eq!(
        d.bases.iter().map(|b| b.1).collect::<Vec<_>>(),
        [Some(v), None]
    );
    d.assert_bases_agree();
    d.send(&mut srv);
    d.answer();
    assert!(!d.eng.has_entries(COLL, "a"));
    d.update("a", json!({"n": 4}));
    d.take_in();
    assert_eq!(d.last_base(), Some(version(&srv, "a")));
    d.assert_bases_agree();
}

/// Random edits (some of them no-ops) of a few documents by two devices,
/// with sends, answers, frames (before or after their answers, or lost)
/// and pulls interleaved: at every step `_server` holds a copy exactly
/// while the document has entries, and every entry is taken in with the
/// base the write path stored.
#[test]
fn random_interleavings_agree_on_every_base() {
    let seeds: u64 = std::env::var("FOLLOW_UP_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    for seed in 0..seeds {
        let mut rng = Rng::new(seed);
        let mut srv = ModelServer::new();
        let mut devs = [Device::new("d1"), Device::new("d2")];
        let ids = ["a", "b", "c"];
        devs[0].write(json!(ids
            .iter()
            .map(|id| json!({"op": "insert", "coll": COLL, "doc": {"id": id, "n": 0}}))
            .collect::<Vec<_>>()));
        devs[0].take_in();
        devs[0].send(&mut srv);
        devs[0].answer();
        devs[0].frames.clear();
        for d in &mut devs {
            d.pull(&srv);
        }
        for _ in 0..60 {
            let d = &mut devs[rng.below(2) as usize];
            match rng.below(8) {
                0..=2 => {
                    let id = ids[rng.below(3) as usize];
                    let n = rng.below(3);
                    d.update(id, json!({"n": n}));
                }
                3 => d.take_in(),
                4 => d.send(&mut srv),
                5 if !d.answers.is_empty() => d.answer(),
                6 if !d.frames.is_empty() => {
                    if rng.chance(20) {
                        d.frames.remove(0);
                    } else {
                        d.frame();
                    }
                }
                _ => d.pull(&srv),
            }
        }
        for d in &mut devs {
            d.take_in();
            while !d.answers.is_empty() {
                d.answer();
            }
            d.pull(&srv);
            assert!(
                d.bases.iter().all(|(_, w, e)| w == e),
                "seed {seed}: {}: (mid, written base, engine's base): {:?}",
                d.name,
                d.bases
                    .iter()
                    .filter(|(_, w, e)| w != e)
                    .collect::<Vec<_>>()
            );
        }
    }
}
