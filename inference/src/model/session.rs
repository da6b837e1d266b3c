//! One ONNX Runtime session: loading, checking its signature against the metadata, running a
//! batch. `Session::run` takes `&mut self`, so each pool worker owns one [`Runner`].

use std::path::Path;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;
use ort::value::{Tensor, TensorElementType, ValueType};

use super::ModelError;
use crate::metadata::ModelMetadata;

/// What the model's graph says about its batch dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Batch {
    /// `N` is symbolic (`-1`): any batch size, so micro-batching is possible.
    Dynamic,
    /// `N` is fixed at 1.
    One,
}

/// A session plus the names and shapes needed to run it.
pub(crate) struct Runner {
    session: Session,
    input: String,
    output: String,
    image_shape: [usize; 3],
    classes: usize,
    pub(crate) batch: Batch,
}

impl Runner {
    /// Loads the model and checks its input/output against `meta`.
    pub(crate) fn open(
        path: &Path,
        meta: &ModelMetadata,
        intra_threads: usize,
    ) -> Result<Runner, ModelError> {
        let env = crate::runtime::environment()?;
        let ort = |e: ort::Error| ModelError::Ort(e.to_string());
        let session = Session::builder(&env)
            .map_err(ort)?
            .with_optimization_level(GraphOptimizationLevel::Level3)
            .map_err(|e| ModelError::Ort(e.to_string()))?
            .with_intra_threads(intra_threads.max(1))
            .map_err(|e| ModelError::Ort(e.to_string()))?
            .with_inter_threads(1)
            .map_err(|e| ModelError::Ort(e.to_string()))?
            .commit_from_file(path)
            .map_err(|e| ModelError::Load {
                path: path.to_owned(),
                reason: e.to_string(),
            })?;

        let input = pick(session.inputs(), meta.input.name.as_deref(), "input")?;
        let output = pick(session.outputs(), meta.output.name.as_deref(), "output")?;
        let image_shape = meta.input.image_shape();
        let in_dims = float_dims(session.inputs(), &input)?;
        if in_dims.len() != 4 {
            return Err(ModelError::Signature(format!(
                "input {input:?} has rank {}, expected 4",
                in_dims.len()
            )));
        }
        for (i, (&model, &want)) in in_dims[1..].iter().zip(&image_shape).enumerate() {
            if model >= 0 && model as usize != want {
                return Err(ModelError::Signature(format!(
                    "input {input:?} dimension {} is {model} in the model but {want} in the \
                     metadata (shape {in_dims:?} vs {:?} {image_shape:?})",
                    i + 1,
                    meta.input.layout
                )));
            }
        }
        let batch = match in_dims[0] {
            d if d < 0 => Batch::Dynamic,
            1 => Batch::One,
            d => {
                return Err(ModelError::Signature(format!(
                    "input {input:?} has a fixed batch size {d}; only 1 or dynamic is supported"
                )))
            }
        };
        let out_dims = float_dims(session.outputs(), &output)?;
        let classes = match out_dims.as_slice() {
            [_] => 1,
            [_, k] if *k > 0 => *k as usize,
            [_, _] => meta.output.labels.len(),
            other => {
                return Err(ModelError::Signature(format!(
                    "output {output:?} has shape {other:?}, expected [N] or [N, classes]"
                )))
            }
        };
        if classes != meta.output.labels.len() {
            return Err(ModelError::Signature(format!(
                "output {output:?} has {classes} columns but the metadata lists {} labels",
                meta.output.labels.len()
            )));
        }
        Ok(Runner {
            session,
            input,
            output,
            image_shape,
            classes,
            batch,
        })
    }

    /// Runs `n` images laid out back to back in `data`; returns one output row per image.
    pub(crate) fn run(&mut self, data: Vec<f32>, n: usize) -> Result<Vec<Vec<f32>>, ModelError> {
        let [a, b, c] = self.image_shape;
        let shape = [n, a, b, c];
        let tensor =
            Tensor::from_array((shape, data)).map_err(|e| ModelError::Ort(e.to_string()))?;
        let outputs = self
            .session
            .run(ort::inputs![self.input.as_str() => tensor])
            .map_err(|e| ModelError::Ort(e.to_string()))?;
        let (out_shape, values) = outputs[self.output.as_str()]
            .try_extract_tensor::<f32>()
            .map_err(|e| ModelError::Ort(e.to_string()))?;
        if values.len() != n * self.classes || out_shape.first().copied() != Some(n as i64) {
            return Err(ModelError::Signature(format!(
                "output shape {:?} for a batch of {n}",
                &out_shape[..]
            )));
        }
        Ok(values
            .chunks_exact(self.classes)
            .map(<[f32]>::to_vec)
            .collect())
    }
}

fn pick(
    outlets: &[ort::value::Outlet],
    wanted: Option<&str>,
    what: &str,
) -> Result<String, ModelError> {
    match wanted {
        Some(name) => outlets
            .iter()
            .find(|o| o.name() == name)
            .map(|o| o.name().to_owned())
            .ok_or_else(|| {
                let names: Vec<&str> = outlets.iter().map(|o| o.name()).collect();
                ModelError::Signature(format!("no {what} named {name:?}; the model has {names:?}"))
            }),
        None => outlets
            .first()
            .map(|o| o.name().to_owned())
            .ok_or_else(|| ModelError::Signature(format!("the model has no {what}"))),
    }
}

fn float_dims(outlets: &[ort::value::Outlet], name: &str) -> Result<Vec<i64>, ModelError> {
    let outlet = outlets.iter().find(|o| o.name() == name);
    match outlet.map(|o| o.dtype()) {
        Some(ValueType::Tensor {
            ty: TensorElementType::Float32,
            shape,
            ..
        }) => Ok(shape.to_vec()),
        _ => Err(ModelError::Signature(format!(
            "{name:?} is not a float32 tensor"
        ))),
    }
}
