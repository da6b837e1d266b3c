//! `--record-samples DIR`: every event a rollout applies, in the order it applies them, as the
//! JSON lines `augur analyze --samples` replays ([`augur_analyzer::replay::Event`]).
//!
//! A rollout is driven by samples, delayed labels, its once-a-second clock and manual commands,
//! each applied after ticking the rollout to the event's time. Written in that order (under the
//! rollouts' lock), a recording replays to the same decisions at the same times: the
//! reproducibility check of a live decision, and recorded traffic to try a policy change on.
//! One file per CanaryPolicy, `<namespace>_<name>.samples.jsonl`, appended to; the writer is
//! buffered and flushed once a second by the rollout driver, off the request path. Samples carry
//! what the analyzer reads (no bodies, no images).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufWriter, Write};
use std::path::{Path, PathBuf};

use augur_analyzer::replay::Event;
use augur_analyzer::rollout::Command;
use augur_model::Sample;
use serde::Serialize;

/// One rollout's recording.
#[derive(Debug)]
pub struct Recorder {
    path: PathBuf,
    out: BufWriter<File>,
}

#[derive(Serialize)]
struct Label<'a> {
    t: f64,
    request_id: &'a str,
    truth: &'a str,
}

#[derive(Serialize)]
struct Tick {
    tick: f64,
}

#[derive(Serialize)]
struct CommandLine {
    t: f64,
    command: Command,
}

impl Recorder {
    /// Opens (appending) the recording of `policy` in `dir`.
    pub fn open(dir: &Path, policy: &str) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let stem: String = policy
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .collect();
        let path = dir.join(format!("{stem}.samples.jsonl"));
        let file = OpenOptions::new().create(true).append(true).open(&path)?;
        Ok(Self {
            path,
            out: BufWriter::new(file),
        })
    }

    fn line(&mut self, value: &impl Serialize) {
        let written = serde_json::to_writer(&mut self.out, value)
            .map_err(std::io::Error::other)
            .and_then(|()| self.out.write_all(b"\n"));
        if let Err(e) = written {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the sample recording");
        }
    }

    /// A sample, as applied.
    pub fn sample(&mut self, sample: &Sample) {
        self.line(sample);
    }

    /// A delayed label, as applied at `t`.
    pub fn label(&mut self, t: f64, request_id: &str, truth: &str) {
        self.line(&Label {
            t,
            request_id,
            truth,
        });
    }

    /// The clock reached `t` (whole seconds).
    pub fn tick(&mut self, t: f64) {
        self.line(&Tick { tick: t.floor() });
    }

    /// A tally of a fleet's labelled and compared predictions, as applied.
    pub fn tally(&mut self, tally: &augur_analyzer::tally::Tally) {
        self.line(tally);
    }

    /// A manual command at `t`.
    pub fn command(&mut self, t: f64, command: Command) {
        self.line(&CommandLine { t, command });
    }

    /// Writes the buffered lines out.
    pub fn flush(&mut self) {
        if let Err(e) = self.out.flush() {
            tracing::warn!(path = %self.path.display(), error = %e, "cannot write the sample recording");
        }
    }
}

/// Why a recording could not be read; each names the file and, for a bad line, its number.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read.
    #[error("cannot read the samples file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A line is not an event.
    #[error("{path}:{line}: not a sample, a label ({{\"t\", \"request_id\", \"truth\"}}), a tick ({{\"tick\"}}), a command or a tally: {source}")]
    Line {
        /// The file.
        path: PathBuf,
        /// The line number (1-based).
        line: usize,
        /// The JSON error.
        source: serde_json::Error,
    },
}

/// Reads a recording: one JSON event per line (a sample, a delayed label, a clock tick or a
/// command; blank lines skipped).
pub fn read_events(path: &Path) -> Result<Vec<Event>, ReadError> {
    let io = |source| ReadError::Io {
        path: path.to_owned(),
        source,
    };
    let file = File::open(path).map_err(io)?;
    let mut events = Vec::new();
    for (i, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line = line.map_err(io)?;
        if line.trim().is_empty() {
            continue;
        }
        let event = serde_json::from_str(&line).map_err(|source| ReadError::Line {
            path: path.to_owned(),
            line: i + 1,
            source,
        })?;
        events.push(event);
    }
    Ok(events)
}
