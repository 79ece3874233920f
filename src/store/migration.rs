//! Which schema migrations a store must run: one rule for every store, kept pure so
//! that it is tested here; each store only reads what was applied and runs the rest
//! (`migrations.rs` in its folder).
//!
//! Guarantee: versions are numbered from 1 in the order of the store's migration
//! list, each is run at most once per database as far as the store can tell, in
//! ascending order; a database that already holds versions this binary does not
//! know is left as it is, with a warning.

/// A schema version: 1 is the first migration in a store's list.
pub(crate) type Version = u32;

/// What a store must do to bring its schema up to date.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Pending {
    /// Versions to run, ascending.
    pub(crate) versions: Vec<Version>,
    /// The highest version applied that this binary does not know, if any.
    pub(crate) newer: Option<Version>,
    /// How many versions this binary knows.
    pub(crate) known: Version,
}

/// The versions of `known` migrations (1..=known) not in `applied`, and whether
/// `applied` holds versions newer than this binary knows. `applied` may be in any
/// order and hold repeats (ClickHouse may record a version twice).
pub(crate) fn pending(applied: &[Version], known: usize) -> Pending {
    let known = Version::try_from(known).expect("fewer than 2^32 migrations");
    Pending {
        versions: (1..=known).filter(|v| !applied.contains(v)).collect(),
        newer: applied.iter().copied().filter(|v| *v > known).max(),
        known,
    }
}

/// Like [`pending`], for a store that records how many versions ran rather than
/// which (SQLite's `user_version`): versions `1..=count` are applied.
pub(crate) fn pending_after(count: Version, known: usize) -> Pending {
    let known_versions = Version::try_from(known).expect("fewer than 2^32 migrations");
    let applied: Vec<Version> = (1..=count.min(known_versions)).collect();
    Pending {
        newer: (count > known_versions).then_some(count),
        ..pending(&applied, known)
    }
}

impl Pending {
    /// The migrations to run, with their versions, out of the store's list.
    pub(crate) fn select<'a, T>(
        &'a self,
        migrations: &'a [T],
    ) -> impl Iterator<Item = (Version, &'a T)> + 'a {
        self.versions
            .iter()
            .map(|v| (*v, &migrations[*v as usize - 1]))
    }

    /// Logs a warning when the database is newer than this binary: it may still
    /// work (migrations only add), but the newer program should be the one running.
    pub(crate) fn warn_if_newer(&self, store: &str, target: &str) {
        if let Some(newer) = self.newer {
            tracing::warn!(
                target = %target,
                schema_version = newer,
                known = self.known,
                "the {store} schema is newer than this program knows"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_empty_database_gets_every_migration_in_order() {
        let p = pending(&[], 3);
        assert_eq!(p.versions, [1, 2, 3]);
        assert_eq!(p.newer, None);
        let names: Vec<_> = p.select(&["a", "b", "c"]).collect();
        assert_eq!(names, [(1, &"a"), (2, &"b"), (3, &"c")]);
    }

    #[test]
    fn applied_versions_are_skipped_whatever_their_order_and_repeats() {
        assert_eq!(pending(&[2, 1, 1], 3).versions, [3]);
        assert_eq!(pending(&[1, 2, 3], 3).versions, Vec::<Version>::new());
        // A gap (a version recorded by a run that died midway elsewhere) is filled.
        assert_eq!(pending(&[1, 3], 3).versions, [2]);
    }

    #[test]
    fn a_count_of_applied_versions_means_the_first_ones() {
        assert_eq!(pending_after(0, 2).versions, [1, 2]);
        assert_eq!(pending_after(1, 2).versions, [2]);
        let newer = pending_after(7, 2);
        assert!(newer.versions.is_empty());
        assert_eq!(newer.newer, Some(7));
        assert_eq!(pending_after(2, 2), pending(&[1, 2], 2));
    }

    #[test]
    fn a_newer_database_runs_nothing_and_says_so() {
        let p = pending(&[1, 2, 3, 4], 2);
        assert!(p.versions.is_empty());
        assert_eq!(p.newer, Some(4));
        assert_eq!(p.known, 2);
        assert_eq!(pending(&[1, 2], 2).newer, None);
    }
}
