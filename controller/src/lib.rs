//! `augur controller`: one decision for every sidecar.
//!
//! The controller runs every CanaryPolicy's rollout from fleet-wide evidence and is the only
//! writer of rollout state. Sidecars started with `--controller` follow it: they get the
//! current routing before their listeners open and every change pushed as it is decided
//! ([`publish`], [`server`]); a stock Envoy can follow the same weights over xDS RDS
//! ([`xds`]).

pub mod app;
pub mod policies;
pub mod publish;
pub mod routing;
pub mod server;
pub mod xds;

pub use app::{Bound, Controller, ControllerConfig, StartError, AUDIT_LOG};
pub use publish::{Publisher, SubscriberView};
pub use server::{serve, Api, ApiRequest, ApiResponse, ControllerHttp, ServerMetrics};
