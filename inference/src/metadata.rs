//! Model metadata: how to turn an image into the model's input tensor and how to read its output.
//!
//! The contract lives in a JSON file next to the model (`model.onnx` → `model.json`) so that any
//! ONNX classifier can be swapped in without code changes; the CanaryPolicy's `shadow.preprocessing`
//! may override the input half. Example (the Xception of `xray-assets.md`):
//!
//! ```json
//! {
//!   "name": "pneumonia-xception",
//!   "input": { "name": "input", "layout": "NHWC", "channels": 3, "width": 150, "height": 150,
//!              "resize": "nearest", "normalization": "x/127.5-1" },
//!   "output": { "kind": "logits", "labels": ["NORMAL", "PNEUMONIA"], "positive_index": 1 }
//! }
//! ```
//!
//! Pixels reach preprocessing as intensities in `[0, 1]` (8-bit `v/255`, 16-bit `v/65535`, DICOM
//! after rescale and window); every normalisation below is defined on that scale.

use std::fs;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// Everything the shadow model needs to know about one ONNX model besides its graph.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelMetadata {
    /// A short name for logs and the model server.
    #[serde(default)]
    pub name: String,
    /// Free text, e.g. provenance or a "NON-MEDICAL fixture" warning.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The version reported by the model server (`model_version`).
    #[serde(default = "default_version")]
    pub model_version: String,
    /// Image → tensor.
    pub input: InputSpec,
    /// Tensor → score and label.
    pub output: OutputSpec,
}

/// How an image becomes the model's input tensor.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// The ONNX input name; the model's first input when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Tensor layout.
    pub layout: Layout,
    /// 1 (grayscale) or 3 (RGB; grayscale images are replicated).
    pub channels: u32,
    /// Width after resizing (before the crop).
    pub width: u32,
    /// Height after resizing (before the crop).
    pub height: u32,
    /// Resize filter.
    #[serde(default)]
    pub resize: ResizeFilter,
    /// Centre crop `[width, height]` applied after the resize; the tensor has this size when set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crop: Option<[u32; 2]>,
    /// Pixel normalisation.
    #[serde(default)]
    pub normalization: Normalization,
}

/// Tensor layout of the model input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Layout {
    /// `[N, C, H, W]` (PyTorch exports).
    #[serde(rename = "NCHW", alias = "nchw")]
    Nchw,
    /// `[N, H, W, C]` (TensorFlow/Keras exports).
    #[serde(rename = "NHWC", alias = "nhwc")]
    Nhwc,
}

/// Resize filter; see [`crate::preprocess`] for the exact definitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ResizeFilter {
    /// PIL `Image.NEAREST` (the Keras `load_img` default).
    Nearest,
    /// PIL `Image.BILINEAR`: a triangle filter, antialiased when shrinking (torchvision `Resize`
    /// on PIL images).
    #[default]
    Bilinear,
}

/// Pixel normalisation, applied to intensities `x` in `[0, 1]`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(from = "RawNormalization", into = "RawNormalization")]
pub enum Normalization {
    /// Leave `x` in `[0, 1]` (`"x/255"` or `"none"` in JSON).
    #[default]
    Unit,
    /// `(x - mean[c]) / std[c]`; one value, or one per channel.
    MeanStd {
        /// Per-channel means on the `[0, 1]` scale.
        mean: Vec<f32>,
        /// Per-channel standard deviations on the `[0, 1]` scale.
        std: Vec<f32>,
    },
    /// Map `[0, 1]` linearly onto `[min, max]` (`{"range": [-1024, 1024]}`; `"x/127.5-1"` is
    /// `[-1, 1]`).
    Range {
        /// The value of a black pixel.
        min: f32,
        /// The value of a white pixel.
        max: f32,
    },
}

#[derive(Serialize, Deserialize)]
#[serde(untagged)]
enum RawNormalization {
    Named(NamedNormalization),
    MeanStd { mean: Vec<f32>, std: Vec<f32> },
    Range { range: [f32; 2] },
}

#[derive(Serialize, Deserialize)]
enum NamedNormalization {
    #[serde(rename = "x/255", alias = "none", alias = "unit")]
    Unit,
    #[serde(rename = "x/127.5-1")]
    MinusOneToOne,
}

impl From<RawNormalization> for Normalization {
    fn from(raw: RawNormalization) -> Self {
        match raw {
            RawNormalization::Named(NamedNormalization::Unit) => Normalization::Unit,
            RawNormalization::Named(NamedNormalization::MinusOneToOne) => Normalization::Range {
                min: -1.0,
                max: 1.0,
            },
            RawNormalization::MeanStd { mean, std } => Normalization::MeanStd { mean, std },
            RawNormalization::Range { range } => Normalization::Range {
                min: range[0],
                max: range[1],
            },
        }
    }
}

impl From<Normalization> for RawNormalization {
    fn from(n: Normalization) -> Self {
        match n {
            Normalization::Unit => RawNormalization::Named(NamedNormalization::Unit),
            Normalization::MeanStd { mean, std } => RawNormalization::MeanStd { mean, std },
            Normalization::Range { min, max } => RawNormalization::Range { range: [min, max] },
        }
    }
}

/// How to read the model output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The ONNX output name; the model's first output when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// What the numbers are.
    pub kind: OutputKind,
    /// One label per output column (for a single sigmoid column: the positive label).
    pub labels: Vec<String>,
    /// The column holding the positive (pneumonia) class.
    pub positive_index: usize,
    /// The label reported for a negative multi-label (sigmoid) result.
    #[serde(default = "default_negative_label")]
    pub negative_label: String,
    /// Score at or above which a multi-label (sigmoid) result is positive.
    #[serde(default = "default_threshold")]
    pub threshold: f32,
}

/// What the model's output columns are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputKind {
    /// Mutually exclusive classes, raw logits: softmax is applied, the label is the argmax.
    /// A single column is read as the logit of the positive class (sigmoid).
    Logits,
    /// Mutually exclusive classes, already probabilities: the label is the argmax.
    Softmax,
    /// Independent probabilities per label (CheXNet): positive when the score ≥ `threshold`.
    Sigmoid,
    /// Independent raw logits per label (torchxrayvision without `apply_sigmoid`): sigmoid is
    /// applied, then as [`OutputKind::Sigmoid`].
    MultilabelLogits,
}

/// A metadata file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    /// The JSON file could not be read.
    #[error("cannot read model metadata {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The JSON is malformed or has unknown fields.
    #[error("invalid model metadata {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Why.
        source: serde_json::Error,
    },
    /// The values are inconsistent.
    #[error("invalid model metadata: {0}")]
    Invalid(String),
}

fn default_version() -> String {
    "v1".to_owned()
}

fn default_negative_label() -> String {
    "NORMAL".to_owned()
}

fn default_threshold() -> f32 {
    0.5
}

// === impl ModelMetadata ===

impl ModelMetadata {
    /// The metadata path for a model path: `model.onnx` → `model.json`.
    pub fn path_for(model: &Path) -> PathBuf {
        model.with_extension("json")
    }

    /// Reads and validates a metadata JSON file.
    pub fn from_file(path: &Path) -> Result<Self, MetadataError> {
        let text = fs::read(path).map_err(|source| MetadataError::Read {
            path: path.to_owned(),
            source,
        })?;
        let meta: ModelMetadata =
            serde_json::from_slice(&text).map_err(|source| MetadataError::Parse {
                path: path.to_owned(),
                source,
            })?;
        meta.validate()?;
        Ok(meta)
    }

    /// Replaces the input preprocessing with the CanaryPolicy's `shadow.preprocessing`, keeping
    /// the input name and the output contract.
    pub fn with_preprocessing(
        mut self,
        p: &augur_policies::Preprocessing,
    ) -> Result<Self, MetadataError> {
        self.input = InputSpec::from_policy(self.input.name.take(), p);
        self.validate()?;
        Ok(self)
    }

    /// The size of the tensor fed to the model: `(width, height)` after the crop.
    pub fn tensor_size(&self) -> (u32, u32) {
        self.input.tensor_size()
    }

    /// Checks that the values are consistent with each other.
    pub fn validate(&self) -> Result<(), MetadataError> {
        let i = &self.input;
        let bad = |m: String| Err(MetadataError::Invalid(m));
        if i.channels != 1 && i.channels != 3 {
            return bad(format!("input.channels must be 1 or 3, got {}", i.channels));
        }
        if i.width == 0 || i.height == 0 || i.width > 4096 || i.height > 4096 {
            return bad(format!(
                "input size must be within 1..=4096, got {}x{}",
                i.width, i.height
            ));
        }
        if let Some([cw, ch]) = i.crop {
            if cw == 0 || ch == 0 || cw > i.width || ch > i.height {
                return bad(format!(
                    "input.crop {cw}x{ch} must fit in the resized {}x{}",
                    i.width, i.height
                ));
            }
        }
        match &i.normalization {
            Normalization::MeanStd { mean, std } => {
                let ok_len = |v: &Vec<f32>| v.len() == 1 || v.len() == i.channels as usize;
                if !ok_len(mean) || !ok_len(std) {
                    return bad("normalization mean/std need 1 or `channels` values".to_owned());
                }
                if std.iter().any(|s| !s.is_finite() || *s == 0.0) {
                    return bad("normalization std must be finite and non-zero".to_owned());
                }
            }
            Normalization::Range { min, max } => {
                if !min.is_finite() || !max.is_finite() || min == max {
                    return bad("normalization range must be two different numbers".to_owned());
                }
            }
            Normalization::Unit => {}
        }
        let o = &self.output;
        if o.labels.is_empty() {
            return bad("output.labels must not be empty".to_owned());
        }
        if o.positive_index >= o.labels.len() {
            return bad(format!(
                "output.positive_index {} is out of range for {} labels",
                o.positive_index,
                o.labels.len()
            ));
        }
        if !(0.0..=1.0).contains(&o.threshold) {
            return bad(format!(
                "output.threshold must be in 0..=1, got {}",
                o.threshold
            ));
        }
        Ok(())
    }
}

// === impl InputSpec ===

impl InputSpec {
    /// The input half of the contract, from a CanaryPolicy's `shadow.preprocessing`.
    ///
    /// The policy's `none` normalisation means "scaled to 0..1 only", i.e. [`Normalization::Unit`].
    pub fn from_policy(name: Option<String>, p: &augur_policies::Preprocessing) -> Self {
        use augur_policies::Normalization as PN;
        InputSpec {
            name,
            layout: match p.layout {
                augur_policies::Layout::Nchw => Layout::Nchw,
                augur_policies::Layout::Nhwc => Layout::Nhwc,
            },
            channels: p.channels,
            width: p.width,
            height: p.height,
            resize: match p.resize {
                augur_policies::Resize::Nearest => ResizeFilter::Nearest,
                augur_policies::Resize::Bilinear => ResizeFilter::Bilinear,
            },
            crop: p.crop.map(|(w, h)| [w, h]),
            normalization: match &p.normalization {
                PN::None => Normalization::Unit,
                PN::MeanStd { mean, std } => Normalization::MeanStd {
                    mean: mean.iter().map(|v| *v as f32).collect(),
                    std: std.iter().map(|v| *v as f32).collect(),
                },
                PN::Range { min, max } => Normalization::Range {
                    min: *min as f32,
                    max: *max as f32,
                },
            },
        }
    }

    /// `(width, height)` of the tensor: the crop when set, else the resize target.
    pub fn tensor_size(&self) -> (u32, u32) {
        match self.crop {
            Some([w, h]) => (w, h),
            None => (self.width, self.height),
        }
    }

    /// The per-image tensor shape without the batch dimension, in the model's layout.
    pub fn image_shape(&self) -> [usize; 3] {
        let (w, h) = self.tensor_size();
        let (c, w, h) = (self.channels as usize, w as usize, h as usize);
        match self.layout {
            Layout::Nchw => [c, h, w],
            Layout::Nhwc => [h, w, c],
        }
    }

    /// Number of `f32` values per image.
    pub fn image_len(&self) -> usize {
        self.image_shape().iter().product()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_three_documented_recipes() {
        let xception = r#"{"input": {"name": "input", "layout": "NHWC", "channels": 3,
            "width": 150, "height": 150, "resize": "nearest", "normalization": "x/127.5-1"},
            "output": {"kind": "logits", "labels": ["NORMAL", "PNEUMONIA"], "positive_index": 1}}"#;
        let m: ModelMetadata = serde_json::from_str(xception).unwrap();
        m.validate().unwrap();
        assert_eq!(
            m.input.normalization,
            Normalization::Range {
                min: -1.0,
                max: 1.0
            }
        );
        assert_eq!(m.input.image_shape(), [150, 150, 3]);
        assert_eq!(m.model_version, "v1");

        let xrv = r#"{"input": {"layout": "NCHW", "channels": 1, "width": 224, "height": 224,
            "normalization": {"range": [-1024, 1024]}},
            "output": {"kind": "multilabel_logits", "labels": ["a","b","c","d","e","f","g","h",
            "Pneumonia"], "positive_index": 8}}"#;
        let m: ModelMetadata = serde_json::from_str(xrv).unwrap();
        m.validate().unwrap();

        let chexnet = r#"{"input": {"layout": "NCHW", "channels": 3, "width": 256, "height": 256,
            "crop": [224, 224], "normalization": {"mean": [0.485, 0.456, 0.406],
            "std": [0.229, 0.224, 0.225]}},
            "output": {"kind": "sigmoid", "labels": ["a","b","c","d","e","f","Pneumonia"],
            "positive_index": 6}}"#;
        let m: ModelMetadata = serde_json::from_str(chexnet).unwrap();
        m.validate().unwrap();
        assert_eq!(m.input.image_shape(), [3, 224, 224]);
    }

    #[test]
    fn rejects_inconsistent_values() {
        let j = r#"{"input": {"layout": "NCHW", "channels": 2, "width": 8, "height": 8},
            "output": {"kind": "logits", "labels": ["A"], "positive_index": 0}}"#;
        let m: ModelMetadata = serde_json::from_str(j).unwrap();
        assert!(m.validate().unwrap_err().to_string().contains("channels"));
        let j = r#"{"input": {"layout": "NCHW", "channels": 1, "width": 8, "height": 8},
            "output": {"kind": "logits", "labels": ["A"], "positive_index": 3}}"#;
        let m: ModelMetadata = serde_json::from_str(j).unwrap();
        assert!(m.validate().is_err());
        let j = r#"{"input": {"layout": "NCHW", "channels": 1, "width": 8, "height": 8,
            "bogus": 1}, "output": {"kind": "logits", "labels": ["A"], "positive_index": 0}}"#;
        assert!(serde_json::from_str::<ModelMetadata>(j).is_err());
    }
}
