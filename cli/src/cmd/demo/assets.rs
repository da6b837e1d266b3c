//! What the demo needs from the checkout: the 16 real chest X-rays with their true labels, and
//! the models (the real Xception model of `scripts/fetch-model.sh` when present, else the
//! non-medical fixtures).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use serde_json::Value;

use super::{ModelChoice, Scenario};

/// Where the X-rays live in the checkout.
const XRAYS: &str = "inference/testdata/xrays";
/// The real model and its degraded copy (`scripts/fetch-model.sh`).
const REAL: &str = ".cache/models/pneumonia_xception.onnx";
const DEGRADED: &str = ".cache/models/pneumonia_xception_degraded.onnx";
/// The real model re-exported unchanged as version 2: the good canary.
const REEXPORT: &str = ".cache/models/pneumonia_xception_v2.onnx";
/// The fixture used when the real model is absent.
const FIXTURE: &str = "inference/fixtures/models/nonmedical-tiny-a.onnx";
/// How much slower the "slower" bad canary answers.
pub(super) const SLOW_CANARY_DELAY_MS: u64 = 800;

/// One X-ray and its true label (from its file name: `NORMAL*` or `*bacteria*`).
#[derive(Debug, Clone)]
pub(super) struct Xray {
    /// The file name.
    pub(super) name: String,
    /// The JPEG bytes.
    pub(super) bytes: Vec<u8>,
    /// `NORMAL` or `PNEUMONIA`.
    pub(super) truth: &'static str,
}

/// The models of a run.
#[derive(Debug, Clone)]
pub(super) struct Models {
    /// The stable model (v1), also the shadow model.
    pub(super) stable: PathBuf,
    /// The canary model (v2).
    pub(super) canary: PathBuf,
    /// Extra latency in front of the canary (the "slower" bad canary), milliseconds.
    pub(super) canary_delay_ms: Option<u64>,
    /// Whether these are the real pneumonia model (else the non-medical fixtures).
    pub(super) real: bool,
    /// What the canary is, in words.
    pub(super) canary_is: String,
}

/// The checkout: `--repo`, else the first ancestor of the current directory or of the binary
/// that holds the X-rays.
pub(super) fn find_repo(given: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(dir) = given {
        if dir.join(XRAYS).is_dir() {
            return Ok(dir.to_path_buf());
        }
        bail!(
            "{} has no {XRAYS}: point --repo at an augur checkout",
            dir.display()
        );
    }
    let starts = [
        std::env::current_dir().ok(),
        std::env::current_exe()
            .ok()
            .and_then(|e| e.parent().map(Path::to_path_buf)),
    ];
    starts
        .iter()
        .flatten()
        .flat_map(|start| start.ancestors())
        .find(|dir| dir.join(XRAYS).is_dir())
        .map(Path::to_path_buf)
        .with_context(|| {
            format!(
                "cannot find {XRAYS}: run `augur demo` inside the augur checkout, or pass --repo"
            )
        })
}

/// The X-rays, sorted by name, with their labels.
pub(super) fn xrays(repo: &Path) -> anyhow::Result<Vec<Xray>> {
    let dir = repo.join(XRAYS);
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let name = path
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default()
            .to_owned();
        if !name.ends_with(".jpeg") {
            continue;
        }
        let truth = truth_of(&name)
            .with_context(|| format!("{name}: the label is not in the file name"))?;
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        out.push(Xray { name, bytes, truth });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    if out.is_empty() {
        bail!("no X-rays in {}", dir.display());
    }
    Ok(out)
}

/// The true label of an X-ray from its file name (Kermany et al.'s naming).
pub(super) fn truth_of(name: &str) -> Option<&'static str> {
    if name.starts_with("NORMAL") {
        Some("NORMAL")
    } else if name.contains("bacteria") || name.contains("virus") {
        Some("PNEUMONIA")
    } else {
        None
    }
}

/// Picks the models for `scenario`.
pub(super) fn models(
    repo: &Path,
    choice: ModelChoice,
    scenario: Scenario,
) -> anyhow::Result<Models> {
    let real = repo.join(REAL);
    let have_real = real.is_file() && real.with_extension("json").is_file();
    let use_real = match choice {
        ModelChoice::Real if !have_real => bail!(
            "{} is missing: run scripts/fetch-model.sh (or use --models fixtures)",
            real.display()
        ),
        ModelChoice::Real => true,
        ModelChoice::Fixtures => false,
        ModelChoice::Auto => have_real,
    };
    let stable = if use_real { real } else { repo.join(FIXTURE) };
    if !stable.is_file() {
        bail!("{} is missing", stable.display());
    }
    let degraded = repo.join(DEGRADED);
    let have_degraded = degraded.is_file() && degraded.with_extension("json").is_file();
    let reexport = repo.join(REEXPORT);
    let have_reexport = reexport.is_file() && reexport.with_extension("json").is_file();
    Ok(match scenario {
        Scenario::GoodCanary if use_real && have_reexport => Models {
            stable,
            canary: reexport,
            canary_delay_ms: None,
            real: true,
            canary_is: "an equivalent re-export (same graph and weights, ONNX model_version 2)"
                .to_owned(),
        },
        Scenario::GoodCanary => Models {
            canary: stable.clone(),
            stable,
            canary_delay_ms: None,
            real: use_real,
            canary_is: "the same model re-served as v2 (a good canary)".to_owned(),
        },
        Scenario::BadCanary if use_real && have_degraded => Models {
            stable,
            canary: degraded,
            canary_delay_ms: None,
            real: true,
            canary_is: "a degraded copy (final layer's weights perturbed by fixed-seed noise)"
                .to_owned(),
        },
        Scenario::BadCanary => Models {
            canary: stable.clone(),
            stable,
            canary_delay_ms: Some(SLOW_CANARY_DELAY_MS),
            real: use_real,
            canary_is: format!(
                "the same model answering {SLOW_CANARY_DELAY_MS} ms slower (a slow canary)"
            ),
        },
    })
}

/// The policy's `shadow.preprocessing` for a model, from its metadata JSON's `input` block.
pub(super) fn preprocessing_yaml(model: &Path) -> anyhow::Result<String> {
    let path = model.with_extension("json");
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let meta: Value =
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))?;
    let input = &meta["input"];
    let num = |k: &str| {
        input[k]
            .as_u64()
            .with_context(|| format!("{}: input.{k} missing", path.display()))
    };
    let mut out = format!(
        "      channels: {}\n      width: {}\n      height: {}\n      resize: {}\n      layout: {}\n",
        num("channels")?,
        num("width")?,
        num("height")?,
        input["resize"].as_str().unwrap_or("bilinear"),
        input["layout"].as_str().unwrap_or("NCHW"),
    );
    if let Some(crop) = input["crop"].as_array() {
        let side = |i: usize| crop.get(i).and_then(Value::as_u64).unwrap_or(0);
        out.push_str(&format!(
            "      crop: {{width: {}, height: {}}}\n",
            side(0),
            side(1)
        ));
    }
    let list = |v: &Value| {
        let items: Vec<String> = match v {
            Value::Array(a) => a.iter().map(|x| x.to_string()).collect(),
            other => vec![other.to_string()],
        };
        format!("[{}]", items.join(", "))
    };
    let norm = &input["normalization"];
    match norm {
        Value::String(s) if s == "x/127.5-1" => out.push_str("      range: [-1, 1]\n"),
        Value::String(s) if s == "x/255" || s == "none" => out.push_str("      range: [0, 1]\n"),
        Value::Object(o) if o.contains_key("mean") => {
            out.push_str(&format!("      mean: {}\n", list(&norm["mean"])));
            out.push_str(&format!("      std: {}\n", list(&norm["std"])));
        }
        Value::Object(o) if o.contains_key("range") => {
            out.push_str(&format!("      range: {}\n", list(&norm["range"])));
        }
        Value::Null => {}
        other => bail!("{}: unsupported normalization {other}", path.display()),
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_come_from_file_names() {
        assert_eq!(truth_of("NORMAL2-IM-1427-0001.jpeg"), Some("NORMAL"));
        assert_eq!(truth_of("person1946_bacteria_4874.jpeg"), Some("PNEUMONIA"));
        assert_eq!(truth_of("cat.jpeg"), None);
    }

    #[test]
    fn fixtures_preprocessing_matches_their_metadata() {
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let yaml = preprocessing_yaml(&repo.join(FIXTURE)).expect("metadata");
        assert!(
            yaml.contains("channels: 1") && yaml.contains("width: 64"),
            "{yaml}"
        );
        assert!(
            yaml.contains("mean: [0.5]") && yaml.contains("std: [0.25]"),
            "{yaml}"
        );
        let c = preprocessing_yaml(&repo.join("inference/fixtures/models/nonmedical-tiny-c.onnx"))
            .expect("metadata");
        assert!(
            c.contains("range: [-1, 1]") && c.contains("layout: NHWC"),
            "{c}"
        );
        let xrays = xrays(&repo).expect("x-rays");
        assert_eq!(xrays.len(), 16);
        assert_eq!(xrays.iter().filter(|x| x.truth == "NORMAL").count(), 8);
    }
}
