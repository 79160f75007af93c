//! The one ordered map (and set) of the engine and the binding: a sorted
//! `Vec` of pairs, searched by binary search (issue 19).
//!
//! `std`'s `BTreeMap` compiles to ~7.7 KB of wasm per key/value type (node
//! splits, merges, cursors, its `Drop`, `Clone` and `IntoIter`, and a stable
//! sort for every `collect()`): 124 KB raw, 15% of the module, over 16
//! types. This type is a `Vec` plus a binary search per key type, and it
//! sorts through one shared instance ([`sort_indices`]), so the whole module
//! has one sort. Its iteration order is `BTreeMap`'s (ascending keys), so
//! every rule that depends on it stays as it was.
//!
//! Cost: `insert` and `remove` move the entries after the slot (a
//! `memmove`); an insert past the last key, the common case (outbox mids,
//! pages in key order, maps parsed from JSON written in key order), is an
//! append. The engine's maps are bounded by the pending writes
//! (docs/sync-engine.md), so a move is at most that many entries.

use serde::de::{Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};
use std::borrow::Borrow;
use std::cmp::Ordering;
use std::fmt;
use std::marker::PhantomData;

/// Sorts indices by `cmp`, ties by index (so the order is stable): the
/// module's one sort instance, for every element type (sorting a `Vec<T>`
/// directly builds the sort again for each `T`, ~4.5 KB of wasm each).
pub fn sort_indices(idx: &mut [u32], cmp: &mut dyn FnMut(u32, u32) -> Ordering) {
    idx.sort_unstable_by(|&a, &b| cmp(a, b).then(a.cmp(&b)));
}

/// Sorts `v` stably by `cmp` through [`sort_indices`].
pub fn sort_by<T>(v: &mut Vec<T>, mut cmp: impl FnMut(&T, &T) -> Ordering) {
    if v.windows(2).all(|w| cmp(&w[0], &w[1]) != Ordering::Greater) {
        return;
    }
    let mut idx: Vec<u32> = (0..v.len() as u32).collect();
    sort_indices(&mut idx, &mut |a, b| cmp(&v[a as usize], &v[b as usize]));
    permute(v, &idx);
}

/// Reorders `v` so that its `i`th element is the old `idx[i]`th.
fn permute<T>(v: &mut Vec<T>, idx: &[u32]) {
    let mut old: Vec<Option<T>> = std::mem::take(v).into_iter().map(Some).collect();
    v.extend(
        idx.iter()
            .map(|&i| old[i as usize].take().expect("a permutation")),
    );
}

/// An ordered map: `BTreeMap`'s API as far as this code base uses it.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SortedMap<K, V> {
    items: Vec<(K, V)>,
}

impl<K, V> Default for SortedMap<K, V> {
    fn default() -> Self {
        SortedMap { items: Vec::new() }
    }
}

impl<K: fmt::Debug, V: fmt::Debug> fmt::Debug for SortedMap<K, V> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map()
            .entries(self.items.iter().map(|(k, v)| (k, v)))
            .finish()
    }
}

impl<K, V> SortedMap<K, V> {
    pub const fn new() -> Self {
        SortedMap { items: Vec::new() }
    }

    pub fn len(&self) -> usize {
        self.items.len()
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    pub fn clear(&mut self) {
        self.items.clear();
    }

    pub fn iter(&self) -> Iter<'_, K, V> {
        Iter(self.items.iter())
    }

    pub fn iter_mut(&mut self) -> IterMut<'_, K, V> {
        IterMut(self.items.iter_mut())
    }

    pub fn keys(&self) -> impl DoubleEndedIterator<Item = &K> + ExactSizeIterator + '_ {
        self.items.iter().map(|(k, _)| k)
    }

    pub fn values(&self) -> impl DoubleEndedIterator<Item = &V> + ExactSizeIterator + '_ {
        self.items.iter().map(|(_, v)| v)
    }

    pub fn values_mut(&mut self) -> impl DoubleEndedIterator<Item = &mut V> + '_ {
        self.items.iter_mut().map(|(_, v)| v)
    }

    pub fn into_keys(self) -> impl DoubleEndedIterator<Item = K> + ExactSizeIterator {
        self.items.into_iter().map(|(k, _)| k)
    }

    pub fn into_values(self) -> impl DoubleEndedIterator<Item = V> + ExactSizeIterator {
        self.items.into_iter().map(|(_, v)| v)
    }

    /// Keeps the entries for which `f` is true, in order.
    pub fn retain(&mut self, mut f: impl FnMut(&K, &mut V) -> bool) {
        self.items.retain_mut(|(k, v)| f(k, v));
    }
}

impl<K: Ord, V> SortedMap<K, V> {
    /// The slot of `key`: `Ok` where it is, `Err` where it would go. A key
    /// past the last one is found without a search.
    fn find<Q>(&self, key: &Q) -> Result<usize, usize>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        match self.items.last() {
            None => return Err(0),
            Some((last, _)) => match last.borrow().cmp(key) {
                Ordering::Less => return Err(self.items.len()),
                Ordering::Equal => return Ok(self.items.len() - 1),
                Ordering::Greater => {}
            },
        }
        self.items.binary_search_by(|(k, _)| k.borrow().cmp(key))
    }

    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &self.items[i].1)
    }

    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| &mut self.items[i].1)
    }

    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).is_ok()
    }

    /// Inserts `value` under `key`; returns the value it replaced.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        match self.find(&key) {
            Ok(i) => Some(std::mem::replace(&mut self.items[i].1, value)),
            Err(i) => {
                self.items.insert(i, (key, value));
                None
            }
        }
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.find(key).ok().map(|i| self.items.remove(i).1)
    }

    pub fn entry(&mut self, key: K) -> Entry<'_, K, V> {
        let at = self.find(&key);
        Entry {
            map: self,
            key: Some(key),
            at,
        }
    }

    /// Splits off the entries whose keys are at least `at` (as
    /// `BTreeMap::split_off`).
    pub fn split_off<Q>(&mut self, at: &Q) -> SortedMap<K, V>
    where
        K: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        let i = self.find(at).unwrap_or_else(|i| i);
        SortedMap {
            items: self.items.split_off(i),
        }
    }

    /// The map of `items`, in any order; of equal keys the last one wins
    /// (as `BTreeMap`'s `FromIterator`).
    fn from_vec(mut items: Vec<(K, V)>) -> Self {
        if items.windows(2).all(|w| w[0].0 < w[1].0) {
            return SortedMap { items };
        }
        let mut idx: Vec<u32> = (0..items.len() as u32).collect();
        sort_indices(&mut idx, &mut |a, b| {
            items[a as usize].0.cmp(&items[b as usize].0)
        });
        // Of a run of equal keys, the last index (the latest pair) stays.
        let mut keep = Vec::with_capacity(idx.len());
        for (n, &i) in idx.iter().enumerate() {
            let next_same = idx
                .get(n + 1)
                .is_some_and(|&j| items[j as usize].0 == items[i as usize].0);
            if !next_same {
                keep.push(i);
            }
        }
        let mut old: Vec<Option<(K, V)>> = items.drain(..).map(Some).collect();
        items.extend(
            keep.iter()
                .map(|&i| old[i as usize].take().expect("kept once")),
        );
        SortedMap { items }
    }
}

impl<K: Ord + Borrow<Q>, Q: Ord + ?Sized, V> std::ops::Index<&Q> for SortedMap<K, V> {
    type Output = V;
    /// Panics if `key` is not in the map (as `BTreeMap`'s).
    fn index(&self, key: &Q) -> &V {
        self.get(key).expect("a key of the map")
    }
}

/// A slot of [`SortedMap::entry`].
pub struct Entry<'a, K, V> {
    map: &'a mut SortedMap<K, V>,
    key: Option<K>,
    at: Result<usize, usize>,
}

impl<'a, K, V> Entry<'a, K, V> {
    pub fn or_insert_with(self, f: impl FnOnce() -> V) -> &'a mut V {
        let i = match self.at {
            Ok(i) => i,
            Err(i) => {
                let key = self.key.expect("an entry's key");
                self.map.items.insert(i, (key, f()));
                i
            }
        };
        &mut self.map.items[i].1
    }

    pub fn or_insert(self, value: V) -> &'a mut V {
        self.or_insert_with(|| value)
    }

    pub fn or_default(self) -> &'a mut V
    where
        V: Default,
    {
        self.or_insert_with(V::default)
    }
}

pub struct Iter<'a, K, V>(std::slice::Iter<'a, (K, V)>);

impl<'a, K, V> Clone for Iter<'a, K, V> {
    fn clone(&self) -> Self {
        Iter(self.0.clone())
    }
}

impl<'a, K, V> Iterator for Iter<'a, K, V> {
    type Item = (&'a K, &'a V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<K, V> DoubleEndedIterator for Iter<'_, K, V> {
    fn next_back(&mut self) -> Option<Self::Item> {
        self.0.next_back().map(|(k, v)| (k, v))
    }
}

impl<K, V> ExactSizeIterator for Iter<'_, K, V> {}

pub struct IterMut<'a, K, V>(std::slice::IterMut<'a, (K, V)>);

impl<'a, K, V> Iterator for IterMut<'a, K, V> {
    type Item = (&'a K, &'a mut V);
    fn next(&mut self) -> Option<Self::Item> {
        self.0.next().map(|(k, v)| (&*k, v))
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        self.0.size_hint()
    }
}

impl<'a, K, V> IntoIterator for &'a SortedMap<K, V> {
    type Item = (&'a K, &'a V);
    type IntoIter = Iter<'a, K, V>;
    fn into_iter(self) -> Iter<'a, K, V> {
        self.iter()
    }
}

impl<'a, K, V> IntoIterator for &'a mut SortedMap<K, V> {
    type Item = (&'a K, &'a mut V);
    type IntoIter = IterMut<'a, K, V>;
    fn into_iter(self) -> IterMut<'a, K, V> {
        self.iter_mut()
    }
}

impl<K, V> IntoIterator for SortedMap<K, V> {
    type Item = (K, V);
    type IntoIter = std::vec::IntoIter<(K, V)>;
    fn into_iter(self) -> Self::IntoIter {
        self.items.into_iter()
    }
}

impl<K: Ord, V> FromIterator<(K, V)> for SortedMap<K, V> {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        Self::from_vec(iter.into_iter().collect())
    }
}

impl<K: Ord, V, const N: usize> From<[(K, V); N]> for SortedMap<K, V> {
    fn from(items: [(K, V); N]) -> Self {
        Self::from_vec(items.into())
    }
}

impl<K: Ord, V> Extend<(K, V)> for SortedMap<K, V> {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (k, v) in iter {
            self.insert(k, v);
        }
    }
}

impl<K: Serialize, V: Serialize> Serialize for SortedMap<K, V> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut m = s.serialize_map(Some(self.items.len()))?;
        for (k, v) in &self.items {
            m.serialize_entry(k, v)?;
        }
        m.end()
    }
}

impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Deserialize<'de> for SortedMap<K, V> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<K, V>(PhantomData<(K, V)>);
        impl<'de, K: Deserialize<'de> + Ord, V: Deserialize<'de>> Visitor<'de> for V_<K, V> {
            type Value = SortedMap<K, V>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a map")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut m = SortedMap::new();
                while let Some((k, v)) = a.next_entry()? {
                    m.insert(k, v);
                }
                Ok(m)
            }
        }
        d.deserialize_map(V_(PhantomData))
    }
}

/// An ordered set: a [`SortedMap`] to `()`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SortedSet<T> {
    map: SortedMap<T, ()>,
}

impl<T> Default for SortedSet<T> {
    fn default() -> Self {
        SortedSet {
            map: SortedMap::new(),
        }
    }
}

impl<T: fmt::Debug> fmt::Debug for SortedSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_set().entries(self.iter()).finish()
    }
}

impl<T> SortedSet<T> {
    pub const fn new() -> Self {
        SortedSet {
            map: SortedMap::new(),
        }
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub fn clear(&mut self) {
        self.map.clear();
    }

    pub fn iter(&self) -> impl DoubleEndedIterator<Item = &T> + ExactSizeIterator + Clone + '_ {
        self.map.items.iter().map(|(k, _)| k)
    }

    /// Drops the `n` smallest values in one move (removing them one by one
    /// would move every later value each time).
    pub fn drop_first(&mut self, n: usize) {
        self.map.items.drain(..n.min(self.map.items.len()));
    }

    pub fn retain(&mut self, mut f: impl FnMut(&T) -> bool) {
        self.map.retain(|k, _| f(k));
    }
}

impl<T: Ord> SortedSet<T> {
    pub fn contains<Q>(&self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.contains_key(value)
    }

    /// Adds `value`; false if it was there.
    pub fn insert(&mut self, value: T) -> bool {
        match self.map.find(&value) {
            Ok(_) => false,
            Err(i) => {
                self.map.items.insert(i, (value, ()));
                true
            }
        }
    }

    pub fn remove<Q>(&mut self, value: &Q) -> bool
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        self.map.remove(value).is_some()
    }

    pub fn split_off<Q>(&mut self, at: &Q) -> SortedSet<T>
    where
        T: Borrow<Q>,
        Q: Ord + ?Sized,
    {
        SortedSet {
            map: self.map.split_off(at),
        }
    }
}

impl<'a, T> IntoIterator for &'a SortedSet<T> {
    type Item = &'a T;
    type IntoIter = std::iter::Map<std::slice::Iter<'a, (T, ())>, fn(&'a (T, ())) -> &'a T>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.items.iter().map(|(k, _)| k)
    }
}

impl<T> IntoIterator for SortedSet<T> {
    type Item = T;
    type IntoIter = std::iter::Map<std::vec::IntoIter<(T, ())>, fn((T, ())) -> T>;
    fn into_iter(self) -> Self::IntoIter {
        self.map.items.into_iter().map(|(k, _)| k)
    }
}

impl<T: Ord> FromIterator<T> for SortedSet<T> {
    fn from_iter<I: IntoIterator<Item = T>>(iter: I) -> Self {
        SortedSet {
            map: SortedMap::from_vec(iter.into_iter().map(|k| (k, ())).collect()),
        }
    }
}

impl<T: Ord, const N: usize> From<[T; N]> for SortedSet<T> {
    fn from(items: [T; N]) -> Self {
        items.into_iter().collect()
    }
}

impl<T: Ord> Extend<T> for SortedSet<T> {
    fn extend<I: IntoIterator<Item = T>>(&mut self, iter: I) {
        for v in iter {
            self.insert(v);
        }
    }
}

impl<T: Serialize> Serialize for SortedSet<T> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut q = s.serialize_seq(Some(self.len()))?;
        for v in self.iter() {
            q.serialize_element(v)?;
        }
        q.end()
    }
}

impl<'de, T: Deserialize<'de> + Ord> Deserialize<'de> for SortedSet<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V_<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de> + Ord> Visitor<'de> for V_<T> {
            type Value = SortedSet<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a sequence")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<Self::Value, A::Error> {
                let mut s = SortedSet::new();
                while let Some(v) = a.next_element()? {
                    s.insert(v);
                }
                Ok(s)
            }
        }
        d.deserialize_seq(V_(PhantomData))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::{BTreeMap, BTreeSet};

    /// A small deterministic generator (no `rand` in the core).
    fn lcg(seed: &mut u64) -> u64 {
        *seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        *seed >> 33
    }

    #[test]
    fn behaves_as_btreemap_under_random_operations() {
        let mut seed = 7;
        for round in 0..200 {
            let mut ours: SortedMap<u32, u64> = SortedMap::new();
            let mut std: BTreeMap<u32, u64> = BTreeMap::new();
            for step in 0..(round * 3) {
                let k = (lcg(&mut seed) % 40) as u32;
                let v = step as u64;
                match lcg(&mut seed) % 6 {
                    0 | 1 => assert_eq!(ours.insert(k, v), std.insert(k, v)),
                    2 => assert_eq!(ours.remove(&k), std.remove(&k)),
                    3 => {
                        *ours.entry(k).or_default() += v;
                        *std.entry(k).or_default() += v;
                    }
                    4 => {
                        ours.retain(|k, _| k % 7 != 0);
                        std.retain(|k, _| k % 7 != 0);
                    }
                    _ => assert_eq!(ours.get(&k), std.get(&k)),
                }
                assert!(ours
                    .iter()
                    .map(|(k, v)| (*k, *v))
                    .eq(std.iter().map(|(k, v)| (*k, *v))));
                assert_eq!(ours.len(), std.len());
            }
        }
    }

    #[test]
    fn collect_keeps_the_last_of_equal_keys_and_sorts() {
        let pairs = [(3, "a"), (1, "b"), (3, "c"), (2, "d"), (1, "e")];
        let ours: SortedMap<i32, &str> = pairs.iter().copied().collect();
        let std: BTreeMap<i32, &str> = pairs.iter().copied().collect();
        assert!(ours.iter().eq(std.iter()));
        let set: SortedSet<i32> = [5, 1, 5, 3, 1].into_iter().collect();
        assert!(set.iter().eq(BTreeSet::from([1, 3, 5]).iter()));
    }

    #[test]
    fn split_off_as_btreemap() {
        let mut ours: SortedSet<u64> = (0..10).rev().collect();
        let mut std: BTreeSet<u64> = (0..10).collect();
        let (a, b) = (ours.split_off(&6), std.split_off(&6));
        assert!(a.iter().eq(b.iter()) && ours.iter().eq(std.iter()));
    }

    #[test]
    fn drop_first_drops_the_smallest() {
        let mut s: SortedSet<u64> = (0..10).rev().collect();
        s.drop_first(3);
        assert!(s.iter().copied().eq(3..10));
        s.drop_first(100);
        assert!(s.is_empty());
    }

    #[test]
    fn sort_by_is_stable() {
        let mut v: Vec<(u8, usize)> = (0..100).map(|i| ((i * 37 % 5) as u8, i)).collect();
        let mut want = v.clone();
        want.sort_by_key(|p| p.0);
        sort_by(&mut v, |a, b| a.0.cmp(&b.0));
        assert_eq!(v, want);
    }

    #[test]
    fn json_round_trip_as_btreemap() {
        let m: SortedMap<String, String> =
            serde_json::from_str(r#"{"b":"2","a":"1","b":"3"}"#).unwrap();
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"a":"1","b":"3"}"#);
        let s: SortedSet<u32> = serde_json::from_str("[3,1,2,1]").unwrap();
        assert_eq!(serde_json::to_string(&s).unwrap(), "[1,2,3]");
    }
}
