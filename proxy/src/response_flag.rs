//! Envoy's `%RESPONSE_FLAGS%`: what went wrong with a request or connection, as access logs,
//! `istio_requests_total{response_flags}` and samples name it.

use std::fmt;

/// One request's (or TCP connection's) response flags, as Envoy prints them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum ResponseFlag {
    /// Nothing to report (`-`).
    #[default]
    None,
    /// No route matched (`NR`).
    NoRoute,
    /// The chosen cluster has no endpoint (`UH`).
    NoHealthyUpstream,
    /// The upstream refused or never completed the connection (`UF`).
    UpstreamConnectionFailure,
    /// Every HTTP attempt failed to connect and the retries are spent (`URX,UF`, in the order
    /// Envoy's router prints them).
    RetriedConnectionFailure,
    /// A TCP connection failed to connect, retries spent (`UF,URX`, tcp_proxy's order).
    TcpConnectionFailure,
    /// The upstream closed the connection before response headers (`UC`).
    UpstreamConnectionTermination,
    /// The upstream reset the HTTP/2 stream (`UR`).
    UpstreamRemoteReset,
    /// A circuit breaker was open (`UO`).
    UpstreamOverflow,
    /// No response headers within the timeout (`UT`).
    UpstreamRequestTimeout,
    /// The retries are spent and the last upstream answer is returned (`URX`).
    UpstreamRetryLimitExceeded,
    /// The client went away before the response (`DC`).
    DownstreamConnectionTermination,
    /// A fault delay was injected (`DI`).
    DelayInjected,
    /// A fault abort was injected (`FI`).
    FaultInjected,
    /// Rate limited (`RL`).
    RateLimited,
    /// Shed by the overload manager (`OM`).
    OverloadManager,
    /// A malformed or over-limit request (`DPE`).
    DownstreamProtocolError,
}

impl ResponseFlag {
    /// Envoy's text for the flags.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "-",
            Self::NoRoute => "NR",
            Self::NoHealthyUpstream => "UH",
            Self::UpstreamConnectionFailure => "UF",
            Self::RetriedConnectionFailure => "URX,UF",
            Self::TcpConnectionFailure => "UF,URX",
            Self::UpstreamConnectionTermination => "UC",
            Self::UpstreamRemoteReset => "UR",
            Self::UpstreamOverflow => "UO",
            Self::UpstreamRequestTimeout => "UT",
            Self::UpstreamRetryLimitExceeded => "URX",
            Self::DownstreamConnectionTermination => "DC",
            Self::DelayInjected => "DI",
            Self::FaultInjected => "FI",
            Self::RateLimited => "RL",
            Self::OverloadManager => "OM",
            Self::DownstreamProtocolError => "DPE",
        }
    }

    /// Whether there is anything to report.
    pub fn is_set(self) -> bool {
        self != Self::None
    }

    /// Envoy's `%RESPONSE_CODE_DETAILS%` for a request that ended with these flags, when they
    /// say why (`None`: the caller's default).
    pub fn code_details(self) -> Option<&'static str> {
        Some(match self {
            Self::NoRoute => "route_not_found",
            Self::NoHealthyUpstream => "no_healthy_upstream",
            Self::UpstreamRequestTimeout => "response_timeout",
            Self::UpstreamConnectionFailure | Self::RetriedConnectionFailure => {
                "upstream_reset_before_response_started{remote_connection_failure}"
            }
            Self::UpstreamConnectionTermination => {
                "upstream_reset_before_response_started{connection_termination}"
            }
            Self::FaultInjected => "fault_filter_abort",
            Self::DownstreamConnectionTermination => "downstream_remote_disconnect",
            _ => return None,
        })
    }
}

impl fmt::Display for ResponseFlag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prints_envoys_text() {
        assert_eq!(ResponseFlag::default().as_str(), "-");
        assert_eq!(ResponseFlag::RetriedConnectionFailure.to_string(), "URX,UF");
        assert_eq!(ResponseFlag::TcpConnectionFailure.as_str(), "UF,URX");
        assert!(!ResponseFlag::None.is_set() && ResponseFlag::NoRoute.is_set());
    }
}
