//! One module per subcommand: each turns parsed flags into work and an exit code.

mod admin_client;
pub mod analyze;
pub mod controller;
pub mod demo;
pub mod policy;
pub mod proxy;
pub mod rollout;
pub mod score;
