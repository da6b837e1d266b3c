//! One output row → probabilities, the positive-class score and a label.

use crate::metadata::{OutputKind, OutputSpec};

/// The reading of one output row.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Reading {
    pub(crate) score: f32,
    pub(crate) label: String,
    pub(crate) probabilities: Vec<f32>,
}

/// Interprets a row per [`OutputKind`]:
/// - exclusive classes (`logits` → softmax, `softmax`): the label is the argmax; a single
///   column is the positive class's logit/probability and is thresholded;
/// - independent labels (`sigmoid`, `multilabel_logits` → sigmoid): the score is the positive
///   column, and the label is the positive label when `score ≥ threshold`, else `negative_label`.
pub(crate) fn read(row: &[f32], spec: &OutputSpec) -> Reading {
    let probabilities: Vec<f32> = match spec.kind {
        OutputKind::Logits if row.len() > 1 => softmax(row),
        OutputKind::Logits | OutputKind::MultilabelLogits => {
            row.iter().map(|&x| sigmoid(x)).collect()
        }
        OutputKind::Softmax | OutputKind::Sigmoid => row.to_vec(),
    };
    let score = probabilities
        .get(spec.positive_index)
        .copied()
        .unwrap_or(f32::NAN);
    let exclusive = matches!(spec.kind, OutputKind::Logits | OutputKind::Softmax) && row.len() > 1;
    let label = if exclusive {
        let best = probabilities
            .iter()
            .enumerate()
            .fold(
                (0, f32::NEG_INFINITY),
                |acc, (i, &p)| if p > acc.1 { (i, p) } else { acc },
            )
            .0;
        spec.labels.get(best).cloned().unwrap_or_default()
    } else if score >= spec.threshold {
        spec.labels
            .get(spec.positive_index)
            .cloned()
            .unwrap_or_default()
    } else {
        spec.negative_label.clone()
    };
    Reading {
        score,
        label,
        probabilities,
    }
}

fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax(row: &[f32]) -> Vec<f32> {
    let max = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exp: Vec<f32> = row.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(kind: OutputKind, labels: &[&str], positive_index: usize) -> OutputSpec {
        OutputSpec {
            name: None,
            kind,
            labels: labels.iter().map(|s| s.to_string()).collect(),
            positive_index,
            negative_label: "NORMAL".into(),
            threshold: 0.5,
        }
    }

    #[test]
    fn logits_are_softmaxed_and_argmaxed() {
        let r = read(
            &[0.0, 2.0],
            &spec(OutputKind::Logits, &["NORMAL", "PNEUMONIA"], 1),
        );
        assert!((r.score - 0.880_797).abs() < 1e-5);
        assert_eq!(r.label, "PNEUMONIA");
        let r = read(&[-1.0], &spec(OutputKind::Logits, &["PNEUMONIA"], 0));
        assert_eq!(r.label, "NORMAL");
        assert!((r.score - 0.268_941).abs() < 1e-5);
    }

    #[test]
    fn multilabel_uses_the_threshold() {
        let s = spec(OutputKind::Sigmoid, &["A", "Pneumonia", "C"], 1);
        assert_eq!(read(&[0.9, 0.4, 0.9], &s).label, "NORMAL");
        assert_eq!(read(&[0.1, 0.6, 0.1], &s).label, "Pneumonia");
        let s = spec(OutputKind::MultilabelLogits, &["A", "Pneumonia"], 1);
        assert!((read(&[0.0, 0.0], &s).score - 0.5).abs() < 1e-6);
    }
}
