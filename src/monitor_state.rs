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
//! Pure: the caller passes the observations and their time.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

/// Checks a state must last before a change of status is a plain transition, and checks that
/// must agree to end flapping.
pub const FLAP_THRESHOLD: usize = 3;

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
}

/// A monitor's current state.
#[derive(Debug, Clone)]
struct State {
    status: Status,
    started_at: Instant,
    checks: usize,
    /// The last statuses seen while flapping (at most FLAP_THRESHOLD).
    recent: VecDeque<bool>,
}

/// A change of state, returned by [`MonitorStates::observe`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    /// None: the first check of this monitor.
    pub from: Option<Status>,
    pub to: Status,
    /// How long the previous state lasted (zero for a first check).
    pub lasted: Duration,
}

/// Every monitor's state, by monitor id.
#[derive(Debug, Default)]
pub struct MonitorStates {
    states: HashMap<String, State>,
}

impl MonitorStates {
    /// Records one check of `monitor` (`up` or not) at `now`; the transition it caused, if
    /// any. A monitor first seen up is not a transition worth telling; first seen down is.
    pub fn observe(&mut self, monitor: &str, up: bool, now: Instant) -> Option<Transition> {
        let seen = if up { Status::Up } else { Status::Down };
        let Some(st) = self.states.get_mut(monitor) else {
            self.states.insert(
                monitor.to_owned(),
                State {
                    status: seen,
                    started_at: now,
                    checks: 1,
                    recent: VecDeque::new(),
                },
            );
            return (!up).then_some(Transition {
                from: None,
                to: Status::Down,
                lasted: Duration::ZERO,
            });
        };
        let change = |st: &mut State, to: Status| {
            let t = Transition {
                from: Some(st.status),
                to,
                lasted: now.saturating_duration_since(st.started_at),
            };
            st.status = to;
            st.started_at = now;
            st.checks = 1;
            st.recent.clear();
            Some(t)
        };
        match st.status {
            Status::Flapping => {
                st.checks += 1;
                st.recent.push_back(up);
                if st.recent.len() > FLAP_THRESHOLD {
                    st.recent.pop_front();
                }
                let settled =
                    st.recent.len() == FLAP_THRESHOLD && st.recent.iter().all(|&u| u == up);
                if settled {
                    change(st, seen)
                } else {
                    None
                }
            }
            current if current == seen => {
                st.checks += 1;
                None
            }
            _ if st.checks < FLAP_THRESHOLD => {
                let t = change(st, Status::Flapping);
                st.recent.push_back(up);
                t
            }
            _ => change(st, seen),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(seq: &[bool]) -> Vec<Transition> {
        let mut m = MonitorStates::default();
        let t0 = Instant::now();
        seq.iter()
            .enumerate()
            .filter_map(|(i, &up)| {
                m.observe("lab-liveness", up, t0 + Duration::from_secs(i as u64))
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
        let t = Instant::now();
        assert!(m.observe("a", true, t).is_none());
        assert!(m.observe("b", false, t).is_some());
        for _ in 0..3 {
            assert!(m.observe("a", true, t).is_none());
        }
        assert!(m.observe("a", false, t).is_some());
        assert!(m.observe("b", false, t).is_none());
    }
}
