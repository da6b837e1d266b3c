//! augur's Kubernetes side.
//!
//! - [`iptables`]: `augur init`, the istio-iptables-compatible transparent capture rules;
//! - [`inject`]: `augur inject`, sidecar injection into Pods and workload templates;
//! - [`webhook`]: `augur injector`, the mutating admission webhook over HTTPS;
//! - [`lifecycle`]: `augur wait` / `augur drain`, the hooks the injected container calls.
//!
//! Every decision is a pure function over values (options → rules, object → object, review
//! → response); process spawning, files and sockets live in one adapter per module.

pub mod inject;
pub mod iptables;
pub mod lifecycle;
pub mod webhook;
