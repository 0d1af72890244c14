//! The aggregates of one partition by id, laid out for millions of small entries.
//!
//! A `HashMap<String, Entry>` keeps every entry inline in its buckets, and a hash table's buckets
//! are a power of two kept at most 7/8 full: depending on the count, up to 2.3 times the entries'
//! size is allocated (a million stock aggregates over four partitions took 380 MB). Here the hash
//! table holds only the boxed key and an index (24-byte buckets); the entries live in chunks of
//! fixed size allocated as they fill, so their slack is at most one chunk.

use std::collections::HashMap;

/// Entries per chunk: large enough that chunk bookkeeping is negligible, small enough that one
/// partly filled chunk wastes little.
const CHUNK: usize = 4096;

/// A map from aggregate id to `V`. A removed entry's slot keeps `V::default()` until reused.
#[derive(Debug)]
pub struct EntryMap<V> {
    index: HashMap<Box<str>, usize>,
    chunks: Vec<Vec<V>>,
    /// Slots emptied by a removal, reused before new ones.
    free: Vec<usize>,
}

impl<V> Default for EntryMap<V> {
    fn default() -> Self {
        Self {
            index: HashMap::new(),
            chunks: Vec::new(),
            free: Vec::new(),
        }
    }
}

impl<V: Default> EntryMap<V> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The entry of `key`.
    pub fn get(&self, key: &str) -> Option<&V> {
        let slot = *self.index.get(key)?;
        Some(&self.chunks[slot / CHUNK][slot % CHUNK])
    }

    /// The entry of `key`, to change it.
    pub fn get_mut(&mut self, key: &str) -> Option<&mut V> {
        let slot = *self.index.get(key)?;
        Some(self.slot_mut(slot))
    }

    /// Sets the entry of `key`; the one it replaces, if any.
    pub fn insert(&mut self, key: String, value: V) -> Option<V> {
        if let Some(&slot) = self.index.get(key.as_str()) {
            return Some(std::mem::replace(self.slot_mut(slot), value));
        }
        let slot = self.allocate(value);
        self.index.insert(key.into_boxed_str(), slot);
        None
    }

    /// Removes the entry of `key`; the entry, if there was one.
    pub fn remove(&mut self, key: &str) -> Option<V> {
        let slot = self.index.remove(key)?;
        self.free.push(slot);
        Some(std::mem::take(self.slot_mut(slot)))
    }

    /// The entry of `key`, a default one first if there is none (the key is copied only then).
    pub fn get_or_default(&mut self, key: &str) -> &mut V {
        let slot = match self.index.get(key) {
            Some(&slot) => slot,
            None => {
                let slot = self.allocate(V::default());
                self.index.insert(key.into(), slot);
                slot
            }
        };
        self.slot_mut(slot)
    }

    fn slot_mut(&mut self, slot: usize) -> &mut V {
        &mut self.chunks[slot / CHUNK][slot % CHUNK]
    }

    fn allocate(&mut self, value: V) -> usize {
        if let Some(slot) = self.free.pop() {
            *self.slot_mut(slot) = value;
            return slot;
        }
        if self.chunks.last().is_none_or(|c| c.len() == CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        let n = self.chunks.len() - 1;
        let chunk = &mut self.chunks[n];
        chunk.push(value);
        n * CHUNK + chunk.len() - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_survive_removals_reuse_and_chunk_boundaries() {
        let mut map: EntryMap<u64> = EntryMap::default();
        let n = CHUNK as u64 * 2 + 17;
        for i in 0..n {
            assert_eq!(map.insert(format!("k{i}"), i), None);
        }
        assert_eq!(map.len(), n as usize);
        assert_eq!(map.insert("k5".into(), 500), Some(5), "replaced");
        for i in (0..n).step_by(3) {
            assert_eq!(map.remove(&format!("k{i}")), Some(i));
        }
        assert_eq!(map.remove("k0"), None, "removed once");
        assert_eq!(map.get("k3"), None);
        *map.get_or_default("new") += 7;
        *map.get_or_default("k4") += 1;
        map.insert("k3".into(), 33);
        assert_eq!(
            map.get("new"),
            Some(&7),
            "a fresh entry starts from the default"
        );
        assert_eq!(map.get("k4"), Some(&5));
        assert_eq!(map.get("k3"), Some(&33));
        assert_eq!(map.get("k5"), Some(&500));
        for i in (1..n).filter(|i| i % 3 != 0 && *i != 4 && *i != 5) {
            assert_eq!(map.get(&format!("k{i}")), Some(&i), "k{i}");
        }
        let removed = n.div_ceil(3);
        assert_eq!(map.len(), (n - removed + 2) as usize);
        // Two slots emptied by removals were reused: no chunk beyond the ones filled before.
        assert_eq!(map.chunks.len(), 3);
    }
}
