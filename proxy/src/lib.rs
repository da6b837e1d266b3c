//! augur's data plane: the sidecar proxy as a library, which the `augur` binary (crate
//! `augur-cli`) runs.
//!
//! Where things happen, in request order:
//! - [`app`] builds the proxy from a validated [`app::ProxyConfig`]: listeners, admin, status,
//!   reload and rollout services;
//! - [`service::AugurProxy`] is where a request enters (`request_filter`) and leaves (`logging`);
//! - [`route`] matches it against the VirtualService routes and picks a weighted destination;
//! - [`policy_store`] holds the validated policy set and its compiled routes behind `arc-swap`,
//!   and [`reload`] swaps in a new set when the files change (or on SIGHUP);
//! - [`sample`] records one sample per request for the analyzer; the rollouts
//!   ([`augur_rollout`], driven by [`rollout_driver`]) judge them, or the controller does for a
//!   fleet ([`follow`]), and [`weights`] holds the weights the next requests use;
//! - [`admin`] serves Envoy's admin shapes, the status port and Prometheus metrics;
//! - [`protect`] checks API keys and rate limits (augur's ApiProtection) before a request is
//!   forwarded, and [`audit`] records who changed what through the admin or the policy files.

pub mod access_log;
pub mod admin;
pub mod app;
pub mod audit;
pub mod clock;
pub mod drain;
pub mod evidence;
pub mod follow;
pub mod identity;
pub mod limits;
pub mod local_reply;
pub mod logging;
pub mod metrics;
pub mod mirror;
pub mod policy_store;
pub mod ports;
pub mod preflight;
pub mod protect;
pub mod reload;
pub mod response_flag;
pub mod rollout_driver;
pub mod route;
pub mod sample;
pub mod service;
pub mod tcp;
pub mod tls;
pub mod weights;
