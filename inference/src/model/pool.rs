//! The worker pool behind [`crate::ShadowModel`].
//!
//! Each worker is an OS thread (never an async task: decoding and inference are CPU-bound and
//! would stall a runtime) that owns one ONNX Runtime session, because `Session::run` takes
//! `&mut self`. Workers share one bounded MPMC queue; producers use `try_send` and drop (and
//! count) when it is full, so the request path never waits on the shadow model.
//!
//! Micro-batching: when the model's batch dimension is dynamic, a worker that takes a job keeps
//! collecting until it has `max_batch` jobs or `max_batch_wait` has passed since the first one,
//! then decodes and preprocesses them and runs one `session.run` for all of them.
//! Decoding runs inside `catch_unwind`, so a panicking third-party decoder fails one request
//! instead of killing the worker.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Receiver;

use super::postprocess;
use super::session::{Batch, Runner};
use super::{ModelError, Score, ScoreError, ScoreInput};
use crate::decode::{self, DecodeError, DecodeOptions};
use crate::metadata::ModelMetadata;
use crate::metrics::{Outcome, ShadowMetrics};
use crate::preprocess::Preprocessor;

/// A queued image.
pub(crate) struct Job {
    pub(crate) input: ScoreInput,
    pub(crate) enqueued: Instant,
    /// Called once with the result, on a worker thread.
    pub(crate) reply: Box<dyn FnOnce(Result<Score, ScoreError>) + Send + 'static>,
}

/// What every worker reads.
pub(crate) struct Shared {
    pub(crate) meta: ModelMetadata,
    pub(crate) preprocessor: Preprocessor,
    pub(crate) decode: DecodeOptions,
    pub(crate) metrics: Arc<ShadowMetrics>,
    pub(crate) max_batch: usize,
    pub(crate) max_wait: Duration,
}

/// Starts one thread per runner.
pub(crate) fn spawn(
    runners: Vec<Runner>,
    rx: &Receiver<Job>,
    shared: &Arc<Shared>,
) -> Result<Vec<JoinHandle<()>>, ModelError> {
    runners
        .into_iter()
        .enumerate()
        .map(|(i, runner)| {
            let (rx, shared) = (rx.clone(), Arc::clone(shared));
            std::thread::Builder::new()
                .name(format!("augur-shadow-{i}"))
                .spawn(move || work(runner, &rx, &shared))
                .map_err(ModelError::Spawn)
        })
        .collect()
}

fn work(mut runner: Runner, rx: &Receiver<Job>, shared: &Shared) {
    let max_batch = match runner.batch {
        Batch::Dynamic => shared.max_batch.max(1),
        Batch::One => 1,
    };
    while let Ok(first) = rx.recv() {
        shared.metrics.queue_add(-1);
        let mut jobs = vec![first];
        let deadline = Instant::now() + shared.max_wait;
        while jobs.len() < max_batch {
            match rx.recv_deadline(deadline) {
                Ok(job) => {
                    shared.metrics.queue_add(-1);
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        run_batch(&mut runner, jobs, shared);
    }
}

fn run_batch(runner: &mut Runner, jobs: Vec<Job>, shared: &Shared) {
    let per_image = shared.meta.input.image_len();
    let mut ready = Vec::with_capacity(jobs.len());
    let mut data = Vec::with_capacity(per_image * jobs.len());
    for job in jobs {
        match prepare(&job.input, shared) {
            Ok(tensor) => {
                data.extend_from_slice(&tensor);
                ready.push(job);
            }
            Err(e) => {
                shared.metrics.record(Outcome::DecodeError);
                (job.reply)(Err(e));
            }
        }
    }
    if ready.is_empty() {
        return;
    }
    let n = ready.len();
    let started = Instant::now();
    let result = runner.run(data, n);
    let inference = started.elapsed();
    shared.metrics.record_batch(n);
    match result {
        Ok(rows) => {
            for (job, row) in ready.into_iter().zip(rows) {
                let reading = postprocess::read(&row, &shared.meta.output);
                let latency = job.enqueued.elapsed();
                shared.metrics.record(Outcome::Success);
                shared.metrics.observe_latency(latency);
                (job.reply)(Ok(Score {
                    score: reading.score,
                    label: reading.label,
                    probabilities: reading.probabilities,
                    outputs: row,
                    latency,
                    inference,
                    batch_size: n,
                }));
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, batch = n, "shadow inference failed");
            for job in ready {
                shared.metrics.record(Outcome::InferenceError);
                (job.reply)(Err(ScoreError::Inference(e.to_string())));
            }
        }
    }
}

/// Decodes and preprocesses one input into its tensor.
fn prepare(input: &ScoreInput, shared: &Shared) -> Result<Vec<f32>, ScoreError> {
    match input {
        ScoreInput::Encoded { body, content_type } => {
            let decoded = catch_unwind(AssertUnwindSafe(|| {
                decode::decode(body, content_type.as_deref(), &shared.decode)
            }))
            .unwrap_or(Err(DecodeError::Malformed("the decoder panicked")))?;
            Ok(shared.preprocessor.tensor(&decoded))
        }
        ScoreInput::Tensor(values) => {
            let expected = shared.meta.input.image_len();
            if values.len() != expected {
                return Err(ScoreError::BadTensor {
                    expected,
                    got: values.len(),
                });
            }
            Ok(values.clone())
        }
    }
}
