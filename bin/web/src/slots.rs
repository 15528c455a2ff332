//! [`Slots`]: at most N of something at once per key (uploads per account,
//! event streams per account, connections per client address). A slot is
//! held by its [`Slot`] guard and given back when the guard drops, whatever
//! way the request ends.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex, PoisonError};

/// At most `per_key` slots held at once for each key.
#[derive(Debug)]
pub struct Slots<K: Eq + Hash + Clone> {
    per_key: usize,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> Clone for Slots<K> {
    fn clone(&self) -> Self {
        Self { per_key: self.per_key, held: self.held.clone() }
    }
}

/// One slot of a key, given back on drop.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone> {
    key: K,
    held: Arc<Mutex<HashMap<K, usize>>>,
}

impl<K: Eq + Hash + Clone> Slots<K> {
    pub fn new(per_key: usize) -> Self {
        Self { per_key: per_key.max(1), held: Arc::default() }
    }

    /// The most slots one key may hold.
    pub fn per_key(&self) -> usize {
        self.per_key
    }

    /// A slot for `key`, or `None` when it already holds all of its own.
    pub fn try_take(&self, key: K) -> Option<Slot<K>> {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.per_key {
            return None;
        }
        *count += 1;
        Some(Slot { key, held: self.held.clone() })
    }

    /// Slots `key` holds now.
    pub fn held(&self, key: &K) -> usize {
        self.held.lock().unwrap_or_else(PoisonError::into_inner).get(key).copied().unwrap_or(0)
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self.held.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_holds_at_most_its_share_and_gets_slots_back_on_drop() {
        let slots = Slots::new(2);
        let a1 = slots.try_take("a").unwrap();
        let _a2 = slots.try_take("a").unwrap();
        assert!(slots.try_take("a").is_none(), "a third is refused");
        let _b = slots.try_take("b").expect("another key is not affected");
        drop(a1);
        assert_eq!(slots.held(&"a"), 1);
        assert!(slots.try_take("a").is_some(), "a slot given back can be taken again");
        drop(_b);
        assert_eq!(slots.held(&"b"), 0, "a key with no slot is forgotten");
        assert!(slots.held.lock().unwrap().get("b").is_none());
    }
}
