//! The controller's side of the fleet: the current [`FleetState`] and who follows it.
//!
//! A new state is made only when some rollout's routing changed; every subscriber's stream gets
//! it at once (a `tokio::sync::watch`, so a slow sidecar skips to the newest state instead of
//! queueing old ones). The registry remembers each subscriber's policy hashes, so the controller
//! can show which sidecars hold another version of a policy, and since when.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use augur_model::fleet::{FleetState, LabelPush, RolloutRouting, Subscriber, FLEET_PROTOCOL};
use bytes::Bytes;
use serde::Serialize;
use tokio::sync::{broadcast, watch};

/// Label batches a subscriber's stream may fall behind by before it skips some (and counts
/// them lost): labels are best-effort evidence, never worth holding the routing up.
const LABEL_BACKLOG: usize = 1024;

/// Milliseconds since the Unix epoch.
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// What the controller knows of one subscribed sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SubscriberView {
    /// The sidecar's name.
    pub node: String,
    /// When it subscribed (Unix ms).
    pub connected_at_ms: u64,
    /// Policies it holds in another version than the controller, with when that was first
    /// seen (Unix ms): it keeps its last routing for them until its ConfigMap catches up.
    pub lagging: BTreeMap<String, u64>,
    /// Policies the controller runs that it does not hold at all.
    pub missing: Vec<String>,
}

#[derive(Debug)]
struct Registered {
    subscriber: Subscriber,
    connected_at_ms: u64,
    lag_since: BTreeMap<String, u64>,
}

impl Registered {
    /// Brings the lag record up to date with `state`.
    fn compare(&mut self, state: &FleetState, now: u64) {
        let held: BTreeMap<&str, &str> = self
            .subscriber
            .policies
            .iter()
            .map(|(p, h)| (p.as_str(), h.as_str()))
            .collect();
        let mut still = BTreeMap::new();
        for r in &state.rollouts {
            if held
                .get(r.policy.as_str())
                .is_some_and(|h| *h != r.policy_hash)
            {
                let since = self.lag_since.get(&r.policy).copied().unwrap_or(now);
                still.insert(r.policy.clone(), since);
            }
        }
        self.lag_since = still;
    }

    fn view(&self, state: &FleetState) -> SubscriberView {
        let held: Vec<&str> = self
            .subscriber
            .policies
            .iter()
            .map(|(p, _)| p.as_str())
            .collect();
        SubscriberView {
            node: self.subscriber.node.clone(),
            connected_at_ms: self.connected_at_ms,
            lagging: self.lag_since.clone(),
            missing: state
                .rollouts
                .iter()
                .filter(|r| !held.contains(&r.policy.as_str()))
                .map(|r| r.policy.clone())
                .collect(),
        }
    }
}

/// The fleet's routing and its followers.
#[derive(Debug)]
pub struct Publisher {
    controller: String,
    state: watch::Sender<Arc<FleetState>>,
    subscribers: Mutex<BTreeMap<u64, Registered>>,
    next_id: AtomicU64,
    labels: broadcast::Sender<Bytes>,
}

/// One subscription; unregistered when dropped.
#[derive(Debug)]
pub struct Subscription {
    id: u64,
    publisher: Arc<Publisher>,
    /// The states, newest first; `changed()` wakes on each new one.
    pub states: watch::Receiver<Arc<FleetState>>,
    /// Label batches to forward, each one JSON line.
    pub labels: broadcast::Receiver<Bytes>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        if let Ok(mut subs) = self.publisher.subscribers.lock() {
            subs.remove(&self.id);
        }
    }
}

impl Publisher {
    /// A publisher with no rollout yet; `controller` names this controller process.
    pub fn new(controller: impl Into<String>) -> Arc<Self> {
        let controller = controller.into();
        let empty = FleetState {
            protocol: FLEET_PROTOCOL,
            version: 0,
            controller: controller.clone(),
            decided_at_ms: 0,
            published_at_ms: unix_ms(),
            rollouts: Vec::new(),
        };
        let (state, _) = watch::channel(Arc::new(empty));
        let (labels, _) = broadcast::channel(LABEL_BACKLOG);
        Arc::new(Self {
            controller,
            state,
            subscribers: Mutex::new(BTreeMap::new()),
            next_id: AtomicU64::new(1),
            labels,
        })
    }

    /// The current state.
    pub fn current(&self) -> Arc<FleetState> {
        Arc::clone(&self.state.borrow())
    }

    /// Publishes the rollouts' routing; a new version only when it differs from the current.
    /// Returns whether it did.
    pub fn publish(&self, mut rollouts: Vec<RolloutRouting>) -> bool {
        rollouts.sort_by(|a, b| a.policy.cmp(&b.policy));
        let current = self.current();
        if current.rollouts == rollouts {
            return false;
        }
        let state = Arc::new(FleetState {
            protocol: FLEET_PROTOCOL,
            version: current.version + 1,
            controller: self.controller.clone(),
            decided_at_ms: rollouts.iter().map(|r| r.changed_at_ms).max().unwrap_or(0),
            published_at_ms: unix_ms(),
            rollouts,
        });
        let now = unix_ms();
        if let Ok(mut subs) = self.subscribers.lock() {
            for s in subs.values_mut() {
                s.compare(&state, now);
            }
        }
        self.state.send_replace(state);
        true
    }

    /// Registers a sidecar; its [`Subscription`] yields the current state and every new one.
    pub fn subscribe(self: &Arc<Self>, subscriber: Subscriber) -> Subscription {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let now = unix_ms();
        let mut registered = Registered {
            subscriber,
            connected_at_ms: now,
            lag_since: BTreeMap::new(),
        };
        if let Ok(mut subs) = self.subscribers.lock() {
            // A sidecar subscribing again (after a reload, or a lost link) while its previous
            // stream is still registered keeps the time its lag was first seen.
            for earlier in subs
                .values()
                .filter(|r| r.subscriber.node == registered.subscriber.node)
            {
                for (policy, since) in &earlier.lag_since {
                    let kept = registered.lag_since.entry(policy.clone()).or_insert(*since);
                    *kept = (*kept).min(*since);
                }
            }
            registered.compare(&self.current(), now);
            subs.insert(id, registered);
        }
        let mut states = self.state.subscribe();
        states.mark_changed();
        Subscription {
            id,
            publisher: Arc::clone(self),
            states,
            labels: self.labels.subscribe(),
        }
    }

    /// Forwards ground-truth labels to every subscribed sidecar (the one holding each
    /// prediction joins it). Returns how many sidecars the batch was sent to.
    pub fn forward_labels(&self, push: &LabelPush) -> usize {
        let mut line = serde_json::to_vec(push).unwrap_or_default();
        line.push(b'\n');
        self.labels.send(Bytes::from(line)).unwrap_or(0)
    }

    /// Every subscribed sidecar, by name.
    pub fn subscribers(&self) -> Vec<SubscriberView> {
        let state = self.current();
        let mut all: Vec<SubscriberView> = self
            .subscribers
            .lock()
            .map(|subs| subs.values().map(|r| r.view(&state)).collect())
            .unwrap_or_default();
        all.sort_by(|a, b| a.node.cmp(&b.node));
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn routing(policy: &str, hash: &str, canary: u8) -> RolloutRouting {
        RolloutRouting {
            policy: policy.into(),
            policy_hash: hash.into(),
            stable: "m/v1".into(),
            canary: "m/v2".into(),
            stable_weight: 100 - canary,
            canary_weight: canary,
            phase: "progressing".into(),
            step: Some(1),
            changed_at_ms: u64::from(canary),
            header_routes: Vec::new(),
            mirror_routes: Vec::new(),
        }
    }

    #[test]
    fn a_new_version_only_when_the_routing_changes() {
        let p = Publisher::new("c");
        assert!(p.publish(vec![routing("ns/a", "h", 5)]));
        assert!(!p.publish(vec![routing("ns/a", "h", 5)]));
        assert!(p.publish(vec![routing("ns/a", "h", 20)]));
        let s = p.current();
        assert_eq!((s.version, s.decided_at_ms), (2, 20));
    }

    #[tokio::test]
    async fn a_subscriber_gets_the_current_state_then_each_new_one() {
        let p = Publisher::new("c");
        p.publish(vec![routing("ns/a", "h", 5)]);
        let mut sub = p.subscribe(Subscriber::default());
        sub.states.changed().await.expect("first");
        assert_eq!(sub.states.borrow_and_update().version, 1);
        p.publish(vec![routing("ns/a", "h", 20)]);
        sub.states.changed().await.expect("second");
        assert_eq!(sub.states.borrow_and_update().rollouts[0].canary_weight, 20);
        assert_eq!(p.subscribers().len(), 1);
        drop(sub);
        assert!(
            p.subscribers().is_empty(),
            "a dropped subscription unregisters"
        );
    }

    #[test]
    fn sidecars_holding_another_policy_version_are_shown_lagging() {
        let p = Publisher::new("c");
        p.publish(vec![routing("ns/a", "new", 5), routing("ns/b", "hb", 5)]);
        let behind = p.subscribe(Subscriber {
            node: "pod-1".into(),
            policies: vec![("ns/a".into(), "old".into())],
        });
        let _current = p.subscribe(Subscriber {
            node: "pod-2".into(),
            policies: vec![("ns/a".into(), "new".into()), ("ns/b".into(), "hb".into())],
        });
        let views = p.subscribers();
        assert_eq!(views[0].node, "pod-1");
        assert!(views[0].lagging.contains_key("ns/a"));
        assert_eq!(views[0].missing, vec!["ns/b".to_owned()]);
        assert!(views[1].lagging.is_empty() && views[1].missing.is_empty());
        let since = views[0].lagging["ns/a"];

        // pod-1 subscribes again, still behind, while its first stream is registered: the lag
        // keeps the time it was first seen.
        let again_sub = p.subscribe(Subscriber {
            node: "pod-1".into(),
            policies: vec![("ns/a".into(), "old".into())],
        });
        let again = p.subscribers();
        assert_eq!(again[1].node, "pod-1");
        assert_eq!(again[1].lagging["ns/a"], since);

        // Caught up, it subscribes again with the controller's version: not lagging.
        drop(behind);
        drop(again_sub);
        let _caught_up = p.subscribe(Subscriber {
            node: "pod-1".into(),
            policies: vec![("ns/a".into(), "new".into())],
        });
        let views = p.subscribers();
        assert_eq!(views[0].node, "pod-1");
        assert!(views[0].lagging.is_empty(), "{views:?}");
    }
}
