//! One push inside a store's transaction, the same for every store: the
//! namespace's sequence taken first (so pushes to a namespace commit in seq
//! order), the clientId's owner, replays answered from stored results, new
//! mutations through the core's rules, results and the client's last mid
//! recorded, old results and id mappings pruned, the work budget
//! ([`ApplyLimits::max_push_work_bytes`]) enforced. And a pull page, filled
//! from either store's rows, and the `lastMutationId` a pull reports.

use syncstore_core::protocol::{
    Change, ChangeOp, DocText, PullResponse, PushRequest, PushResponse,
};
use syncstore_core::sync::apply::{rejected, DocStore, PushApply};

use super::{ApplyLimits, Cursors, PullClient, PushOutcome, Retention, StoreError};

/// What a push needs of a store's open transaction, scoped to one namespace
/// and client, on top of the documents ([`DocStore`]).
pub(crate) trait PushTx: DocStore<Error = StoreError> {
    /// Takes the namespace's change order for the rest of the transaction
    /// (other pushes to it wait until this one commits) and returns its
    /// head seq.
    fn lock_head(&mut self) -> Result<u64, StoreError>;
    /// Sets the namespace's head seq.
    fn set_head(&mut self, seq: u64) -> Result<(), StoreError>;
    /// The client's last processed mid and owner, if it ever pushed.
    fn client(&mut self) -> Result<Option<(u64, Option<String>)>, StoreError>;
    /// Records the client's last mid (and its owner, if it had none).
    fn save_client(&mut self, last: u64, owner: Option<&str>) -> Result<(), StoreError>;
    /// The stored result (JSON) of one of the client's mids.
    fn stored_result(&mut self, mid: u64) -> Result<Option<String>, StoreError>;
    /// Stores the result (JSON) of a mid; `map_tmp` calls until the next
    /// `save_result` belong to the same mid.
    fn save_result(&mut self, mid: u64, result: &str) -> Result<(), StoreError>;
    /// The mid whose temporary ids `map_tmp` records next.
    fn set_mid(&mut self, mid: u64);
    /// Stored bytes of documents and field versions read (`load`) and
    /// written (`store`) so far in this push: its work budget's measure.
    fn work(&self) -> usize;
    /// Deletes the client's results and id mappings of mids below `mid`.
    fn prune(&mut self, below: u64) -> Result<(), StoreError>;
}

fn corrupt(e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(e.to_string())
}

/// Applies one push inside the open transaction (or savepoint) of `tx`.
pub(crate) fn apply_push<T: PushTx>(
    tx: &mut T,
    owner: Option<&str>,
    req: &PushRequest,
    limits: ApplyLimits,
    retention: Retention,
) -> Result<PushOutcome, StoreError> {
    let start_seq = tx.lock_head()?;
    let client = tx.client()?;
    if let (Some(owner), Some((_, Some(stored)))) = (owner, &client) {
        if stored != owner {
            return Err(StoreError::ClientIdTaken);
        }
    }
    let first_last = client.as_ref().map_or(0, |c| c.0);
    let mut last = first_last;
    let mut ctx = PushApply::new(start_seq, limits.max_doc_bytes);
    let mut results = Vec::with_capacity(req.mutations.len());
    // Result bytes written; documents are counted by `tx.work()`.
    let mut result_bytes = 0;
    for m in &req.mutations {
        if m.mid <= last {
            // Already processed: answer with the remembered result.
            let result = match tx.stored_result(m.mid)? {
                Some(s) => serde_json::from_str(&s).map_err(corrupt)?,
                None => rejected(
                    m,
                    "STALE_MUTATION_ID",
                    format!(
                        "mid {} is not above the last processed mid {last} and was never seen \
                         (or its result is no longer kept)",
                        m.mid
                    ),
                ),
            };
            ctx.note_replay(tx, m)?;
            results.push(result);
        } else {
            tx.set_mid(m.mid);
            let result = ctx.apply(tx, m)?;
            let text = serde_json::to_string(&result).map_err(corrupt)?;
            result_bytes += text.len();
            tx.save_result(m.mid, &text)?;
            last = m.mid;
            results.push(result);
        }
        if tx.work() + result_bytes >= limits.max_push_work_bytes {
            // The work budget is spent: answer for what was applied (a
            // prefix, at least one mutation); the client pushes the rest.
            break;
        }
    }
    let PushApply {
        seq,
        id_map,
        changes,
        ..
    } = ctx;
    let claims = owner.is_some() && client.as_ref().is_none_or(|c| c.1.is_none());
    if client.is_none() || last != first_last || claims {
        tx.save_client(last, owner)?;
    }
    if seq != start_seq {
        tx.set_head(seq)?;
    }
    if last != first_last && last > retention.results_per_client {
        tx.prune(last - retention.results_per_client + 1)?;
    }
    Ok(PushOutcome {
        response: PushResponse {
            results,
            id_map,
            last_mutation_id: last,
        },
        changes,
    })
}

/// The `lastMutationId` a pull by `c` reports, from the stored `row` of its
/// clientId (last mid, owner): 0 if it never pushed, or if another owner
/// holds it (nothing about another user's client is revealed).
pub(crate) fn pulled_last_mid(c: PullClient<'_>, row: Option<(u64, Option<String>)>) -> u64 {
    match row {
        Some((_, Some(held))) if c.owner.is_some_and(|o| o != held) => 0,
        Some((last, _)) => last,
        None => 0,
    }
}

/// A stored change as read for a pull page.
pub(crate) struct RawChange {
    pub coll: String,
    pub id: String,
    pub doc: Option<String>,
    pub version: u64,
    pub ts: Option<u64>,
}

/// A pull page being filled: at most `take` changes and about `max_bytes`.
pub(crate) struct Page {
    take: usize,
    max_bytes: usize,
    bytes: usize,
    full: bool,
    changes: Vec<Change>,
}

impl Page {
    pub fn new(take: usize, max_bytes: usize) -> Self {
        Page {
            take,
            max_bytes,
            bytes: 0,
            full: false,
            changes: Vec::new(),
        }
    }

    /// Adds a change (rows come in seq order, `take + 1` at most); false
    /// once the page is full by bytes.
    pub fn add(&mut self, r: RawChange) -> Result<bool, StoreError> {
        // About the change's serialized size (the document's text plus the
        // envelope); a page holds at least one change.
        let size = 96 + r.coll.len() + r.id.len() + r.doc.as_ref().map_or(0, String::len);
        if !self.changes.is_empty() && self.bytes.saturating_add(size) > self.max_bytes {
            self.full = true;
            return Ok(false);
        }
        self.bytes += size;
        // The stored text goes out as it is: checked, not parsed.
        let doc = r.doc.map(DocText::from_text).transpose().map_err(corrupt)?;
        self.changes.push(Change {
            seq: r.version,
            coll: r.coll,
            id: r.id,
            op: if doc.is_some() {
                ChangeOp::Put
            } else {
                ChangeOp::Delete
            },
            doc,
            version: r.version,
            ts: r.ts,
        });
        Ok(true)
    }

    /// The answer: `from` the request's seq, `head` the namespace's.
    pub fn finish(
        mut self,
        from: u64,
        head: u64,
        total: Option<u64>,
        last_mutation_id: u64,
        cursors: &Cursors,
    ) -> PullResponse {
        let more = self.full || self.changes.len() > self.take;
        self.changes.truncate(self.take);
        let to = if more {
            self.changes.last().map_or(from, |c| c.seq)
        } else {
            head.max(from)
        };
        PullResponse {
            resync: false,
            changes: self.changes,
            cursor: cursors.encode(to),
            more,
            last_mutation_id,
            total,
        }
    }
}
