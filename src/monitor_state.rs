//! The state of each monitor (one check of one environment, or one health component), in the
//! manner of Heartbeat's state tracker: a monitor is `up`, `down` or `flapping`, and a state
//! lasts from the check that started it until the check that ends it.
//!
//! A monitor that changes status while its current state is younger than
//! [`FLAP_THRESHOLD`] checks starts flapping (Heartbeat's threshold of 3 is the reference); it
//! stops flapping once its last [`FLAP_THRESHOLD`] checks agree, and takes their status. So a
//! check that alternates up and down on every run produces one "down" and one "flapping"
//! transition, then nothing until it settles.
//!
//! A monitor's first state is not "young": a check seen up once and then down is down, not
//! flapping (only a state that began with a change of status can be too young to trust).
//!
//! Pure: the caller passes the observations and their time (a monotonic instant for the
//! durations of the log lines, the result's `@timestamp` for the state written into the
//! documents, see [`StateView`]).

use chrono::{DateTime, Utc};
use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Checks a state must last before a change of status is a plain transition, and checks that
/// must agree to end flapping.
pub(crate) const FLAP_THRESHOLD: usize = 3;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    Up,
    Down,
    Flapping,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Down => "down",
            Status::Flapping => "flapping",
        }
    }

    /// The word Heartbeat writes in `state.status` (`up`, `down`, `flap`).
    pub(crate) fn heartbeat_word(self) -> &'static str {
        match self {
            Status::Up => "up",
            Status::Down => "down",
            Status::Flapping => "flap",
        }
    }
}

/// A monitor's current state.
#[derive(Debug, Clone)]
struct State {
    status: Status,
    started_at: Instant,
    /// Wall-clock start (the `@timestamp` of the check that began the state).
    started_wall: DateTime<Utc>,
    /// The monitor's first state: it began with the first check, not with a change of status,
    /// so it is never too young to change plainly.
    initial: bool,
    /// Which state of this monitor this is (1 for the first), part of [`StateView::id`].
    generation: u64,
    checks: usize,
    up: usize,
    down: usize,
    /// The last statuses seen while flapping (at most FLAP_THRESHOLD).
    recent: VecDeque<bool>,
}

impl State {
    /// The state a monitor's first check (`seen`) begins.
    fn first(seen: Status, now: Instant, at: DateTime<Utc>) -> Self {
        let up = seen == Status::Up;
        Self {
            status: seen,
            started_at: now,
            started_wall: at,
            initial: true,
            generation: 1,
            checks: 1,
            up: up as usize,
            down: (!up) as usize,
            recent: VecDeque::new(),
        }
    }

    /// Enters state `to` with the check just seen (`up`), counted as its first.
    fn enter(&mut self, to: Status, up: bool, now: Instant, at: DateTime<Utc>) -> Transition {
        let t = Transition {
            from: Some(self.status),
            to,
            lasted: now.saturating_duration_since(self.started_at),
        };
        self.status = to;
        self.started_at = now;
        self.started_wall = at;
        self.initial = false;
        self.generation += 1;
        self.checks = 1;
        self.up = up as usize;
        self.down = (!up) as usize;
        self.recent.clear();
        t
    }

    /// One more check in the current state.
    fn count(&mut self, up: bool) {
        self.checks += 1;
        if up {
            self.up += 1;
        } else {
            self.down += 1;
        }
    }
}

/// A change of state, returned by [`MonitorStates::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Transition {
    /// None: the first check of this monitor.
    pub from: Option<Status>,
    pub to: Status,
    /// How long the previous state lasted (zero for a first check).
    pub lasted: Duration,
}

/// Every monitor's state, by monitor id.
#[derive(Debug, Default)]
pub(crate) struct MonitorStates {
    states: HashMap<String, State>,
}

/// A monitor's current state as the documents carry it (Heartbeat's `state.*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct StateView {
    /// `<monitor id>-<start in ms, hex>-<generation>`: unique per state of a monitor.
    pub id: String,
    pub status: Status,
    pub started_at: DateTime<Utc>,
    /// From the state's start to the check just observed.
    pub duration_ms: u64,
    /// Checks in this state so far, the one just observed included.
    pub checks: usize,
    /// Of those checks, how many were up and how many down (they differ while flapping).
    pub up: usize,
    pub down: usize,
}

impl MonitorStates {
    /// Records one check of `monitor` (`up` or not) at `now` (`at` on the wall clock); the
    /// transition it caused, if any. A monitor first seen up is not a transition worth
    /// telling; first seen down is.
    pub(crate) fn observe(
        &mut self,
        monitor: &str,
        up: bool,
        now: Instant,
        at: DateTime<Utc>,
    ) -> Option<Transition> {
        let seen = if up { Status::Up } else { Status::Down };
        let Some(st) = self.states.get_mut(monitor) else {
            self.states
                .insert(monitor.to_owned(), State::first(seen, now, at));
            return (!up).then_some(Transition {
                from: None,
                to: Status::Down,
                lasted: Duration::ZERO,
            });
        };
        match st.status {
            Status::Flapping => {
                st.count(up);
                st.recent.push_back(up);
                if st.recent.len() > FLAP_THRESHOLD {
                    st.recent.pop_front();
                }
                let settled =
                    st.recent.len() == FLAP_THRESHOLD && st.recent.iter().all(|&u| u == up);
                settled.then(|| st.enter(seen, up, now, at))
            }
            current if current == seen => {
                st.count(up);
                None
            }
            _ if st.checks < FLAP_THRESHOLD && !st.initial => {
                let t = st.enter(Status::Flapping, up, now, at);
                st.recent.push_back(up);
                Some(t)
            }
            _ => Some(st.enter(seen, up, now, at)),
        }
    }

    /// The current state of `monitor` as of its last check at `at`.
    pub fn view(&self, monitor: &str, at: DateTime<Utc>) -> Option<StateView> {
        let st = self.states.get(monitor)?;
        Some(StateView {
            id: format!(
                "{monitor}-{:x}-{}",
                st.started_wall.timestamp_millis().max(0),
                st.generation
            ),
            status: st.status,
            started_at: st.started_wall,
            duration_ms: (at - st.started_wall).num_milliseconds().max(0) as u64,
            checks: st.checks,
            up: st.up,
            down: st.down,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wall(i: usize) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap()
    }

    fn run(seq: &[bool]) -> Vec<Transition> {
        let mut m = MonitorStates::default();
        let t0 = Instant::now();
        seq.iter()
            .enumerate()
            .filter_map(|(i, &up)| {
                m.observe(
                    "lab-liveness",
                    up,
                    t0 + Duration::from_secs(i as u64),
                    wall(i),
                )
            })
            .collect()
    }

    #[test]
    fn a_steady_monitor_has_no_transition_and_a_first_down_is_one() {
        assert!(run(&[true; 10]).is_empty());
        let t = run(&[false, false, false]);
        assert_eq!(
            t,
            vec![Transition {
                from: None,
                to: Status::Down,
                lasted: Duration::ZERO
            }]
        );
    }

    #[test]
    fn an_outage_is_one_down_and_one_up_with_how_long_it_lasted() {
        let t = run(&[true, true, true, false, false, false, false, true, true]);
        assert_eq!(t.len(), 2, "{t:?}");
        assert_eq!((t[0].from, t[0].to), (Some(Status::Up), Status::Down));
        assert_eq!((t[1].from, t[1].to), (Some(Status::Down), Status::Up));
        assert_eq!(
            t[1].lasted,
            Duration::from_secs(4),
            "down from check 3 to check 7"
        );
    }

    #[test]
    fn a_flapping_monitor_changes_state_twice_then_once_when_it_settles() {
        let mut seq = vec![true; 5];
        for i in 0..100 {
            seq.push(i % 2 == 0);
        }
        let flapping = run(&seq);
        assert_eq!(
            flapping.iter().map(|t| t.to).collect::<Vec<_>>(),
            vec![Status::Down, Status::Flapping],
            "{flapping:?}"
        );
        seq.extend([true; 3]);
        let settled = run(&seq);
        assert_eq!(settled.len(), 3);
        assert_eq!(
            (settled[2].from, settled[2].to),
            (Some(Status::Flapping), Status::Up)
        );
    }

    #[test]
    fn monitors_are_independent() {
        let mut m = MonitorStates::default();
        let (t, w) = (Instant::now(), wall(0));
        assert!(m.observe("a", true, t, w).is_none());
        assert!(m.observe("b", false, t, w).is_some());
        for _ in 0..3 {
            assert!(m.observe("a", true, t, w).is_none());
        }
        assert!(m.observe("a", false, t, w).is_some());
        assert!(m.observe("b", false, t, w).is_none());
    }

    #[test]
    fn a_check_seen_up_once_then_down_is_down_not_flapping() {
        let t = run(&[true, false]);
        assert_eq!(t.len(), 1, "{t:?}");
        assert_eq!((t[0].from, t[0].to), (Some(Status::Up), Status::Down));
        // The state after a change is young: changing back at once is flapping.
        let t = run(&[true, false, true]);
        assert_eq!(
            t.iter().map(|t| t.to).collect::<Vec<_>>(),
            vec![Status::Down, Status::Flapping]
        );
    }

    #[test]
    fn the_view_counts_checks_of_the_current_state_and_its_age() {
        let mut m = MonitorStates::default();
        let t0 = Instant::now();
        for (i, up) in [true, true, false, false, false].into_iter().enumerate() {
            m.observe(
                "lab-liveness",
                up,
                t0 + Duration::from_secs(i as u64),
                wall(i),
            );
        }
        let v = m.view("lab-liveness", wall(4)).unwrap();
        assert_eq!(v.status, Status::Down);
        assert_eq!((v.checks, v.up, v.down), (3, 0, 3));
        assert_eq!(v.started_at, wall(2));
        assert_eq!(v.duration_ms, 2000);
        assert_eq!(
            v.id,
            format!("lab-liveness-{:x}-2", wall(2).timestamp_millis())
        );
        assert_eq!(Status::Flapping.heartbeat_word(), "flap");
        assert!(m.view("other", wall(4)).is_none());
    }
}
