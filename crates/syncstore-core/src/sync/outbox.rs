//! The engine's outbox: entries in mid order, indexed by document, so
//! that what one input costs grows with what it names, not with the queue
//! (10,000 queued writes made every push answer replay and clone the whole
//! queue: bench row 11).

use crate::sorted::SortedMap;
use std::collections::VecDeque;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::engine::{Entry, EntryState};
use crate::protocol::Mutation;

/// Outbox entries in ascending mid order, with the mids of each document's
/// entries. Serialized as the list of entries.
#[derive(Debug, Clone, Default)]
pub struct Outbox {
    entries: VecDeque<Entry>,
    /// collection -> id -> the mids of the document's entries, ascending.
    by_key: SortedMap<String, SortedMap<String, Vec<u64>>>,
}

impl std::ops::Index<usize> for Outbox {
    type Output = Entry;
    fn index(&self, pos: usize) -> &Entry {
        &self.entries[pos]
    }
}

impl PartialEq for Outbox {
    fn eq(&self, other: &Self) -> bool {
        self.entries == other.entries
    }
}

impl Serialize for Outbox {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.entries.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Outbox {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Vec::<Entry>::deserialize(d).map(Outbox::from)
    }
}

impl From<Vec<Entry>> for Outbox {
    /// Sorts the entries by mid, and indexes them in key order, so that
    /// each document's index slot is an append (in mid order, a queue of
    /// edits of documents with random ids would insert into the middle of
    /// the sorted index each time).
    fn from(mut entries: Vec<Entry>) -> Self {
        crate::sorted::sort_by(&mut entries, |a, b| a.mutation.mid.cmp(&b.mutation.mid));
        let mut keys: Vec<(&str, &str, u64)> = entries
            .iter()
            .map(|e| {
                (
                    e.mutation.coll.as_str(),
                    e.mutation.id.as_str(),
                    e.mutation.mid,
                )
            })
            .collect();
        // Stable: each document's mids stay ascending.
        crate::sorted::sort_by(&mut keys, |a, b| (a.0, a.1).cmp(&(b.0, b.1)));
        let mut by_key: SortedMap<String, SortedMap<String, Vec<u64>>> = SortedMap::new();
        for (coll, id, mid) in keys {
            let ids = match by_key.get_mut(coll) {
                Some(ids) => ids,
                None => by_key.entry(coll.to_owned()).or_default(),
            };
            match ids.get_mut(id) {
                Some(mids) => mids.push(mid),
                None => {
                    ids.insert(id.to_owned(), vec![mid]);
                }
            }
        }
        Outbox {
            entries: entries.into(),
            by_key,
        }
    }
}

impl Outbox {
    /// The entries, in mid order.
    pub fn entries(&self) -> &VecDeque<Entry> {
        &self.entries
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True if there is none.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The entries, in mid order.
    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &Entry> + '_ {
        self.entries.iter()
    }

    /// The position of the entry with this mid.
    pub fn pos(&self, mid: u64) -> Option<usize> {
        self.entries
            .binary_search_by_key(&mid, |e| e.mutation.mid)
            .ok()
    }

    /// The entries above mid `mid`, oldest first (found by binary search:
    /// entries are kept in mid order).
    pub fn after(&self, mid: u64) -> impl Iterator<Item = &Entry> + '_ {
        let start = self.entries.partition_point(|e| e.mutation.mid <= mid);
        self.entries.range(start..)
    }

    /// The mids of the document's entries, ascending.
    pub fn mids(&self, coll: &str, id: &str) -> &[u64] {
        self.by_key
            .get(coll)
            .and_then(|m| m.get(id))
            .map_or(&[], Vec::as_slice)
    }

    /// True if the document has entries.
    pub fn has(&self, coll: &str, id: &str) -> bool {
        !self.mids(coll, id).is_empty()
    }

    /// The document's entries, in mid order.
    pub fn of<'a>(&'a self, coll: &str, id: &str) -> impl Iterator<Item = &'a Entry> + 'a {
        let mids = self.mids(coll, id);
        mids.iter()
            .filter_map(move |m| self.pos(*m).map(|p| &self.entries[p]))
    }

    /// Appends an entry; its mid must be above every other.
    pub fn push(&mut self, e: Entry) {
        debug_assert!(
            self.entries
                .back()
                .is_none_or(|l| l.mutation.mid < e.mutation.mid),
            "outbox entries are appended in mid order"
        );
        self.index(&e.mutation);
        self.entries.push_back(e);
    }

    /// Removes and returns the entry at `pos`.
    pub fn remove(&mut self, pos: usize) -> Entry {
        let e = self.entries.remove(pos).expect("outbox position in range");
        self.unindex(&e.mutation);
        e
    }

    /// The state of the entry at `pos` (its document stays the same).
    pub fn state_mut(&mut self, pos: usize) -> &mut EntryState {
        &mut self.entries[pos].state
    }

    /// Runs `f` on the mutation of the entry at `pos` (which may move it
    /// to another id, not another mid); returns what `f` returns.
    pub fn rewrite(&mut self, pos: usize, f: impl FnOnce(&mut Mutation) -> bool) -> bool {
        let old = self.entries[pos].mutation.id.clone();
        let changed = f(&mut self.entries[pos].mutation);
        let m = &self.entries[pos].mutation;
        debug_assert!(self.pos(m.mid) == Some(pos), "a rewrite keeps the mid");
        if m.id != old {
            let (coll, mid, new) = (m.coll.clone(), m.mid, m.id.clone());
            self.unindex_at(&coll, &old, mid);
            self.index_at(&coll, &new, mid);
        }
        changed
    }

    /// Keeps the entries for which `keep` is true.
    pub fn retain(&mut self, mut keep: impl FnMut(&Entry) -> bool) {
        let mut dropped = vec![];
        self.entries.retain(|e| {
            let k = keep(e);
            if !k {
                dropped.push((
                    e.mutation.coll.clone(),
                    e.mutation.id.clone(),
                    e.mutation.mid,
                ));
            }
            k
        });
        for (c, i, mid) in dropped {
            self.unindex_at(&c, &i, mid);
        }
    }

    /// Removes and returns every entry.
    pub fn take(&mut self) -> Vec<Entry> {
        self.by_key.clear();
        std::mem::take(&mut self.entries).into()
    }

    fn index(&mut self, m: &Mutation) {
        self.index_at(&m.coll, &m.id, m.mid);
    }

    fn unindex(&mut self, m: &Mutation) {
        self.unindex_at(&m.coll, &m.id, m.mid);
    }

    fn index_at(&mut self, coll: &str, id: &str, mid: u64) {
        let mids = self
            .by_key
            .entry(coll.to_owned())
            .or_default()
            .entry(id.to_owned())
            .or_default();
        let at = mids.partition_point(|m| *m < mid);
        mids.insert(at, mid);
    }

    fn unindex_at(&mut self, coll: &str, id: &str, mid: u64) {
        let Some(m) = self.by_key.get_mut(coll) else {
            return;
        };
        if let Some(mids) = m.get_mut(id) {
            mids.retain(|x| *x != mid);
            if mids.is_empty() {
                m.remove(id);
            }
        }
        if m.is_empty() {
            self.by_key.remove(coll);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::MutationOp;

    fn entry(mid: u64, coll: &str, id: &str) -> Entry {
        Entry {
            mutation: Mutation {
                mid,
                coll: coll.into(),
                op: MutationOp::Delete,
                id: id.into(),
                doc: None,
                patch: None,
                base: None,
                ts: None,
            },
            state: EntryState::Pending,
            base_doc: None,
        }
    }

    #[test]
    fn built_from_a_list_it_indexes_as_pushes_do() {
        // Mids out of order, documents in no order, several per document.
        let ids = ["q", "b", "z", "b", "a", "q", "m", "b", "a", "z"];
        let list: Vec<Entry> = ids
            .iter()
            .enumerate()
            .rev()
            .map(|(i, id)| entry(i as u64 + 1, if i % 3 == 0 { "x" } else { "y" }, id))
            .collect();
        let built = Outbox::from(list.clone());
        let mut pushed = Outbox::default();
        let mut sorted = list;
        sorted.sort_by_key(|e| e.mutation.mid);
        for e in sorted {
            pushed.push(e);
        }
        assert!(built.entries().iter().map(|e| e.mutation.mid).eq(1..=10));
        assert_eq!(built.by_key, pushed.by_key);
        assert_eq!(built.mids("y", "b"), [2, 8]);
        assert_eq!(built.mids("x", "b"), [4]);
        assert!(built.mids("x", "nope").is_empty());
    }
}
