//! When a member should leave and rejoin its group because partitions that wait
//! to be read are stuck with nobody. Pure: time is passed in, so the decision is
//! tested with fixed instants.
//!
//! A coordinator that hands out stale assignments can leave the only live member
//! with some or none of the partitions while the rest stay with members that are
//! dead, for good (Tansu 0.6 after sinks were killed in quick succession: its
//! JoinGroup lists members that never rejoined, and once they expire it answers
//! the leader's new assignment with the old one). A member normally owns nothing
//! only briefly (while it joins), or for good when the group has more members than
//! the topic has partitions. Guarantee: the watchdog asks for a rejoin only when
//! all of these hold, so a healthy group is never disturbed:
//!
//! - messages wait in partitions this member does not own (the group's lag,
//!   measured over every partition, is known to be above zero there); with no
//!   partition owned, that is every partition;
//! - the coordinator gave this member an assignment, and that assignment has not
//!   changed for longer than the patience (the session timeout at first: by then
//!   the coordinator has dropped any dead member); or the member has been joining
//!   for longer than [`MAX_PATIENCE_FACTOR`] session timeouts (a join can rightly
//!   take a while, as the coordinator waits for the other members, but Tansu 0.6
//!   has been seen to leave a static member joining for minutes after a
//!   revocation);
//! - nobody else can be reading those partitions: the group has committed
//!   nothing for as long, or the coordinator lists this member alone. When other
//!   members own those partitions and make progress, or one of them is stuck on
//!   a batch of its own, a rebalance would only stop the whole group.
//!
//! After each rejoin the patience doubles (up to [`MAX_PATIENCE_FACTOR`] session
//! timeouts) until the group commits again, so a group that is stuck for another
//! reason (every store down) is not churned.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use super::lag::GroupReading;

/// The longest patience, in session timeouts.
pub const MAX_PATIENCE_FACTOR: u32 = 6;

/// Why the watchdog asks for a rejoin: what the warning reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stall {
    /// Messages known to wait in partitions this member does not own.
    pub waiting_elsewhere: u64,
    /// The partitions this member owns.
    pub owned: BTreeSet<i32>,
    /// How long it has owned exactly these.
    pub owned_for: Duration,
    /// How long the group's committed offsets have not moved.
    pub group_idle_for: Duration,
    /// How many members the coordinator lists, if it said.
    pub members: Option<usize>,
    /// The patience that was exceeded.
    pub patience: Duration,
}

/// The decision: `Some` when this member should rejoin, given the latest `lag`
/// reading, the partitions it `owned` (`None` while it joins) and since when
/// (`owned_since`), how long to tolerate a stall (`patience`), and the time
/// `now`. A reading older than the patience is not acted on.
pub fn should_rejoin(
    lag: Option<&GroupReading>,
    owned: Option<&BTreeSet<i32>>,
    owned_since: Instant,
    patience: Duration,
    now: Instant,
) -> Option<Stall> {
    let reading = lag?;
    let owned = owned?;
    let stall = Stall {
        waiting_elsewhere: reading.lag.waiting_outside(owned),
        owned: owned.clone(),
        owned_for: now.saturating_duration_since(owned_since),
        group_idle_for: now.saturating_duration_since(reading.progressed_at),
        members: reading.members,
        patience,
    };
    let fresh = now.saturating_duration_since(reading.measured_at) <= patience;
    let nobody_else = stall.group_idle_for > patience || stall.members == Some(1);
    (fresh && stall.waiting_elsewhere > 0 && stall.owned_for > patience && nobody_else)
        .then_some(stall)
}

/// The watchdog's state: this member's assignment and since when, and the
/// current patience.
#[derive(Debug, Clone)]
pub struct Watchdog {
    session_timeout: Duration,
    patience: Duration,
    owned: Option<BTreeSet<i32>>,
    owned_since: Instant,
    last_rejoin: Option<Instant>,
}

impl Watchdog {
    /// A watchdog for a member that starts (joining) at `now`.
    pub fn new(session_timeout: Duration, now: Instant) -> Self {
        Watchdog {
            session_timeout,
            patience: session_timeout,
            owned: None,
            owned_since: now,
            last_rejoin: None,
        }
    }

    /// Records the partitions this member owns at `now` (`None`: it is joining).
    pub fn observe(&mut self, owned: Option<BTreeSet<i32>>, now: Instant) {
        if owned != self.owned {
            self.owned = owned;
            self.owned_since = now;
        }
    }

    /// Whether to rejoin now. A `Some` counts as done: the member is taken to
    /// start over at `now`, with twice the patience until the group commits again.
    pub fn check(&mut self, lag: Option<&GroupReading>, now: Instant) -> Option<Stall> {
        let committed_since_rejoin = match (lag, self.last_rejoin) {
            (Some(r), Some(last)) => r.progressed_at > last,
            _ => false,
        };
        if committed_since_rejoin {
            self.patience = self.session_timeout;
        }
        // Joining: as if it owned nothing, with the longest patience.
        let (owned, patience) = match &self.owned {
            Some(owned) => (owned.clone(), self.patience),
            None => (BTreeSet::new(), self.session_timeout * MAX_PATIENCE_FACTOR),
        };
        let stall = should_rejoin(lag, Some(&owned), self.owned_since, patience, now)?;
        self.owned = None;
        self.owned_since = now;
        self.last_rejoin = Some(now);
        self.patience = (self.patience * 2).min(self.session_timeout * MAX_PATIENCE_FACTOR);
        Some(stall)
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::sink::lag::GroupLag;

    const SESSION: Duration = Duration::from_secs(10);

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn none() -> BTreeSet<i32> {
        BTreeSet::new()
    }

    /// A watchdog whose member was assigned `owned` at `t0`.
    fn assigned(owned: BTreeSet<i32>, t0: Instant) -> Watchdog {
        let mut w = Watchdog::new(SESSION, t0);
        w.observe(Some(owned), t0);
        w
    }

    /// Three partitions with `waiting` messages each, measured at `measured`, the
    /// group (of two members) idle since `progressed`.
    fn reading(waiting: [u64; 3], progressed: Instant, measured: Instant) -> GroupReading {
        GroupReading {
            members: Some(2),
            lag: GroupLag {
                partitions: BTreeMap::from([
                    (0, Some(waiting[0])),
                    (1, Some(waiting[1])),
                    (2, Some(waiting[2])),
                ]),
                committed: 0,
            },
            measured_at: measured,
            progressed_at: progressed,
        }
    }

    #[test]
    fn a_member_with_nothing_while_messages_wait_and_nobody_commits_rejoins() {
        let t0 = Instant::now();
        let now = t0 + secs(11);
        let r = reading([100, 0, 5], t0, now);
        let stall = should_rejoin(Some(&r), Some(&none()), t0, SESSION, now);
        assert_eq!(
            stall,
            Some(Stall {
                waiting_elsewhere: 105,
                owned: none(),
                owned_for: secs(11),
                group_idle_for: secs(11),
                members: Some(2),
                patience: SESSION,
            })
        );
    }

    #[test]
    fn a_member_with_some_partitions_rejoins_when_the_others_wait_with_nobody() {
        // Seen with Tansu 0.6: the live member keeps [1], partitions 0 and 2 stay
        // with members that are dead.
        let t0 = Instant::now();
        let now = t0 + secs(30);
        let r = reading([3000, 0, 3700], t0, now);
        let stall = should_rejoin(Some(&r), Some(&BTreeSet::from([1])), t0, SESSION, now)
            .expect("a rejoin");
        assert_eq!(stall.waiting_elsewhere, 6700);
    }

    #[test]
    fn a_member_alone_in_the_group_rejoins_even_while_it_commits() {
        // Its own partitions keep it committing, the others wait with nobody.
        let t0 = Instant::now();
        let now = t0 + secs(30);
        let mut r = reading([3000, 0, 3700], now - secs(1), now);
        let one = BTreeSet::from([1]);
        assert_eq!(should_rejoin(Some(&r), Some(&one), t0, SESSION, now), None);
        r.members = Some(1);
        assert!(should_rejoin(Some(&r), Some(&one), t0, SESSION, now).is_some());
    }

    #[test]
    fn not_when_what_waits_is_in_its_own_partitions() {
        // Its own backlog is its job (a store that is down, say), not the group's.
        let t0 = Instant::now();
        let now = t0 + secs(60);
        let r = reading([100, 100, 100], t0, now);
        let all = BTreeSet::from([0, 1, 2]);
        assert_eq!(should_rejoin(Some(&r), Some(&all), t0, SESSION, now), None);
    }

    #[test]
    fn not_before_the_session_timeout() {
        let t0 = Instant::now();
        let now = t0 + SESSION;
        let r = reading([100, 0, 0], t0, now);
        assert_eq!(
            should_rejoin(Some(&r), Some(&none()), t0, SESSION, now),
            None
        );
    }

    #[test]
    fn not_when_nothing_waits() {
        let t0 = Instant::now();
        let now = t0 + secs(60);
        let r = reading([0, 0, 0], t0, now);
        assert_eq!(
            should_rejoin(Some(&r), Some(&none()), t0, SESSION, now),
            None
        );
    }

    #[test]
    fn not_without_a_lag_reading_or_with_a_stale_one() {
        let t0 = Instant::now();
        let now = t0 + secs(60);
        assert_eq!(should_rejoin(None, Some(&none()), t0, SESSION, now), None);
        let old = reading([100, 0, 0], t0, now - secs(11));
        assert_eq!(
            should_rejoin(Some(&old), Some(&none()), t0, SESSION, now),
            None
        );
    }

    #[test]
    fn not_while_other_members_make_progress() {
        // More members than partitions: this one idles, the others commit.
        let t0 = Instant::now();
        let now = t0 + secs(60);
        let r = reading([100, 100, 100], now - secs(2), now);
        assert_eq!(
            should_rejoin(Some(&r), Some(&none()), t0, SESSION, now),
            None
        );
    }

    #[test]
    fn not_while_it_joins_for_up_to_six_session_timeouts() {
        // The coordinator may wait for the other members for a while: let it.
        let t0 = Instant::now();
        let now = t0 + secs(60);
        let r = reading([100, 0, 0], t0, now);
        assert_eq!(should_rejoin(Some(&r), None, t0, SESSION, now), None);
        let mut w = Watchdog::new(SESSION, t0);
        assert_eq!(w.check(Some(&r), now), None);
    }

    #[test]
    fn a_join_that_lasts_longer_is_started_again_when_messages_wait_with_nobody() {
        // Seen with Tansu 0.6: a static member revoked, then joining for minutes.
        let t0 = Instant::now();
        let now = t0 + secs(61);
        let mut w = Watchdog::new(SESSION, t0);
        w.observe(Some(BTreeSet::from([0, 1, 2])), t0 - secs(5));
        w.observe(None, t0);
        let stall = w
            .check(Some(&reading([100, 0, 0], t0, now)), now)
            .expect("a rejoin");
        assert_eq!(stall.owned, none());
        assert_eq!(stall.patience, SESSION * MAX_PATIENCE_FACTOR);
        // Not while the group commits: the others read, the join waits for them.
        let mut w = Watchdog::new(SESSION, t0);
        let busy = reading([100, 0, 0], now - secs(1), now);
        assert_eq!(w.check(Some(&busy), now), None);
    }

    #[test]
    fn a_new_assignment_restarts_the_clock() {
        let t0 = Instant::now();
        let mut w = Watchdog::new(SESSION, t0);
        w.observe(Some(BTreeSet::from([1])), t0 + secs(1));
        w.observe(Some(BTreeSet::from([1])), t0 + secs(5));
        w.observe(None, t0 + secs(5));
        w.observe(Some(none()), t0 + secs(6));
        let r = |now| reading([100, 0, 0], t0, now);
        assert_eq!(w.check(Some(&r(t0 + secs(16))), t0 + secs(16)), None);
        let stall = w
            .check(Some(&r(t0 + secs(17))), t0 + secs(17))
            .expect("a rejoin");
        assert_eq!(stall.owned_for, secs(11));
    }

    #[test]
    fn patience_doubles_after_each_rejoin_up_to_a_cap_and_resets_when_the_group_commits() {
        let t0 = Instant::now();
        let mut w = assigned(none(), t0);
        let at = |s: u64| t0 + secs(s);
        let idle = |now| reading([100, 0, 0], t0, now);
        // After each rejoin, the coordinator assigns nothing again at once.
        let reassigned = |w: &mut Watchdog, s| w.observe(Some(none()), at(s));

        assert_eq!(w.check(Some(&idle(at(10))), at(10)), None);
        assert!(w.check(Some(&idle(at(11))), at(11)).is_some());
        reassigned(&mut w, 11);
        // Started over at 11 s with 20 s of patience.
        assert_eq!(w.check(Some(&idle(at(31))), at(31)), None);
        let second = w
            .check(Some(&idle(at(32))), at(32))
            .expect("a second rejoin");
        assert_eq!(second.patience, secs(20));
        assert_eq!(second.owned_for, secs(21));
        reassigned(&mut w, 32);
        // 40 s, then capped at 60 s.
        assert!(w.check(Some(&idle(at(73))), at(73)).is_some());
        reassigned(&mut w, 73);
        assert_eq!(w.check(Some(&idle(at(133))), at(133)), None);
        assert!(w.check(Some(&idle(at(134))), at(134)).is_some());
        reassigned(&mut w, 134);
        assert!(w.check(Some(&idle(at(195))), at(195)).is_some());
        reassigned(&mut w, 195);

        // The group commits after the last rejoin: one session timeout again.
        let progressed = |now| reading([100, 0, 0], at(200), now);
        assert_eq!(w.check(Some(&progressed(at(205))), at(205)), None);
        let stall = w
            .check(Some(&progressed(at(215))), at(215))
            .expect("a rejoin");
        assert_eq!(stall.patience, SESSION);
    }
}
