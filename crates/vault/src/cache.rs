//! A bounded in-memory cache of verified records, so that a repeated pull
//! needs neither a blocking-pool thread nor a syscall.
//!
//! The disk stays the source of truth; the cache must never answer with
//! something a read of the disk would not. Its rules:
//!
//! - Only records read from disk **and verified** go in ([`RecordCache::insert`]
//!   after a successful read). A write never fills it: what a later read
//!   serves is what that read verified.
//! - A writer (push, PUT, DELETE), holding the lock of its key, wraps its
//!   disk work in [`RecordCache::begin_write`]: the key's entry is dropped
//!   before the disk is touched, and until the returned guard is dropped
//!   (whatever the write's outcome) nothing is inserted for that key's
//!   stripe. While it writes, readers miss and go to the disk (old or new
//!   record, whole — as without a cache).
//! - A reader that missed got a [`Ticket`]; its result goes in only if no
//!   write of the key's stripe started or ended since, and none is under
//!   way. So an entry is always something read from disk while no write of
//!   it could change the file: what the disk holds until the next writer
//!   drops it. (Otherwise a record read just before a write could be
//!   inserted after it and served stale forever, or a reader could see a
//!   new record on disk and then an older one from the cache.)
//!
//! Eviction is FIFO with a second chance for entries hit since they were
//! queued (CLOCK): cheap, and good enough for "hot identities stay".

use std::collections::{HashMap, VecDeque};
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::identity::{Identity, SecretName};
use crate::storage::Stored;

/// What a record belongs to: the key of the cache and of the writers' locks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RecordKey {
    Share(Identity),
    Secret(Identity, SecretName),
}

/// Write counters are kept per stripe of keys, not per key, so that keys not
/// in the cache cost nothing; an unrelated write in the same stripe only
/// makes a concurrent reader skip its insert.
const STRIPES: usize = 64;

/// Fixed bookkeeping charged per entry on top of the share's bytes (key,
/// metadata, map and queue slots), so many tiny records stay bounded too.
const ENTRY_OVERHEAD: usize = 256;

/// Proof that a reader missed at a given point of its stripe's history.
#[derive(Debug, Clone, Copy)]
pub struct Ticket {
    stripe: usize,
    generation: u64,
}

pub struct RecordCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

struct Inner {
    map: HashMap<RecordKey, Entry>,
    /// Eviction order; items whose `seq` no longer matches the map are stale.
    queue: VecDeque<(RecordKey, u64)>,
    bytes: usize,
    next_seq: u64,
    /// Bumped when a write of the stripe begins and when it ends.
    generations: [u64; STRIPES],
    /// Writes of the stripe under way.
    writing: [u32; STRIPES],
}

struct Entry {
    value: Arc<Stored>,
    seq: u64,
    cost: usize,
    referenced: bool,
}

impl RecordCache {
    /// A cache holding at most `capacity` bytes (0 disables it).
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::new(Inner {
                map: HashMap::new(),
                queue: VecDeque::new(),
                bytes: 0,
                next_seq: 0,
                generations: [0; STRIPES],
                writing: [0; STRIPES],
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cached record, or the ticket to insert what the disk says.
    pub fn get(&self, key: &RecordKey) -> Result<Arc<Stored>, Ticket> {
        let mut inner = self.lock();
        if let Some(entry) = inner.map.get_mut(key) {
            entry.referenced = true;
            return Ok(Arc::clone(&entry.value));
        }
        let stripe = inner.stripe(key);
        Err(Ticket {
            stripe,
            generation: inner.generations[stripe],
        })
    }

    /// Inserts a record just read from disk and verified, unless a write of
    /// its stripe began or ended since `ticket` was issued, one is under way,
    /// or the record is too large.
    pub fn insert(&self, key: RecordKey, value: Arc<Stored>, ticket: Ticket) {
        let cost = value.data.len() + ENTRY_OVERHEAD;
        // One record may not take more than a quarter of the cache.
        if cost > self.capacity / 4 {
            return;
        }
        let mut inner = self.lock();
        if inner.generations[ticket.stripe] != ticket.generation || inner.writing[ticket.stripe] > 0
        {
            return;
        }
        inner.remove(&key);
        let seq = inner.next_seq;
        inner.next_seq += 1;
        inner.queue.push_back((key.clone(), seq));
        inner.map.insert(
            key,
            Entry {
                value,
                seq,
                cost,
                referenced: false,
            },
        );
        inner.bytes += cost;
        inner.evict_to(self.capacity);
    }

    /// Forgets `key` and keeps it (and its stripe) out of the cache until
    /// the guard is dropped. Writers hold it, under the key's lock, around
    /// everything they do on disk.
    pub fn begin_write(&self, key: &RecordKey) -> WriteGuard<'_> {
        let mut inner = self.lock();
        let stripe = inner.stripe(key);
        inner.generations[stripe] = inner.generations[stripe].wrapping_add(1);
        inner.writing[stripe] += 1;
        inner.remove(key);
        inner.compact_queue();
        WriteGuard {
            cache: self,
            stripe,
        }
    }

    /// Bytes currently charged (shares + per-entry overhead).
    #[cfg(test)]
    pub fn bytes(&self) -> usize {
        self.lock().bytes
    }

    #[cfg(test)]
    pub fn entries(&self) -> usize {
        self.lock().map.len()
    }
}

/// A write under way (see [`RecordCache::begin_write`]).
pub struct WriteGuard<'a> {
    cache: &'a RecordCache,
    stripe: usize,
}

impl Drop for WriteGuard<'_> {
    fn drop(&mut self) {
        let mut inner = self.cache.lock();
        let stripe = self.stripe;
        inner.generations[stripe] = inner.generations[stripe].wrapping_add(1);
        inner.writing[stripe] -= 1;
    }
}

impl Inner {
    fn stripe(&self, key: &RecordKey) -> usize {
        (self.map.hasher().hash_one(key) % STRIPES as u64) as usize
    }

    fn remove(&mut self, key: &RecordKey) {
        if let Some(old) = self.map.remove(key) {
            self.bytes -= old.cost;
        }
    }

    fn evict_to(&mut self, capacity: usize) {
        while self.bytes > capacity {
            let Some((key, seq)) = self.queue.pop_front() else {
                break;
            };
            let Some(entry) = self.map.get_mut(&key) else {
                continue;
            };
            if entry.seq != seq {
                continue;
            }
            if entry.referenced {
                entry.referenced = false;
                self.queue.push_back((key, seq));
            } else {
                self.remove(&key);
            }
        }
        self.compact_queue();
    }

    /// Drops stale queue items once they outnumber live entries, so a small
    /// working set that is rewritten often does not grow the queue.
    fn compact_queue(&mut self) {
        if self.queue.len() > 2 * self.map.len() + 64 {
            let map = &self.map;
            self.queue
                .retain(|(key, seq)| map.get(key).is_some_and(|e| e.seq == *seq));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RecordMeta;

    fn key(i: usize) -> RecordKey {
        RecordKey::Share(Identity::parse(&format!("{i:064x}")).unwrap())
    }

    fn stored(version: u64, size: usize) -> Arc<Stored> {
        Arc::new(Stored {
            data: vec![version as u8; size],
            meta: RecordMeta {
                version,
                created_ns: 1,
                updated_ns: 1,
                size: size as u64,
            },
        })
    }

    fn version(hit: Result<Arc<Stored>, Ticket>) -> Option<u64> {
        hit.ok().map(|s| s.meta.version)
    }

    #[test]
    fn hit_after_fill_and_miss_after_invalidate() {
        let cache = RecordCache::new(1 << 20);
        let Err(ticket) = cache.get(&key(1)) else {
            panic!("empty cache hit")
        };
        cache.insert(key(1), stored(1, 10), ticket);
        assert_eq!(version(cache.get(&key(1))), Some(1));
        drop(cache.begin_write(&key(1)));
        assert_eq!(version(cache.get(&key(1))), None);
        assert_eq!((cache.entries(), cache.bytes()), (0, 0));
    }

    #[test]
    fn a_read_overtaken_by_a_write_is_not_inserted() {
        let cache = RecordCache::new(1 << 20);
        // Reader misses, reads version 1 from disk...
        let Err(ticket) = cache.get(&key(1)) else {
            panic!()
        };
        // ...a writer stores version 2 meanwhile...
        drop(cache.begin_write(&key(1)));
        // ...and the reader's late insert of version 1 is refused.
        cache.insert(key(1), stored(1, 10), ticket);
        assert_eq!(version(cache.get(&key(1))), None);
        // Nothing is inserted while a write is under way, even by a reader
        // that missed after it began (it may have read the old record).
        let write = cache.begin_write(&key(1));
        let Err(ticket) = cache.get(&key(1)) else {
            panic!()
        };
        cache.insert(key(1), stored(1, 10), ticket);
        assert_eq!(version(cache.get(&key(1))), None);
        // Nor by one that missed during the write and inserts after it.
        let Err(ticket) = cache.get(&key(1)) else {
            panic!()
        };
        drop(write);
        cache.insert(key(1), stored(1, 10), ticket);
        assert_eq!(version(cache.get(&key(1))), None);
        // A reader that missed after the write inserts.
        let Err(ticket) = cache.get(&key(1)) else {
            panic!()
        };
        cache.insert(key(1), stored(2, 10), ticket);
        assert_eq!(version(cache.get(&key(1))), Some(2));
    }

    #[test]
    fn bounded_by_bytes_and_hot_entries_survive() {
        let entry = 1000 + ENTRY_OVERHEAD;
        let cache = RecordCache::new(10 * entry);
        for i in 0..100 {
            if let Err(t) = cache.get(&key(i)) {
                cache.insert(key(i), stored(1, 1000), t);
            }
            // Key 0 is read all the time.
            assert!(cache.get(&key(0)).is_ok(), "hot key evicted at {i}");
            assert!(cache.bytes() <= 10 * entry);
        }
        assert_eq!(cache.entries(), 10);
        // Too large for the cache: not inserted.
        let Err(t) = cache.get(&key(500)) else {
            panic!()
        };
        cache.insert(key(500), stored(1, 5 * entry), t);
        assert!(cache.get(&key(500)).is_err());
    }

    #[test]
    fn rewrites_of_a_small_working_set_keep_the_queue_small() {
        let cache = RecordCache::new(1 << 20);
        for round in 0..10_000u64 {
            let k = key((round % 3) as usize);
            drop(cache.begin_write(&k));
            if let Err(t) = cache.get(&k) {
                cache.insert(k, stored(round, 8), t);
            }
        }
        assert!(cache.lock().queue.len() <= 2 * 3 + 64);
    }

    #[test]
    fn disabled_when_capacity_is_zero() {
        let cache = RecordCache::new(0);
        let Err(t) = cache.get(&key(1)) else { panic!() };
        cache.insert(key(1), stored(1, 1), t);
        assert!(cache.get(&key(1)).is_err());
    }
}
