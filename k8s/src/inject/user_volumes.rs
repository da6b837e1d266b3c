//! Pod volumes mounted into the proxy: `augur.dev/userVolumeMount` (else Istio's
//! `sidecar.istio.io/userVolumeMount`), a JSON map from a volume of the pod to its mount, e.g.
//! `{"shadow-model": {"mountPath": "/etc/augur/shadow", "readOnly": true}}`. This is how a
//! stable pod's sidecar gets the shadow model file its policy names.
//!
//! The volume must be declared in the pod itself (Istio's `userVolume`, which declares it in
//! the annotation, is not supported): a name that is not there is refused at admission rather
//! than leaving a pod that never starts.

use serde_json::{json, Map, Value};

use super::annotations::Meta;
use super::InjectError;

/// The annotation's name without its prefix.
pub const USER_VOLUME_MOUNT: &str = "userVolumeMount";

/// The extra volume mounts of the proxy, sorted by volume name; `spec` is the pod spec the
/// named volumes must be declared in.
pub fn mounts(meta: Meta<'_>, spec: &Value) -> Result<Vec<Value>, InjectError> {
    let Some(text) = meta.sidecar_setting(USER_VOLUME_MOUNT) else {
        return Ok(Vec::new());
    };
    let invalid = |reason: String| InjectError::InvalidAnnotation {
        name: USER_VOLUME_MOUNT.to_string(),
        value: text.to_string(),
        reason,
    };
    if text.trim().is_empty() {
        return Ok(Vec::new());
    }
    let parsed: Map<String, Value> = serde_json::from_str(text)
        .map_err(|e| invalid(format!("not a JSON object of volume name to mount: {e}")))?;
    let declared: Vec<&str> = spec
        .get("volumes")
        .and_then(Value::as_array)
        .map(|vs| {
            vs.iter()
                .filter_map(|v| v.get("name").and_then(Value::as_str))
                .collect()
        })
        .unwrap_or_default();
    let mut out = Vec::with_capacity(parsed.len());
    for (name, mount) in parsed {
        let Value::Object(mut mount) = mount else {
            return Err(invalid(format!("{name}: the mount must be a JSON object")));
        };
        let path = mount.get("mountPath").and_then(Value::as_str);
        if !path.is_some_and(|p| p.starts_with('/')) {
            return Err(invalid(format!(
                "{name}: mountPath must be an absolute path"
            )));
        }
        if !declared.contains(&name.as_str()) {
            return Err(invalid(format!(
                "{name}: the pod declares no volume of that name"
            )));
        }
        mount.insert("name".into(), json!(name));
        out.push(Value::Object(mount));
    }
    out.sort_by(|a, b| a["name"].as_str().cmp(&b["name"].as_str()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mounts_for(annotation: &str, value: &str, spec: Value) -> Result<Vec<Value>, InjectError> {
        let metadata = json!({"annotations": {annotation: value}});
        mounts(Meta::new(Some(&metadata)), &spec)
    }

    #[test]
    fn mounts_declared_volumes_and_refuses_the_rest() {
        let spec =
            json!({"volumes": [{"name": "b", "emptyDir": {}}, {"name": "a", "emptyDir": {}}]});
        let got = mounts_for(
            "sidecar.istio.io/userVolumeMount",
            r#"{"b": {"mountPath": "/b", "readOnly": true}, "a": {"mountPath": "/a"}}"#,
            spec.clone(),
        )
        .expect("valid");
        assert_eq!(
            got,
            vec![
                json!({"name": "a", "mountPath": "/a"}),
                json!({"name": "b", "mountPath": "/b", "readOnly": true})
            ]
        );
        for (value, reason) in [
            (r#"{"c": {"mountPath": "/c"}}"#, "declares no volume"),
            (r#"{"a": {"mountPath": "relative"}}"#, "absolute path"),
            (r#"{"a": "/a"}"#, "must be a JSON object"),
            (r#"["a"]"#, "not a JSON object"),
        ] {
            let err =
                mounts_for("augur.dev/userVolumeMount", value, spec.clone()).expect_err(value);
            assert!(err.to_string().contains(reason), "{value}: {err}");
        }
    }
}
