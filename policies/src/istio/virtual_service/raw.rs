//! Raw serde shape of a VirtualService `spec`, as Istio's
//! `networking/v1alpha3/virtual_service.proto` spells it. Fields augur does
//! not model are left out so that `serde_ignored` reports them by name.

use std::collections::BTreeMap;

use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::istio::common::{RawDestination, RawHeaders, RawPercentage, RawStringMatch};

/// `spec` of a VirtualService.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawVirtualServiceSpec {
    pub(crate) hosts: Option<Vec<String>>,
    pub(crate) gateways: Option<Vec<String>>,
    pub(crate) http: Option<Vec<RawHttpRoute>>,
}

/// One `http[]` entry.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawHttpRoute {
    pub(crate) name: Option<String>,
    #[serde(rename = "match")]
    pub(crate) matches: Option<Vec<RawHttpMatch>>,
    pub(crate) route: Option<Vec<RawRouteDestination>>,
    pub(crate) redirect: Option<RawRedirect>,
    pub(crate) direct_response: Option<RawDirectResponse>,
    pub(crate) rewrite: Option<RawRewrite>,
    pub(crate) timeout: Option<String>,
    pub(crate) retries: Option<RawRetry>,
    pub(crate) fault: Option<RawFault>,
    pub(crate) mirror: Option<RawDestination>,
    pub(crate) mirrors: Option<Vec<RawMirrorPolicy>>,
    pub(crate) mirror_percentage: Option<RawPercentage>,
    /// Deprecated integer percentage (`mirror_percent` / `mirrorPercent`).
    #[serde(alias = "mirror_percent")]
    pub(crate) mirror_percent: Option<u32>,
    pub(crate) headers: Option<RawHeaders>,
}

/// One `match[]` block.
#[derive(Debug, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawHttpMatch {
    pub(crate) name: Option<String>,
    pub(crate) uri: Option<RawStringMatch>,
    pub(crate) scheme: Option<RawStringMatch>,
    pub(crate) method: Option<RawStringMatch>,
    pub(crate) authority: Option<RawStringMatch>,
    pub(crate) headers: Option<BTreeMap<String, RawStringMatch>>,
    pub(crate) without_headers: Option<BTreeMap<String, RawStringMatch>>,
    pub(crate) query_params: Option<BTreeMap<String, RawStringMatch>>,
    pub(crate) port: Option<u32>,
    pub(crate) ignore_uri_case: Option<bool>,
    // Known Istio fields that select clients rather than match requests;
    // captured so that a block holding only these is not "empty".
    #[schemars(with = "Option<serde_json::Value>")]
    pub(crate) source_labels: Option<IgnoredAny>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub(crate) source_namespace: Option<IgnoredAny>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub(crate) gateways: Option<IgnoredAny>,
    #[schemars(with = "Option<serde_json::Value>")]
    pub(crate) stat_prefix: Option<IgnoredAny>,
}

/// One `route[]` destination.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawRouteDestination {
    pub(crate) destination: Option<RawDestination>,
    pub(crate) weight: Option<i64>,
    pub(crate) headers: Option<RawHeaders>,
}

/// `mirrors[]` entry.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawMirrorPolicy {
    pub(crate) destination: Option<RawDestination>,
    pub(crate) percentage: Option<RawPercentage>,
}

/// `redirect`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRedirect {
    pub(crate) uri: Option<String>,
    pub(crate) authority: Option<String>,
    pub(crate) redirect_code: Option<u32>,
    pub(crate) scheme: Option<String>,
    pub(crate) port: Option<u32>,
    pub(crate) derive_port: Option<String>,
}

/// `directResponse`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawDirectResponse {
    pub(crate) status: Option<u32>,
    pub(crate) body: Option<RawBody>,
}

/// `directResponse.body`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawBody {
    pub(crate) string: Option<String>,
    pub(crate) bytes: Option<String>,
}

/// `rewrite`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRewrite {
    pub(crate) uri: Option<String>,
    pub(crate) authority: Option<String>,
    pub(crate) uri_regex_rewrite: Option<RawRegexRewrite>,
}

/// `rewrite.uriRegexRewrite`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawRegexRewrite {
    #[serde(rename = "match")]
    pub(crate) pattern: Option<String>,
    pub(crate) rewrite: Option<String>,
}

/// `retries`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawRetry {
    pub(crate) attempts: Option<i64>,
    pub(crate) per_try_timeout: Option<String>,
    pub(crate) retry_on: Option<String>,
    pub(crate) retry_remote_localities: Option<bool>,
}

/// `fault`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
pub(crate) struct RawFault {
    pub(crate) delay: Option<RawDelay>,
    pub(crate) abort: Option<RawAbort>,
}

/// `fault.delay`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawDelay {
    pub(crate) fixed_delay: Option<String>,
    pub(crate) percentage: Option<RawPercentage>,
    /// Legacy integer percentage, used when `percentage` is absent.
    pub(crate) percent: Option<u32>,
}

/// `fault.abort`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "camelCase")]
pub(crate) struct RawAbort {
    pub(crate) http_status: Option<u32>,
    pub(crate) percentage: Option<RawPercentage>,
}
