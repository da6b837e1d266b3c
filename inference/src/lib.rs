//! augur's embedded ONNX shadow model.
//!
//! A mirrored copy of a prediction request (a chest X-ray as PNG, JPEG, DICOM, multipart form or
//! base64 JSON) is decoded ([`decode`]), turned into the model's input tensor ([`preprocess`],
//! driven by [`metadata`]), and scored by an ONNX model in process ([`ShadowModel`]), on a
//! bounded pool of worker threads that never blocks the request path. The result is a
//! positive-class score, a label and a latency; [`metrics`] counts every outcome.
//!
//! The same pipeline backs a reference model server ([`server`]) that answers like the seeds'
//! FastAPI service, and [`score_images`] for `augur score`.
//!
//! ONNX Runtime is loaded at run time from `ORT_DYLIB_PATH` ([`runtime`]); nothing is
//! downloaded at build or run time.

pub mod decode;
pub mod metadata;
pub mod metrics;
mod model;
pub mod preprocess;
pub mod runtime;
mod score;
pub mod server;

pub use decode::{DecodeError, DecodeOptions, DecodedImage, Limits};
pub use metadata::ModelMetadata;
pub use metrics::{MetricsSnapshot, Outcome, ShadowMetrics};
pub use model::{
    ModelError, Score, ScoreError, ScoreInput, ShadowConfig, ShadowModel, SubmitError,
};
pub use score::{score_images, ScoreReport};
pub use server::{serve, ModelServer, ServerConfig, ServerError};
