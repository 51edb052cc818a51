//! Parsed worksheets for the pages: a worksheet's notebook and its parameters are parsed
//! once, on a blocking thread (a notebook may be tens of megabytes), and kept in a small
//! cache bounded in bytes, keyed by the worksheet and its publication time, so that a
//! republished worksheet is parsed afresh and a page view costs no parsing.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::events::ForgeKind;
use crate::worksheet::{Notebook, NotebookError, Parameter, parameters};

/// A worksheet's notebook and the parameters of its form.
#[derive(Debug)]
pub struct Parsed {
    pub notebook: Notebook,
    pub params: Vec<Parameter>,
}

impl Parsed {
    /// Parses notebook bytes and reads their parameters (call off the async runtime).
    pub fn from_bytes(bytes: &[u8]) -> Result<Parsed, NotebookError> {
        let notebook = Notebook::from_slice(bytes)?;
        let params = parameters(&notebook);
        Ok(Parsed { notebook, params })
    }
}

/// Which publication of which worksheet.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct SheetKey {
    pub forge: ForgeKind,
    pub project: String,
    pub tag: String,
    pub path: String,
    pub published_at: i64,
}

/// Bytes of notebooks the cache holds at most, and the largest it keeps.
const CACHE_BYTES: usize = 64 << 20;
const LARGEST: usize = 8 << 20;

#[derive(Default)]
struct Entries {
    map: HashMap<SheetKey, (Arc<Parsed>, usize, u64)>,
    bytes: usize,
    clock: u64,
}

/// The cache; cheap to share.
#[derive(Default)]
pub struct SheetCache {
    entries: Mutex<Entries>,
}

impl SheetCache {
    pub fn get(&self, key: &SheetKey) -> Option<Arc<Parsed>> {
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        e.clock += 1;
        let now = e.clock;
        e.map.get_mut(key).map(|(parsed, _, used)| {
            *used = now;
            parsed.clone()
        })
    }

    /// Keeps `parsed` (made from `bytes` bytes) unless it is too large, dropping the least
    /// recently used entries to make room.
    pub fn insert(&self, key: SheetKey, parsed: Arc<Parsed>, bytes: usize) {
        if bytes > LARGEST {
            return;
        }
        let mut e = self.entries.lock().unwrap_or_else(|p| p.into_inner());
        while e.bytes + bytes > CACHE_BYTES {
            let Some(oldest) = e
                .map
                .iter()
                .min_by_key(|(_, (_, _, used))| *used)
                .map(|(k, _)| k.clone())
            else {
                break;
            };
            if let Some((_, size, _)) = e.map.remove(&oldest) {
                e.bytes -= size;
            }
        }
        e.clock += 1;
        let now = e.clock;
        if let Some((_, old, _)) = e.map.insert(key, (parsed, bytes, now)) {
            e.bytes -= old;
        }
        e.bytes += bytes;
    }

    /// Bytes of notebooks held.
    pub fn bytes(&self) -> usize {
        self.entries.lock().unwrap_or_else(|p| p.into_inner()).bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(path: &str) -> SheetKey {
        SheetKey {
            forge: ForgeKind::GitLab,
            project: "lab/x".into(),
            tag: "v1".into(),
            path: path.into(),
            published_at: 1,
        }
    }

    fn parsed() -> Arc<Parsed> {
        Arc::new(
            Parsed::from_bytes(
                br#"{"cells": [], "metadata": {}, "nbformat": 4, "nbformat_minor": 5}"#,
            )
            .unwrap(),
        )
    }

    #[test]
    fn the_cache_stays_within_its_bytes_dropping_the_least_recently_used() {
        let cache = SheetCache::default();
        let fits = CACHE_BYTES / LARGEST;
        for i in 0..fits {
            cache.insert(key(&i.to_string()), parsed(), LARGEST);
        }
        assert!(cache.get(&key("0")).is_some(), "0 is now the most recent");
        cache.insert(key("new"), parsed(), LARGEST);
        assert!(
            cache.get(&key("1")).is_none(),
            "1 was the least recently used"
        );
        assert!(cache.get(&key("0")).is_some());
        assert!(cache.get(&key("new")).is_some());
        assert!(cache.bytes() <= CACHE_BYTES);
        cache.insert(key("huge"), parsed(), LARGEST + 1);
        assert!(cache.get(&key("huge")).is_none(), "too large to keep");
    }
}
