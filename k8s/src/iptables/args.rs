//! `augur init`: istio-iptables' flags, parsed by clap, and the command's entry point.
//!
//! The short flags and their defaults are istio-iptables' own (`tools/istio-iptables/pkg/cmd`),
//! so an `istio-init` container spec keeps working when only the image and command change.
//! With no capture flags nothing is captured (the `empty` rule set); the injector passes the
//! sidecar's values explicitly.

use clap::Args;

use super::backend::{Backend, Iptables};
use super::options::{
    parse_cidrs, parse_ids, parse_interfaces, parse_ports, CaptureError, CaptureOptions,
    CidrSelection, InterceptionMode, PortSelection,
};
use super::plan::plan;

/// Flags of `augur init` (istio-iptables compatible).
#[derive(Debug, Clone, Args)]
pub struct InitArgs {
    /// Outbound capture port: locally generated TCP goes here.
    #[arg(short = 'p', long = "envoy-port", default_value_t = 15001)]
    pub proxy_port: u16,
    /// Inbound capture port: incoming TCP goes here.
    #[arg(short = 'z', long = "inbound-capture-port", default_value_t = 15006)]
    pub inbound_capture_port: u16,
    /// HBONE tunnel port, never captured inbound.
    #[arg(short = 'e', long = "inbound-tunnel-port", default_value_t = 15008)]
    pub inbound_tunnel_port: u16,
    /// Comma-separated uids whose traffic is never captured (the proxy's).
    #[arg(short = 'u', long = "proxy-uid", default_value = "1337")]
    pub proxy_uid: String,
    /// Comma-separated gids whose traffic is never captured (default: the uids).
    #[arg(short = 'g', long = "proxy-gid")]
    pub proxy_gid: Option<String>,
    /// Interception mode; only REDIRECT is implemented.
    #[arg(
        short = 'm',
        long = "istio-inbound-interception-mode",
        default_value = "REDIRECT"
    )]
    pub mode: String,
    /// Outbound IPv4 ranges to capture: `*` for all, empty for none.
    #[arg(
        short = 'i',
        long = "istio-service-cidr",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub include_ip_ranges: String,
    /// Outbound IPv4 ranges never captured.
    #[arg(short = 'x', long = "istio-service-exclude-cidr", default_value = "")]
    pub exclude_ip_ranges: String,
    /// Inbound ports to capture: `*` for all, empty for none.
    #[arg(short = 'b', long = "istio-inbound-ports", default_value = "")]
    pub include_inbound_ports: String,
    /// Inbound ports never captured (with `-b '*'`).
    #[arg(short = 'd', long = "istio-local-exclude-ports", default_value = "")]
    pub exclude_inbound_ports: String,
    /// Outbound ports always captured.
    #[arg(short = 'q', long = "istio-include-outbound-ports", default_value = "")]
    pub include_outbound_ports: String,
    /// Outbound ports never captured.
    #[arg(short = 'o', long = "istio-exclude-outbound-ports", default_value = "")]
    pub exclude_outbound_ports: String,
    /// Interfaces whose incoming traffic is treated as outbound (VMs inside the pod).
    #[arg(short = 'k', long = "kube-virt-interfaces", default_value = "")]
    pub reroute_interfaces: String,
    /// Interfaces left entirely alone.
    #[arg(short = 'c', long = "exclude-interfaces", default_value = "")]
    pub exclude_interfaces: String,
    /// Print the `iptables-restore` input and change nothing.
    #[arg(short = 'n', long)]
    pub dry_run: bool,
    /// Remove what `augur init` installed instead of adding rules: the `ISTIO_*` chains of the
    /// nat, mangle and raw tables and every rule that jumps to them, whatever flags the install
    /// or this run was given.
    #[arg(long, conflicts_with = "dry_run")]
    pub cleanup: bool,
    /// Force the iptables backend instead of reading `iptables --version`.
    #[arg(long, value_enum)]
    pub iptables_backend: Option<Backend>,
}

impl InitArgs {
    /// Validates the flags into [`CaptureOptions`].
    pub fn to_options(&self) -> Result<CaptureOptions, CaptureError> {
        let proxy_uids = parse_ids("-u", &self.proxy_uid)?;
        let proxy_gids = match &self.proxy_gid {
            Some(gids) => parse_ids("-g", gids)?,
            None => proxy_uids.clone(),
        };
        Ok(CaptureOptions {
            proxy_port: self.proxy_port,
            inbound_capture_port: self.inbound_capture_port,
            inbound_tunnel_port: self.inbound_tunnel_port,
            proxy_uids,
            proxy_gids,
            mode: InterceptionMode::parse(&self.mode)?,
            inbound_ports: PortSelection::parse("-b", &self.include_inbound_ports)?,
            exclude_inbound_ports: parse_ports("-d", &self.exclude_inbound_ports)?,
            outbound_ranges: CidrSelection::parse("-i", &self.include_ip_ranges)?,
            exclude_outbound_ranges: parse_cidrs("-x", &self.exclude_ip_ranges)?,
            include_outbound_ports: parse_ports("-q", &self.include_outbound_ports)?,
            exclude_outbound_ports: parse_ports("-o", &self.exclude_outbound_ports)?,
            reroute_interfaces: parse_interfaces("-k", &self.reroute_interfaces)?,
            exclude_interfaces: parse_interfaces("-c", &self.exclude_interfaces)?,
        })
    }
}

/// Runs `augur init`: prints (`--dry-run`), removes (`--cleanup`) or applies the rules.
pub fn run_init(args: InitArgs) -> anyhow::Result<()> {
    if args.cleanup {
        // Cleanup must work whatever the flags: invalid ones only lose the first pass.
        let planned = match args.to_options() {
            Ok(options) => Some(plan(&options)),
            Err(err) => {
                tracing::warn!(%err, "flags ignored: removing whatever augur init installed");
                None
            }
        };
        let iptables = Iptables::new(args.iptables_backend, Vec::new())?;
        let removed = iptables.cleanup(planned.as_ref())?;
        tracing::info!(backend = ?iptables.backend, removed, "capture rules removed");
        return Ok(());
    }
    let planned = plan(&args.to_options()?);
    if args.dry_run {
        print!("{}", planned.render());
        return Ok(());
    }
    let iptables = Iptables::new(args.iptables_backend, Vec::new())?;
    iptables.apply(&planned)?;
    tracing::info!(backend = ?iptables.backend, rules = planned.rules.len(), "capture rules applied");
    Ok(())
}
