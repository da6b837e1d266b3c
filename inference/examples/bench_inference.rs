//! The Rust side of `bench/inference/run.sh`: one measurement per process, one JSON line out.
//!
//! ```text
//! bench_inference infer --model M.onnx --threads T --batch B --seconds S
//! bench_inference preprocess --rounds R IMAGE...
//! ```
//!
//! `infer` scores one fixed tensor (`((i % 17) - 8) / 8`, as the Python side builds it) through
//! the crate's real path: `ShadowModel` with one worker, `T` intra-op threads, micro-batches of
//! `B` (the round submits `B` tensors, then waits for all `B` results). It warms up for two
//! rounds, then counts images for at least `S` seconds. The pool's counters confirm the batch
//! size that actually ran (`mean_batch`).
//!
//! `preprocess` decodes each image from memory and builds its tensor with the Xception recipe
//! of `pneumonia-model-package` (NHWC 150×150×3, nearest, x/127.5 − 1), `R` times, and reports
//! the mean cost per image. No ONNX Runtime is needed for it.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use augur_inference::decode::{self, DecodeOptions};
use augur_inference::metadata::InputSpec;
use augur_inference::preprocess::Preprocessor;
use augur_inference::{runtime, ScoreInput, ShadowConfig, ShadowModel};

/// The Xception recipe, as `scripts/fetch-model.sh` writes it into the model's metadata.
const XCEPTION_INPUT: &str = r#"{"layout": "NHWC", "channels": 3, "width": 150, "height": 150,
    "resize": "nearest", "normalization": "x/127.5-1"}"#;

type Error = Box<dyn std::error::Error>;

fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (mode, rest) = args
        .split_first()
        .ok_or("usage: bench_inference infer|preprocess ...")?;
    let line = match mode.as_str() {
        "infer" => infer(&Flags::parse(rest)?)?,
        "preprocess" => preprocess(&Flags::parse(rest)?)?,
        other => return Err(format!("unknown mode {other:?}").into()),
    };
    println!("{line}");
    Ok(())
}

/// `--name value` flags, then positional arguments.
struct Flags {
    pairs: Vec<(String, String)>,
    positional: Vec<PathBuf>,
}

impl Flags {
    fn parse(args: &[String]) -> Result<Self, Error> {
        let mut flags = Flags {
            pairs: Vec::new(),
            positional: Vec::new(),
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            match arg.strip_prefix("--") {
                Some(name) => {
                    let value = it.next().ok_or(format!("--{name} needs a value"))?;
                    flags.pairs.push((name.to_owned(), value.clone()));
                }
                None => flags.positional.push(PathBuf::from(arg)),
            }
        }
        Ok(flags)
    }

    fn get<T: std::str::FromStr>(&self, name: &str) -> Result<T, Error> {
        let value = self
            .pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v)
            .ok_or(format!("--{name} is required"))?;
        value
            .parse()
            .map_err(|_| format!("--{name}: cannot parse {value:?}").into())
    }
}

fn infer(flags: &Flags) -> Result<serde_json::Value, Error> {
    let model_path: PathBuf = flags.get("model")?;
    let threads: usize = flags.get("threads")?;
    let batch: usize = flags.get("batch")?;
    let seconds: f64 = flags.get("seconds")?;
    runtime::environment()?;
    let config = ShadowConfig {
        workers: 1,
        queue_capacity: batch,
        max_batch: batch,
        // Long enough that a round's `batch` submissions always form one batch.
        max_batch_wait: Duration::from_millis(200),
        intra_op_threads: threads,
        ..ShadowConfig::default()
    };
    let model = ShadowModel::load(&model_path, config)?;
    let len = model.metadata().input.image_len();
    let tensor: Vec<f32> = (0..len).map(|i| ((i % 17) as f32 - 8.0) / 8.0).collect();
    let round = || -> Result<(), Error> {
        let (tx, rx) = crossbeam_channel::bounded(batch);
        for _ in 0..batch {
            let tx = tx.clone();
            model.submit_blocking(ScoreInput::Tensor(tensor.clone()), move |r| {
                let _ = tx.send(r.map(|_| ()));
            })?;
        }
        for _ in 0..batch {
            rx.recv()??;
        }
        Ok(())
    };
    round()?;
    round()?;
    let before = model.metrics().snapshot();
    let start = Instant::now();
    let mut images = 0usize;
    while start.elapsed().as_secs_f64() < seconds {
        round()?;
        images += batch;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let after = model.metrics().snapshot();
    let batches = after.batches - before.batches;
    Ok(serde_json::json!({
        "impl": "augur",
        "threads": threads,
        "batch": batch,
        "images": images,
        "seconds": elapsed,
        "images_per_s": images as f64 / elapsed,
        "mean_batch": (after.batch_images - before.batch_images) as f64 / batches.max(1) as f64,
    }))
}

fn preprocess(flags: &Flags) -> Result<serde_json::Value, Error> {
    let rounds: usize = flags.get("rounds")?;
    if flags.positional.is_empty() {
        return Err("no images given".into());
    }
    let spec: InputSpec = serde_json::from_str(XCEPTION_INPUT)?;
    let pre = Preprocessor::new(&spec);
    let options = DecodeOptions::default();
    let bodies = flags
        .positional
        .iter()
        .map(std::fs::read)
        .collect::<Result<Vec<_>, _>>()?;
    let mut checksum = 0.0f64;
    let mut run = |bodies: &[Vec<u8>]| -> Result<(), Error> {
        for body in bodies {
            let image = decode::decode(body, Some("image/jpeg"), &options)?;
            let tensor = pre.tensor(&image);
            checksum += f64::from(tensor[tensor.len() / 2]);
        }
        Ok(())
    };
    run(&bodies)?;
    let start = Instant::now();
    for _ in 0..rounds {
        run(&bodies)?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let images = rounds * bodies.len();
    Ok(serde_json::json!({
        "impl": "augur",
        "images": images,
        "seconds": elapsed,
        "ms_per_image": elapsed * 1e3 / images as f64,
        "checksum": checksum,
    }))
}
