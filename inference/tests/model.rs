//! The fixture models through the pool: outputs against Python onnxruntime, end-to-end
//! images, the controlled disagreement, micro-batching, drops and policy overrides.
#![allow(clippy::unwrap_used)] // test helpers outside #[test] functions

mod common;

use std::sync::{Arc, Barrier};
use std::time::Duration;

use augur_inference::metadata::{Layout, ModelMetadata, Normalization};
use augur_inference::{
    score_images, Outcome, ScoreError, ScoreInput, ShadowConfig, ShadowModel, SubmitError,
};

fn load(name: &str, config: ShadowConfig) -> ShadowModel {
    common::ort();
    ShadowModel::load(&common::model(name), config).unwrap_or_else(|e| panic!("{name}: {e}"))
}

#[test]
fn outputs_match_python_onnxruntime() {
    let reference = common::json(&common::fixtures().join("models/reference.json"));
    let kinds: Vec<&str> = reference["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap())
        .collect();
    for name in [
        "nonmedical-tiny-a",
        "nonmedical-tiny-b",
        "nonmedical-tiny-c",
    ] {
        let model = load(name, ShadowConfig::default());
        let n = model.metadata().input.image_len();
        let rows = reference["models"][name]["outputs"].as_array().unwrap();
        for (kind, want) in kinds.iter().zip(rows) {
            let score = model
                .score(ScoreInput::Tensor(common::reference_input(kind, n)))
                .unwrap();
            let want: Vec<f64> = want
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v.as_f64().unwrap())
                .collect();
            assert_eq!(score.outputs.len(), want.len());
            for (g, w) in score.outputs.iter().zip(&want) {
                assert!(
                    (f64::from(*g) - w).abs() < 1e-5,
                    "{name} {kind}: {g} vs {w}"
                );
            }
        }
    }
}

#[test]
fn png_end_to_end_matches_python_preprocessing() {
    let reference = common::json(&common::fixtures().join("models/reference.json"));
    for (key, want) in reference["images"].as_object().unwrap() {
        let (image, name) = key.split_once(" @ ").unwrap();
        let model = load(name, ShadowConfig::default());
        let body = std::fs::read(common::image(image)).unwrap();
        let score = model
            .score(ScoreInput::encoded(body, Some("image/png")))
            .unwrap();
        for (g, w) in score.outputs.iter().zip(want.as_array().unwrap()) {
            let w = w.as_f64().unwrap();
            assert!((f64::from(*g) - w).abs() < 1e-5, "{key}: {g} vs {w}");
        }
    }
}

#[test]
fn models_a_and_b_disagree_only_where_designed() {
    let a = load("nonmedical-tiny-a", ShadowConfig::default());
    let b = load("nonmedical-tiny-b", ShadowConfig::default());
    let n = a.metadata().input.image_len();
    let mut disagreements = Vec::new();
    for kind in ["zeros", "ramp", "lcg:7", "lcg:8", "lcg:9", "lcg:10"] {
        let sa = a
            .score(ScoreInput::Tensor(common::reference_input(kind, n)))
            .unwrap();
        let sb = b
            .score(ScoreInput::Tensor(common::reference_input(kind, n)))
            .unwrap();
        assert!(sb.score > sa.score, "b is the trigger-happy one");
        if sa.label != sb.label {
            disagreements.push((kind, sa.label, sb.label));
        }
    }
    assert_eq!(
        disagreements,
        vec![("ramp", "NORMAL".to_owned(), "PNEUMONIA".to_owned())]
    );
}

#[test]
fn dynamic_batches_are_micro_batched() {
    let config = ShadowConfig {
        max_batch: 4,
        max_batch_wait: Duration::from_millis(200),
        ..ShadowConfig::default()
    };
    let model = load("nonmedical-tiny-a", config);
    assert!(model.batches());
    let n = model.metadata().input.image_len();
    let (tx, rx) = crossbeam_channel::unbounded();
    for i in 0..4 {
        let tx = tx.clone();
        model
            .try_submit(
                ScoreInput::Tensor(common::reference_input(&format!("lcg:{i}"), n)),
                move |r| {
                    tx.send(r).unwrap();
                },
            )
            .unwrap();
    }
    let sizes: Vec<usize> = (0..4)
        .map(|_| rx.recv().unwrap().unwrap().batch_size)
        .collect();
    assert!(sizes.iter().any(|s| *s > 1), "{sizes:?}");
    let snap = model.metrics().snapshot();
    assert_eq!(snap.count(Outcome::Success), 4);
    assert!(snap.batches < 4);

    // Model c has a fixed batch of 1: never batched.
    let c = load("nonmedical-tiny-c", ShadowConfig::default());
    assert!(!c.batches());
}

#[test]
fn a_full_queue_drops_and_counts() {
    let config = ShadowConfig {
        queue_capacity: 1,
        max_batch: 1,
        ..ShadowConfig::default()
    };
    let model = load("nonmedical-tiny-a", config);
    let n = model.metadata().input.image_len();
    // Block the only worker inside a reply until the queue has been overfilled.
    let gate = Arc::new(Barrier::new(2));
    let g = Arc::clone(&gate);
    model
        .try_submit(ScoreInput::Tensor(vec![0.0; n]), move |_| {
            g.wait();
        })
        .unwrap();
    // The worker has taken the first job when it leaves the queue (and blocks in its reply).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while model.metrics().snapshot().queue_depth > 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the worker never took the first job"
        );
        std::thread::yield_now();
    }
    let mut dropped = 0;
    for _ in 0..5 {
        match model.try_submit(ScoreInput::Tensor(vec![0.0; n]), |_| {}) {
            Err(SubmitError::QueueFull) => dropped += 1,
            Ok(()) => {}
            Err(e) => panic!("{e}"),
        }
    }
    gate.wait();
    assert_eq!(dropped, 4, "one fits in the queue");
    assert_eq!(model.metrics().count(Outcome::Dropped), 4);
}

#[test]
fn bad_inputs_are_counted_not_fatal() {
    let model = load("nonmedical-tiny-a", ShadowConfig::default());
    let err = model
        .score(ScoreInput::encoded(&b"not an image"[..], Some("image/png")))
        .unwrap_err();
    assert!(matches!(err, ScoreError::Decode(_)), "{err}");
    let err = model.score(ScoreInput::Tensor(vec![0.0; 3])).unwrap_err();
    assert!(matches!(
        err,
        ScoreError::BadTensor {
            expected: 4096,
            got: 3
        }
    ));
    let hostile = std::fs::read(common::image("huge-65535x65535.jpeg")).unwrap();
    assert!(model.score(ScoreInput::encoded(hostile, None)).is_err());
    assert_eq!(model.metrics().count(Outcome::DecodeError), 3);
    // The worker is still alive.
    assert!(model.score(ScoreInput::Tensor(vec![0.0; 4096])).is_ok());
}

#[test]
fn metadata_that_does_not_match_the_graph_is_refused() {
    common::ort();
    let path = common::model("nonmedical-tiny-a");
    let mut meta = ModelMetadata::from_file(&ModelMetadata::path_for(&path)).unwrap();
    meta.input.layout = Layout::Nhwc; // [64, 64, 1] vs the graph's [1, 64, 64]
    let err = ShadowModel::with_metadata(&path, meta, ShadowConfig::default()).unwrap_err();
    assert!(err.to_string().contains("does not match"), "{err}");
}

#[test]
fn policy_preprocessing_overrides_the_json() {
    common::ort();
    let preprocessing = augur_policies::Preprocessing {
        channels: 1,
        width: 64,
        height: 64,
        resize: augur_policies::Resize::Nearest,
        crop: None,
        normalization: augur_policies::Normalization::Range {
            min: -2.0,
            max: 2.0,
        },
        layout: augur_policies::Layout::Nchw,
    };
    let path = common::model("nonmedical-tiny-a");
    let meta = ModelMetadata::from_file(&ModelMetadata::path_for(&path))
        .unwrap()
        .with_preprocessing(&preprocessing)
        .unwrap();
    assert_eq!(meta.input.name.as_deref(), Some("image"));
    assert_eq!(
        meta.input.normalization,
        Normalization::Range {
            min: -2.0,
            max: 2.0
        }
    );
    // Range [-2, 2] is the same map as mean 0.5 / std 0.25: the end-to-end output is unchanged.
    let model = ShadowModel::with_metadata(&path, meta, ShadowConfig::default()).unwrap();
    let body = std::fs::read(common::image("model-a-input.png")).unwrap();
    let score = model.score(ScoreInput::encoded(body, None)).unwrap();
    let reference = common::json(&common::fixtures().join("models/reference.json"));
    let want = reference["images"]["model-a-input.png @ nonmedical-tiny-a"][1]
        .as_f64()
        .unwrap();
    assert!((f64::from(score.outputs[1]) - want).abs() < 1e-5);
}

#[test]
fn score_images_reports_every_file_and_latency() {
    let model = load(
        "nonmedical-tiny-a",
        ShadowConfig {
            workers: 2,
            ..ShadowConfig::default()
        },
    );
    let mut paths = common::xrays();
    paths.push(common::image("truncated.png"));
    let reports = score_images(&model, &paths);
    assert_eq!(reports.len(), 17);
    for r in &reports[..16] {
        let s = r.score.unwrap_or_else(|| panic!("{:?}", r.error));
        assert!((0.0..=1.0).contains(&s));
        assert!(matches!(r.label.as_deref(), Some("NORMAL" | "PNEUMONIA")));
        assert!(r.latency_ms > 0.0, "{}: no latency", r.path.display());
    }
    assert!(reports[16].error.is_some());
    // How fast is for bench/inference/run.sh (BENCHMARKS.md), not for a test.
    assert_eq!(model.metrics().snapshot().latency_count, 16);
}
