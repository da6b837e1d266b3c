//! The `augur` command line: flags ([`args`]) and one module per subcommand ([`cmd`]), over
//! the libraries that do the work (the proxy, the controller, the policies, the analyzer, the
//! shadow model, the Kubernetes helpers). The binary is `src/main.rs`.

pub mod args;
pub mod cmd;
pub mod config;
pub mod limit_args;
