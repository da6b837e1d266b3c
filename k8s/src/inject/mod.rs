//! Sidecar injection: a pure function from a Kubernetes object to the injected object.
//!
//! [`inject`] takes any object as `serde_json::Value` (Pod, Deployment, StatefulSet,
//! DaemonSet, ReplicaSet, Job, CronJob, or a `List` of them) and returns it with the augur
//! sidecar added to its pod template, or unchanged with the reason it was skipped. The same
//! function serves `augur inject` (files) and the admission webhook (Pods).
//!
//! Objects are handled as JSON values rather than k8s-openapi structs: the webhook must pass
//! through fields newer than any compiled-in API version untouched, and k8s-openapi adds a
//! large compile on a 2-core CI machine for little gain here.
//!
//! Not done (yet): rewriting app HTTP probes through the status port (Istio's
//! `ISTIO_KUBE_APP_PROBERS`): augur's status port does not serve `/app-health/...`, so
//! probes are left as they are; kubelet probes reach the app through inbound capture.

pub mod annotations;
pub mod args;
pub mod config;
pub mod pod;
pub mod probes;
pub mod template;
pub mod user_volumes;
pub mod yaml;

use serde_json::Value;
use thiserror::Error;

pub use annotations::SkipReason;
pub use args::{run_inject, InjectArgs, InjectConfigArgs};
pub use config::InjectConfig;

/// Why an object could not be injected (as opposed to being skipped on purpose).
#[derive(Debug, Error, PartialEq, Eq)]
pub enum InjectError {
    /// The document is not a JSON/YAML object.
    #[error("not a Kubernetes object (expected a mapping with `kind`)")]
    NotAnObject,
    /// A workload kind without the pod template where it belongs.
    #[error("{kind}: no pod template at {path}")]
    MissingPodTemplate {
        /// The object's kind.
        kind: String,
        /// Where the template was expected.
        path: &'static str,
    },
    /// An annotation value augur cannot use.
    #[error("annotation {name}={value:?}: {reason}")]
    InvalidAnnotation {
        /// The annotation (without prefix).
        name: String,
        /// Its value.
        value: String,
        /// Why it is rejected.
        reason: String,
    },
    /// `interceptionMode` other than REDIRECT or NONE.
    #[error("interception mode {0:?} is not supported (REDIRECT or NONE)")]
    UnsupportedInterceptionMode(String),
}

/// The result of [`inject`].
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    /// The (possibly) mutated object.
    pub object: Value,
    /// `None` when the sidecar was added, else why not.
    pub skipped: Option<SkipReason>,
}

/// Injects the augur sidecar into `object`'s pod template(s).
pub fn inject(object: &Value, cfg: &InjectConfig) -> Result<Injection, InjectError> {
    let mut out = object.clone();
    let kind = object
        .get("kind")
        .and_then(Value::as_str)
        .ok_or(InjectError::NotAnObject)?
        .to_string();
    let name = object
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let skipped = match kind.as_str() {
        "Pod" => pod::inject_pod_template(&mut out, cfg, &pod::workload_of_pod(object))?,
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "ReplicationController"
        | "Job" => {
            let template =
                out.pointer_mut("/spec/template")
                    .ok_or(InjectError::MissingPodTemplate {
                        kind: kind.clone(),
                        path: "spec.template",
                    })?;
            pod::inject_pod_template(template, cfg, &name)?
        }
        "CronJob" => {
            let template = out.pointer_mut("/spec/jobTemplate/spec/template").ok_or(
                InjectError::MissingPodTemplate {
                    kind: kind.clone(),
                    path: "spec.jobTemplate.spec.template",
                },
            )?;
            pod::inject_pod_template(template, cfg, &name)?
        }
        "List" => {
            let mut any = false;
            if let Some(items) = out.get_mut("items").and_then(Value::as_array_mut) {
                for item in items.iter_mut() {
                    let injected = inject(item, cfg)?;
                    any |= injected.skipped.is_none();
                    *item = injected.object;
                }
            }
            (!any).then_some(SkipReason::NotAWorkload)
        }
        _ => Some(SkipReason::NotAWorkload),
    };
    Ok(Injection {
        object: out,
        skipped,
    })
}
