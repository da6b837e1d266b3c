//! [`ShadowModel`]: an ONNX classifier loaded once and served by a pool of worker threads.
//!
//! ```no_run
//! use augur_inference::{ScoreInput, ShadowConfig, ShadowModel};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // Reads model.json next to model.onnx; ORT_DYLIB_PATH names libonnxruntime.so.
//! let model = ShadowModel::load("model.onnx".as_ref(), ShadowConfig::default())?;
//! let body = std::fs::read("xray.jpeg")?;
//! // Request path: never blocks; a full queue drops and counts.
//! let _ = model.try_submit(ScoreInput::encoded(body.clone(), Some("image/jpeg")), |result| {
//!     if let Ok(score) = result {
//!         println!("{} {:.3}", score.label, score.score);
//!     }
//! });
//! // Batch tools: blocks until scored.
//! let score = model.score(ScoreInput::encoded(body, None))?;
//! # Ok(()) }
//! ```

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use bytes::Bytes;
use crossbeam_channel::{Sender, TrySendError};

use crate::decode::{DecodeError, DecodeOptions};
use crate::metadata::{MetadataError, ModelMetadata};
use crate::metrics::{Outcome, ShadowMetrics};
use crate::preprocess::Preprocessor;
use crate::runtime::RuntimeError;

mod pool;
mod postprocess;
mod session;

use pool::{Job, Shared};
use session::{Batch, Runner};

/// Pool and decoding settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowConfig {
    /// Worker threads, each with its own session (default 1).
    pub workers: usize,
    /// Bounded queue length; `try_submit` drops when it is full (default 64).
    pub queue_capacity: usize,
    /// Largest micro-batch, used when the model's batch dimension is dynamic (default 8).
    pub max_batch: usize,
    /// How long a worker waits to fill a micro-batch after its first job (default 2 ms).
    pub max_batch_wait: Duration,
    /// ONNX Runtime intra-op threads per session (default 1).
    pub intra_op_threads: usize,
    /// Limits and body options.
    pub decode: DecodeOptions,
}

impl Default for ShadowConfig {
    fn default() -> Self {
        ShadowConfig {
            workers: 1,
            queue_capacity: 64,
            max_batch: 8,
            max_batch_wait: Duration::from_millis(2),
            intra_op_threads: 1,
            decode: DecodeOptions::default(),
        }
    }
}

/// Something to score.
#[derive(Debug, Clone)]
pub enum ScoreInput {
    /// A request body (PNG, JPEG, DICOM, multipart or JSON) and its `Content-Type`.
    Encoded {
        /// The body.
        body: Bytes,
        /// Its `Content-Type`; sniffed from the bytes when absent.
        content_type: Option<String>,
    },
    /// An already preprocessed tensor of `InputSpec::image_len()` values (tests, replays).
    Tensor(Vec<f32>),
}

impl ScoreInput {
    /// A request body with an optional content type.
    pub fn encoded(body: impl Into<Bytes>, content_type: Option<&str>) -> Self {
        ScoreInput::Encoded {
            body: body.into(),
            content_type: content_type.map(str::to_owned),
        }
    }
}

/// The shadow model's answer for one image.
#[derive(Debug, Clone, PartialEq)]
pub struct Score {
    /// Probability of the positive (pneumonia) class.
    pub score: f32,
    /// The predicted label.
    pub label: String,
    /// Per-class probabilities (after softmax/sigmoid as the metadata says).
    pub probabilities: Vec<f32>,
    /// The raw output row.
    pub outputs: Vec<f32>,
    /// From submission to result (queue + decode + inference).
    pub latency: Duration,
    /// The `session.run` call of the micro-batch this image was in.
    pub inference: Duration,
    /// Images in that micro-batch.
    pub batch_size: usize,
}

/// The model could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// ONNX Runtime is missing.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    /// The metadata JSON is missing or invalid.
    #[error(transparent)]
    Metadata(#[from] MetadataError),
    /// The `.onnx` file could not be loaded.
    #[error("cannot load model {path}: {reason}")]
    Load {
        /// The model file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The graph's inputs/outputs do not match the metadata.
    #[error("model does not match its metadata: {0}")]
    Signature(String),
    /// ONNX Runtime failed.
    #[error("onnx runtime: {0}")]
    Ort(String),
    /// A worker thread could not be started.
    #[error("cannot start a shadow worker: {0}")]
    Spawn(std::io::Error),
    /// The configuration is unusable.
    #[error("invalid shadow configuration: {0}")]
    Config(&'static str),
}

/// Why an image was not queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The queue is full; the image was dropped and counted.
    #[error("shadow queue full, image dropped")]
    QueueFull,
    /// The model is shutting down.
    #[error("shadow model shut down")]
    ShutDown,
}

/// Why a queued image produced no score.
#[derive(Debug, thiserror::Error)]
pub enum ScoreError {
    /// The body could not be decoded.
    #[error(transparent)]
    Decode(#[from] DecodeError),
    /// A [`ScoreInput::Tensor`] of the wrong length.
    #[error("tensor has {got} values, the model takes {expected}")]
    BadTensor {
        /// `InputSpec::image_len()`.
        expected: usize,
        /// What was given.
        got: usize,
    },
    /// Inference failed.
    #[error("inference failed: {0}")]
    Inference(String),
    /// Not queued.
    #[error(transparent)]
    Submit(#[from] SubmitError),
    /// The worker went away without answering.
    #[error("shadow worker stopped")]
    Cancelled,
}

/// An ONNX classifier served by a bounded pool of worker threads.
///
/// Dropping it closes the queue; workers finish the queued images and exit.
pub struct ShadowModel {
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    shared: Arc<Shared>,
    batch: Batch,
}

impl std::fmt::Debug for ShadowModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShadowModel")
            .field("name", &self.shared.meta.name)
            .field("workers", &self.workers.len())
            .field("batch", &self.batch)
            .finish()
    }
}

// === impl ShadowModel ===

impl ShadowModel {
    /// Loads `model` with the metadata next to it (`model.onnx` → `model.json`).
    pub fn load(model: &Path, config: ShadowConfig) -> Result<Self, ModelError> {
        let meta = ModelMetadata::from_file(&ModelMetadata::path_for(model))?;
        Self::with_metadata(model, meta, config)
    }

    /// Loads the CanaryPolicy's shadow model: its metadata JSON, with the policy's
    /// `preprocessing` replacing the JSON's input preprocessing.
    pub fn from_policy(
        shadow: &augur_policies::Shadow,
        config: ShadowConfig,
    ) -> Result<Self, ModelError> {
        let model = Path::new(&shadow.model);
        let meta = ModelMetadata::from_file(&ModelMetadata::path_for(model))?
            .with_preprocessing(&shadow.preprocessing)?;
        Self::with_metadata(model, meta, config)
    }

    /// Checks what [`ShadowModel::from_policy`] would load (the metadata JSON beside the model,
    /// the model itself, and its input and output against that metadata and the policy's
    /// `preprocessing`) without starting a worker: for `augur policy check`.
    pub fn check_policy(shadow: &augur_policies::Shadow) -> Result<ModelMetadata, ModelError> {
        let model = Path::new(&shadow.model);
        let meta = ModelMetadata::from_file(&ModelMetadata::path_for(model))?
            .with_preprocessing(&shadow.preprocessing)?;
        meta.validate()?;
        Runner::open(model, &meta, 1)?;
        Ok(meta)
    }

    /// Loads `model` with explicit metadata. Sessions are created (and checked against the
    /// metadata) here, so every load error surfaces before a worker starts.
    pub fn with_metadata(
        model: &Path,
        meta: ModelMetadata,
        config: ShadowConfig,
    ) -> Result<Self, ModelError> {
        meta.validate()?;
        if config.workers == 0 || config.queue_capacity == 0 {
            return Err(ModelError::Config(
                "workers and queue_capacity must be at least 1",
            ));
        }
        let runners = (0..config.workers)
            .map(|_| Runner::open(model, &meta, config.intra_op_threads))
            .collect::<Result<Vec<_>, _>>()?;
        let batch = runners.first().map_or(Batch::One, |r| r.batch);
        let shared = Arc::new(Shared {
            preprocessor: Preprocessor::new(&meta.input),
            meta,
            decode: config.decode,
            metrics: Arc::new(ShadowMetrics::default()),
            max_batch: config.max_batch,
            max_wait: config.max_batch_wait,
        });
        let (tx, rx) = crossbeam_channel::bounded(config.queue_capacity);
        let workers = pool::spawn(runners, &rx, &shared)?;
        tracing::info!(
            model = %shared.meta.name,
            workers = workers.len(),
            dynamic_batch = batch == Batch::Dynamic,
            "shadow model loaded"
        );
        Ok(ShadowModel {
            tx: Some(tx),
            workers,
            shared,
            batch,
        })
    }

    /// The metadata in force (after any policy override).
    pub fn metadata(&self) -> &ModelMetadata {
        &self.shared.meta
    }

    /// The decoding options (limits, JSON pointer, multipart field).
    pub fn decode_options(&self) -> &DecodeOptions {
        &self.shared.decode
    }

    /// The live counters.
    pub fn metrics(&self) -> &Arc<ShadowMetrics> {
        &self.shared.metrics
    }

    /// Whether the model's batch dimension is dynamic, so that images are micro-batched.
    pub fn batches(&self) -> bool {
        self.batch == Batch::Dynamic
    }

    /// A job for the queue, counted in the queue depth (the caller uncounts it if not sent).
    fn job<F>(&self, input: ScoreInput, on_done: F) -> Result<(&Sender<Job>, Job), SubmitError>
    where
        F: FnOnce(Result<Score, ScoreError>) + Send + 'static,
    {
        let tx = self.tx.as_ref().ok_or(SubmitError::ShutDown)?;
        let job = Job {
            input,
            enqueued: std::time::Instant::now(),
            reply: Box::new(on_done),
        };
        self.shared.metrics.queue_add(1);
        self.shared.metrics.submitted();
        Ok((tx, job))
    }

    /// Queues an image without waiting; `on_done` runs on a worker thread with the result.
    /// A full queue drops the image (counted as [`Outcome::Dropped`]) and `on_done` is not called.
    pub fn try_submit<F>(&self, input: ScoreInput, on_done: F) -> Result<(), SubmitError>
    where
        F: FnOnce(Result<Score, ScoreError>) + Send + 'static,
    {
        let (tx, job) = self.job(input, on_done)?;
        match tx.try_send(job) {
            Ok(()) => Ok(()),
            Err(e) => {
                self.shared.metrics.queue_add(-1);
                self.shared.metrics.record(Outcome::Dropped);
                Err(match e {
                    TrySendError::Full(_) => SubmitError::QueueFull,
                    TrySendError::Disconnected(_) => SubmitError::ShutDown,
                })
            }
        }
    }

    /// Scores one image, waiting for queue space and for the result (CLI and batch tools; not
    /// for the request path).
    pub fn score(&self, input: ScoreInput) -> Result<Score, ScoreError> {
        let (done_tx, done_rx) = crossbeam_channel::bounded(1);
        self.submit_blocking(input, move |r| {
            let _ = done_tx.send(r);
        })?;
        done_rx.recv().unwrap_or(Err(ScoreError::Cancelled))
    }

    /// Queues an image, waiting for queue space; `on_done` runs on a worker thread.
    pub fn submit_blocking<F>(&self, input: ScoreInput, on_done: F) -> Result<(), SubmitError>
    where
        F: FnOnce(Result<Score, ScoreError>) + Send + 'static,
    {
        let (tx, job) = self.job(input, on_done)?;
        tx.send(job).map_err(|_| {
            self.shared.metrics.queue_add(-1);
            SubmitError::ShutDown
        })
    }
}

impl Drop for ShadowModel {
    fn drop(&mut self) {
        self.tx = None;
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}
