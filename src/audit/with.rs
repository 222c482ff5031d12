//! The writes a caller commits with its entry ([`With`]), and which of the both-or-neither ones
//! ([`With::Only`]) can still land: their expectations are read before the entries are chained,
//! so that one whose record changed meanwhile is left out of the chain instead of breaking it.
//! The expectations are also checked again in the commit itself (a write from elsewhere between
//! the read and the commit fails the commit, which is then tried again).

use std::collections::HashSet;

use crate::store::{Batch, Store, StoreError, Tree, Write};

/// A caller's own writes, committed in the same transaction as its entry.
#[derive(Debug, Clone)]
pub(super) enum With {
    /// Land only with the entry; the entry lands whatever becomes of them
    /// ([`super::AuditLog::append_with`]).
    Beside(Batch),
    /// Both or neither ([`super::AuditLog::append_if`]): the entry is written only if their
    /// expectations hold, and they only with it.
    Only(Batch),
}

impl With {
    pub(super) fn only(&self) -> bool {
        matches!(self, With::Only(_))
    }

    /// The bytes of the writes and expectations carried ([`Batch::bytes`]).
    pub(super) fn bytes(&self) -> usize {
        match self {
            With::Beside(b) | With::Only(b) => b.bytes(),
        }
    }
}

/// For each item, whether it may be chained: `true` for all but the [`With::Only`] items whose
/// expectations do not hold now, or that expect a key an earlier such item in the run writes
/// (their expectations are checked in one batch, before any write: it would see the key as it
/// was). One read per tree.
pub(super) fn chainable(
    store: &dyn Store,
    withs: &[Option<With>],
) -> Result<Vec<bool>, StoreError> {
    let mut wanted: Vec<(Tree, &[u8])> = Vec::new();
    for w in withs {
        if let Some(With::Only(b)) = w {
            wanted.extend(b.expect.iter().map(|(t, k, _)| (*t, k.as_slice())));
        }
    }
    let mut current: std::collections::HashMap<(Tree, &[u8]), Option<Vec<u8>>> =
        std::collections::HashMap::with_capacity(wanted.len());
    for tree in Tree::ALL {
        let keys: Vec<&[u8]> = wanted
            .iter()
            .filter(|(t, _)| *t == tree)
            .map(|(_, k)| *k)
            .collect();
        if keys.is_empty() {
            continue;
        }
        for (k, v) in keys.iter().zip(store.get_many(tree, &keys)?) {
            current.insert((tree, k), v);
        }
    }
    let mut written: HashSet<(Tree, &[u8])> = HashSet::new();
    Ok(withs
        .iter()
        .map(|w| {
            let Some(With::Only(b)) = w else {
                return true;
            };
            let holds = b.expect.iter().all(|(t, k, want)| {
                !written.contains(&(*t, k.as_slice()))
                    && current.get(&(*t, k.as_slice())).and_then(|v| v.as_deref())
                        == want.as_deref()
            });
            if holds {
                written.extend(b.writes.iter().map(|w| match w {
                    Write::Put(t, k, _) | Write::Delete(t, k) | Write::Add(t, k, _) => {
                        (*t, k.as_slice())
                    }
                }));
            }
            holds
        })
        .collect())
}
