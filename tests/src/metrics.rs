//! The Prometheus text exposition format, read the way a query reads it: every sample line
//! becomes a series (name, labels, value), and a selector such as
//! `istio_requests_total{response_code="503"}` sums the series of that name whose labels
//! include every pair given (other labels may differ), as `sum(metric{...})` would in PromQL.

use std::collections::BTreeMap;
use std::time::Duration;

/// One sample line: `name{label="value",...} value`.
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// The metric name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// The sample value.
    pub value: f64,
}

/// A metric name with the labels a series must carry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selector {
    name: String,
    labels: BTreeMap<String, String>,
}

impl Selector {
    /// Parses `name` or `name{label="value",...}`; panics on anything else (a test bug).
    pub fn parse(text: &str) -> Self {
        let (name, labels, rest) =
            series_head(text).unwrap_or_else(|| panic!("not a metric selector: {text:?}"));
        assert!(rest.trim().is_empty(), "not a metric selector: {text:?}");
        Self { name, labels }
    }

    /// Whether `series` is one of the series this selects.
    pub fn matches(&self, series: &Series) -> bool {
        series.name == self.name
            && self
                .labels
                .iter()
                .all(|(k, v)| series.labels.get(k) == Some(v))
    }
}

/// Every sample of an exposition; comments and blank lines are skipped. Panics on a line that
/// is not a sample, so a malformed exposition fails the test instead of reading as 0.
pub fn parse(text: &str) -> Vec<Series> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|line| {
            let parsed = series_head(line).and_then(|(name, labels, rest)| {
                let value = rest.split_whitespace().next()?;
                Some(Series {
                    name,
                    labels,
                    value: parse_value(value)?,
                })
            });
            parsed.unwrap_or_else(|| panic!("not a Prometheus sample line: {line:?}"))
        })
        .collect()
}

/// The sum of the series `selector` selects in `text` (0 when none does).
pub fn sum(text: &str, selector: &str) -> f64 {
    let selector = Selector::parse(selector);
    parse(text)
        .iter()
        .filter(|s| selector.matches(s))
        .fold(0.0, |total, s| total + s.value)
}

/// How many series `selector` selects in `text`.
pub fn count(text: &str, selector: &str) -> usize {
    let selector = Selector::parse(selector);
    parse(text).iter().filter(|s| selector.matches(s)).count()
}

/// How long [`wait_for_sum`] waits: generous, because it only bounds a failure, and a busy
/// CI machine may take seconds to record what a passing run records at once.
pub const WAIT: Duration = Duration::from_secs(30);

/// Polls `scrape` (one exposition per call, `None` while it cannot be read) until the series
/// `selector` selects sum to at least `expected`, and returns that sum, which may be more: the
/// caller asserts the exact value, so a count that overshoots fails instead of passing. Panics
/// after [`WAIT`] with the last sum. For a metric recorded after the event the test saw (a
/// request is counted once its response is sent; a TCP connection's bytes once it closed),
/// where reading once would race with the proxy.
pub fn wait_for_sum(
    mut scrape: impl FnMut() -> Option<String>,
    selector: &str,
    expected: f64,
) -> f64 {
    let mut last = None;
    let reached = crate::try_wait_for(WAIT, || {
        let total = sum(&scrape()?, selector);
        last = Some(total);
        (total >= expected).then_some(total)
    });
    reached.unwrap_or_else(|| {
        panic!("{selector} never reached {expected} within {WAIT:?}: last read {last:?}")
    })
}

fn parse_value(v: &str) -> Option<f64> {
    match v {
        "+Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => v.parse().ok(),
    }
}

/// Splits `name{labels} rest` into the name, the labels and what follows them.
fn series_head(text: &str) -> Option<(String, BTreeMap<String, String>, &str)> {
    let text = text.trim_start();
    let end = text
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(text.len());
    let (name, mut rest) = text.split_at(end);
    if name.is_empty() {
        return None;
    }
    let mut labels = BTreeMap::new();
    if let Some(body) = rest.strip_prefix('{') {
        rest = body;
        loop {
            rest = rest.trim_start_matches([' ', ',']);
            if let Some(after) = rest.strip_prefix('}') {
                rest = after;
                break;
            }
            let (key, after) = rest.split_once('=')?;
            let (value, after) = quoted(after.trim_start())?;
            labels.insert(key.trim().to_owned(), value);
            rest = after;
        }
    }
    Some((name.to_owned(), labels, rest))
}

/// A double-quoted label value with the format's escapes (`\\`, `\"`, `\n`), and the rest.
fn quoted(text: &str) -> Option<(String, &str)> {
    let body = text.strip_prefix('"')?;
    let mut value = String::new();
    let mut chars = body.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((value, &body[i + 1..])),
            '\\' => match chars.next()?.1 {
                'n' => value.push('\n'),
                other => value.push(other),
            },
            other => value.push(other),
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "# HELP istio_requests_total Requests.\n\
        # TYPE istio_requests_total counter\n\
        istio_requests_total{response_code=\"200\",destination_version=\"v1\"} 7\n\
        istio_requests_total{response_code=\"200\",destination_version=\"v2\"} 3\n\
        istio_requests_total{response_code=\"503\",destination_version=\"v2\",path=\"a,b}\\\"c\"} 2\n\
        augur_config_reloads_total 4\n\
        h_bucket{le=\"+Inf\"} 5\n";

    #[test]
    fn selectors_sum_the_series_carrying_their_labels() {
        assert_eq!(sum(TEXT, "istio_requests_total"), 12.0);
        assert_eq!(
            sum(TEXT, "istio_requests_total{destination_version=\"v2\"}"),
            5.0
        );
        assert_eq!(
            sum(
                TEXT,
                "istio_requests_total{destination_version=\"v2\",response_code=\"200\"}"
            ),
            3.0
        );
        assert_eq!(
            sum(TEXT, "istio_requests_total{response_code=\"404\"}"),
            0.0
        );
        assert_eq!(sum(TEXT, "augur_config_reloads_total"), 4.0);
        assert_eq!(sum(TEXT, "augur_config_reloads"), 0.0, "names match whole");
        assert_eq!(sum(TEXT, "h_bucket{le=\"+Inf\"}"), 5.0);
        assert_eq!(count(TEXT, "istio_requests_total"), 3);
    }

    #[test]
    fn label_values_keep_their_escapes_and_separators() {
        let series = parse(TEXT);
        assert_eq!(series[2].labels["path"], "a,b}\"c");
        assert_eq!(series[2].value, 2.0);
    }

    #[test]
    fn waiting_returns_the_sum_once_it_is_reached() {
        let mut reads = ["", "istio_requests_total{reporter=\"source\"} 1\n", TEXT].into_iter();
        let got = wait_for_sum(
            || reads.next().map(str::to_owned),
            "istio_requests_total{destination_version=\"v2\"}",
            5.0,
        );
        assert_eq!(got, 5.0);
        assert_eq!(
            reads.next(),
            None,
            "read until the sum was there, then stopped"
        );
    }

    #[test]
    fn waiting_returns_an_overshoot_for_the_caller_to_fail_on() {
        assert_eq!(
            wait_for_sum(|| Some(TEXT.to_owned()), "istio_requests_total", 1.0),
            12.0
        );
    }

    #[test]
    #[should_panic(expected = "not a Prometheus sample line")]
    fn a_malformed_line_fails() {
        parse("istio_requests_total{a=\"b\" 1\n");
    }
}
