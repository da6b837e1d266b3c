//! Validation of rollback triggers: rates are percentages, latency
//! thresholds are durations.

use super::raw::*;
use super::*;
use crate::context::Ctx;
use crate::duration::parse_duration;
use crate::yaml::join;

impl RawTrigger {
    pub(crate) fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> Option<RollbackTrigger> {
        let name = self.name.clone();
        if name.is_none() {
            cx.error(&join(path, "name"), "is required");
        }
        let metric = match self.metric {
            None => {
                cx.error(&join(path, "metric"), "is required");
                None
            }
            Some(m) => Some(match m {
                RawTriggerMetric::ErrorRate => TriggerMetric::ErrorRate,
                RawTriggerMetric::Accuracy => TriggerMetric::Accuracy,
                RawTriggerMetric::LatencyP50 => TriggerMetric::LatencyP50,
                RawTriggerMetric::LatencyP95 => TriggerMetric::LatencyP95,
                RawTriggerMetric::LatencyP99 => TriggerMetric::LatencyP99,
                RawTriggerMetric::ShadowAgreement => TriggerMetric::ShadowAgreement,
            }),
        };
        let window = match &self.window {
            None => {
                cx.error(&join(path, "window"), "is required");
                None
            }
            w => cx.duration(&join(path, "window"), w),
        };
        let action = match self.action {
            None => {
                cx.error(&join(path, "action"), "is required");
                None
            }
            Some(RawTriggerAction::Immediate) => Some(TriggerAction::Immediate),
            Some(RawTriggerAction::Staged) => Some(TriggerAction::Staged),
            Some(RawTriggerAction::CanaryOnly) => Some(TriggerAction::CanaryOnly),
        };
        let alpha = match self.alpha {
            None => Some(crate::defaults::TRIGGER_ALPHA),
            Some(a) if a > 0.0 && a < 1.0 => Some(a),
            Some(a) => {
                cx.error(
                    &join(path, "alpha"),
                    format!("alpha must be in (0, 1), got {a}"),
                );
                None
            }
        };
        let condition = self.condition(cx, path, metric?);
        Some(RollbackTrigger {
            name: name?,
            metric: metric?,
            condition: condition?,
            window: window?,
            action: action?,
            alpha: alpha?,
        })
    }

    fn condition(
        &self,
        cx: &mut Ctx<'_>,
        path: &str,
        metric: TriggerMetric,
    ) -> Option<TriggerCondition> {
        let cp = join(path, "condition");
        let Some(c) = &self.condition else {
            cx.error(&cp, "is required");
            return None;
        };
        let given: Vec<(&str, &RawAmount)> = [
            ("above", &c.above),
            ("dropBy", &c.drop_by),
            ("increaseBy", &c.increase_by),
        ]
        .into_iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| (k, v)))
        .collect();
        let [(field, raw)] = given.as_slice() else {
            cx.error(
                &cp,
                "exactly one of above, dropBy or increaseBy is required",
            );
            return None;
        };
        let ap = join(&cp, field);
        let amount = match (metric.is_latency(), raw) {
            (true, RawAmount::Duration(s)) => match parse_duration(s) {
                Ok(d) => Amount::Latency(d),
                Err(e) => {
                    cx.error(&ap, e.to_string());
                    return None;
                }
            },
            (true, RawAmount::Number(n)) => {
                cx.error(
                    &ap,
                    format!("latency thresholds are durations (e.g. 500ms), got {n}"),
                );
                return None;
            }
            (false, RawAmount::Number(n)) => {
                let p = Percent::check(cx, &ap, *n)?.value();
                if p > 0.0 && p < 1.0 {
                    // `above: 0.1` on an error rate reads like a fraction (10%) but means 0.1%.
                    cx.warn(
                        &ap,
                        format!(
                            "rates are percentages: {field}: {p} means {p}%; for {}% write {field}: {}",
                            p * 100.0,
                            p * 100.0
                        ),
                    );
                }
                Amount::Percent(p)
            }
            (false, RawAmount::Duration(s)) => {
                cx.error(
                    &ap,
                    format!("this metric is a percentage (0..=100), got {s:?}"),
                );
                return None;
            }
        };
        Some(match *field {
            "above" => TriggerCondition::Above(amount),
            "dropBy" => TriggerCondition::DropBy(amount),
            _ => TriggerCondition::IncreaseBy(amount),
        })
    }
}

fn pointer(cx: &mut Ctx<'_>, path: &str, v: &Option<String>) -> Option<String> {
    match v {
        None => {
            cx.error(path, "is required");
            None
        }
        Some(p) if !p.starts_with('/') => {
            cx.error(path, format!("JSON pointer must start with '/', got {p:?}"));
            None
        }
        Some(p) => Some(p.clone()),
    }
}

impl RawPrediction {
    pub(crate) fn validate(&self, cx: &mut Ctx<'_>) -> Option<Prediction> {
        let p = "spec.prediction";
        let score_pointer = pointer(cx, &join(p, "scorePointer"), &self.score_pointer);
        let label_pointer = pointer(cx, &join(p, "labelPointer"), &self.label_pointer);
        let positive_label = self.positive_label.clone();
        if positive_label.is_none() {
            cx.error(&join(p, "positiveLabel"), "is required");
        }
        Some(Prediction {
            score_pointer: score_pointer?,
            label_pointer: label_pointer?,
            positive_label: positive_label?,
        })
    }
}

impl RawShadow {
    pub(crate) fn validate(&self, cx: &mut Ctx<'_>) -> Option<Shadow> {
        let p = "spec.shadow";
        let model = self.model.clone().filter(|m| !m.is_empty());
        if model.is_none() {
            cx.error(&join(p, "model"), "is required");
        }
        let pct = self
            .mirror_percentage
            .unwrap_or(crate::defaults::MIRROR_PERCENTAGE);
        let mirror_percentage = Percent::check(cx, &join(p, "mirrorPercentage"), pct);
        let preprocessing = match &self.preprocessing {
            None => {
                cx.error(&join(p, "preprocessing"), "is required");
                None
            }
            Some(pre) => pre.validate(cx, &join(p, "preprocessing")),
        };
        let runtime = self
            .runtime
            .as_ref()
            .map_or_else(ShadowRuntime::default, |r| {
                r.validate(cx, &join(p, "runtime"))
            });
        Some(Shadow {
            model: model?,
            mirror_percentage: mirror_percentage?,
            preprocessing: preprocessing?,
            runtime,
        })
    }
}

/// Upper bounds that keep a typo from starting thousands of threads or buffering gigabytes.
const MAX_SHADOW_THREADS: u32 = 64;
const MAX_SHADOW_QUEUE: u32 = 65_536;
const MAX_SHADOW_BATCH: u32 = 256;

impl RawShadowRuntime {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> ShadowRuntime {
        let defaults = ShadowRuntime::default();
        let mut bounded = |field: &str, value: Option<u32>, max: u32, default: u32| match value {
            None => default,
            Some(n) if (1..=max).contains(&n) => n,
            Some(n) => {
                cx.error(
                    &join(path, field),
                    format!("must be between 1 and {max}, got {n}"),
                );
                default
            }
        };
        let workers = bounded(
            "workers",
            self.workers,
            MAX_SHADOW_THREADS,
            defaults.workers,
        );
        let queue_capacity = bounded(
            "queueCapacity",
            self.queue_capacity,
            MAX_SHADOW_QUEUE,
            defaults.queue_capacity,
        );
        let max_batch = bounded(
            "maxBatch",
            self.max_batch,
            MAX_SHADOW_BATCH,
            defaults.max_batch,
        );
        let intra_op_threads = bounded(
            "intraOpThreads",
            self.intra_op_threads,
            MAX_SHADOW_THREADS,
            defaults.intra_op_threads,
        );
        let max_batch_wait = cx
            .duration(&join(path, "maxBatchWait"), &self.max_batch_wait)
            .unwrap_or(defaults.max_batch_wait);
        ShadowRuntime {
            workers,
            queue_capacity,
            max_batch,
            max_batch_wait,
            intra_op_threads,
        }
    }
}

impl RawPreprocessing {
    fn validate(&self, cx: &mut Ctx<'_>, path: &str) -> Option<Preprocessing> {
        let channels = self.channels.unwrap_or(1);
        if channels != 1 && channels != 3 {
            cx.error(
                &join(path, "channels"),
                format!("must be 1 or 3, got {channels}"),
            );
        }
        let dim = |cx: &mut Ctx<'_>, field: &str, v: Option<u32>| match v {
            Some(n) if n > 0 => Some(n),
            Some(_) => {
                cx.error(&join(path, field), "must be > 0");
                None
            }
            None => {
                cx.error(&join(path, field), "is required");
                None
            }
        };
        let width = dim(cx, "width", self.width);
        let height = dim(cx, "height", self.height);
        let crop = self.crop.as_ref().and_then(|c| {
            let w = dim(cx, "crop.width", c.width);
            let h = dim(cx, "crop.height", c.height);
            Some((w?, h?))
        });
        let per_channel = |cx: &mut Ctx<'_>, field: &str, v: &Vec<f64>| {
            if v.len() != channels as usize {
                cx.error(
                    &join(path, field),
                    format!("needs {channels} values (one per channel), got {}", v.len()),
                );
            }
        };
        let normalization = match (&self.mean, &self.std, &self.range) {
            (None, None, None) => Normalization::None,
            (Some(mean), Some(std), None) => {
                per_channel(cx, "mean", mean);
                per_channel(cx, "std", std);
                if std.iter().any(|s| *s <= 0.0) {
                    cx.error(&join(path, "std"), "values must be > 0");
                }
                Normalization::MeanStd {
                    mean: mean.clone(),
                    std: std.clone(),
                }
            }
            (None, None, Some(r)) => match r.as_slice() {
                [min, max] if min < max => Normalization::Range {
                    min: *min,
                    max: *max,
                },
                _ => {
                    cx.error(&join(path, "range"), "must be [min, max] with min < max");
                    Normalization::None
                }
            },
            _ => {
                cx.error(path, "use either mean and std together, or range");
                Normalization::None
            }
        };
        Some(Preprocessing {
            channels,
            width: width?,
            height: height?,
            resize: match self.resize {
                Some(RawResize::Nearest) => Resize::Nearest,
                _ => Resize::Bilinear,
            },
            crop,
            normalization,
            layout: match self.layout {
                Some(RawLayout::Nhwc) => Layout::Nhwc,
                _ => Layout::Nchw,
            },
        })
    }
}
