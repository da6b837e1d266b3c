//! One module per subcommand: each turns parsed flags into work and an exit code.

pub mod policy;
pub mod proxy;
