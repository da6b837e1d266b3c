//! Transparent capture for `augur init`: istio-iptables' nat rules, planned purely and applied
//! by one adapter.
//!
//! - [`options`]: the flags' meanings as validated values ([`CaptureOptions`]);
//! - [`plan`](mod@plan): `CaptureOptions` → ordered rules → `iptables-restore` text (golden-tested);
//! - [`cleanup`](mod@cleanup): what is left of an install, read from `iptables-save`, so that
//!   cleanup does not depend on the flags;
//! - [`backend`]: the only code that runs processes (`iptables-restore`, nft or legacy);
//! - [`args`]: the clap flags ([`InitArgs`]) and [`run_init`].

pub mod args;
pub mod backend;
pub mod cleanup;
pub mod options;
pub mod plan;

pub use args::{run_init, InitArgs};
pub use backend::{ApplyError, Backend, Iptables};
pub use cleanup::Leftovers;
pub use options::{CaptureError, CaptureOptions, CidrSelection, Ipv4Cidr, PortSelection};
pub use plan::{plan, Plan, Rule};
