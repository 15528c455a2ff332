//! CloudWatch Embedded Metric Format: a recorder that keeps the metrics in a
//! registry, and a [`Flusher`] that writes them as JSON lines, which
//! CloudWatch Logs turns into metrics without any API call.
//!
//! Each line is one EMF document (AWS's specification): an `_aws` member
//! with the timestamp and one metric directive (namespace, dimension sets,
//! at most 100 metric definitions), the dimension values and the metric
//! values at the root. Counters are sent as what they gained since the last
//! line, gauges as their value, histograms as EMF's `Values`/`Counts`
//! distribution (at most 100 bins, log-spaced as the AWS libraries do), so
//! percentiles work in CloudWatch. Metrics with labels get two dimension
//! sets: the service with the labels, and the service alone, so a dashboard
//! can read either.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use metrics::{Counter, Gauge, Histogram, Key, KeyName, Metadata, SharedString, Unit};
use metrics_util::registry::{AtomicStorage, Registry};
use serde_json::{Map, Value, json};

/// Most metric definitions in one directive (EMF's limit).
const MAX_METRICS: usize = 100;
/// Most keys in one dimension set (EMF's limit).
const MAX_DIMENSIONS: usize = 30;
/// Most bins in one distribution (EMF's limit).
const MAX_BINS: usize = 100;

/// Keeps what is recorded until the next flush.
#[derive(Clone)]
pub struct Recorder {
    registry: Arc<Registry<Key, AtomicStorage>>,
    units: Arc<Mutex<HashMap<String, Unit>>>,
}

impl Default for Recorder {
    fn default() -> Self {
        Self { registry: Arc::new(Registry::atomic()), units: Arc::default() }
    }
}

impl Recorder {
    /// The flusher of this recorder's metrics: CloudWatch `namespace`, and
    /// the dimensions every metric carries (`Service`).
    pub fn flusher(&self, namespace: &str, dimensions: Vec<(String, String)>) -> Flusher {
        Flusher { recorder: self.clone(), namespace: namespace.to_owned(), dimensions, counted: HashMap::new() }
    }

    fn describe(&self, key: &KeyName, unit: Option<Unit>) {
        if let Some(unit) = unit {
            self.units.lock().unwrap_or_else(std::sync::PoisonError::into_inner).insert(key.as_str().to_owned(), unit);
        }
    }
}

impl metrics::Recorder for Recorder {
    fn describe_counter(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(&key, unit);
    }

    fn describe_gauge(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(&key, unit);
    }

    fn describe_histogram(&self, key: KeyName, unit: Option<Unit>, _: SharedString) {
        self.describe(&key, unit);
    }

    fn register_counter(&self, key: &Key, _: &Metadata<'_>) -> Counter {
        self.registry.get_or_create_counter(key, |c| Counter::from_arc(c.clone()))
    }

    fn register_gauge(&self, key: &Key, _: &Metadata<'_>) -> Gauge {
        self.registry.get_or_create_gauge(key, |g| Gauge::from_arc(g.clone()))
    }

    fn register_histogram(&self, key: &Key, _: &Metadata<'_>) -> Histogram {
        self.registry.get_or_create_histogram(key, |h| Histogram::from_arc(h.clone()))
    }
}

/// The CloudWatch name of a unit.
fn cloudwatch_unit(unit: Option<&Unit>) -> &'static str {
    match unit {
        Some(Unit::Count) => "Count",
        Some(Unit::Percent) => "Percent",
        Some(Unit::Seconds) => "Seconds",
        Some(Unit::Milliseconds) => "Milliseconds",
        Some(Unit::Microseconds) => "Microseconds",
        Some(Unit::Bytes) => "Bytes",
        Some(Unit::Kibibytes) => "Kilobytes",
        Some(Unit::Mebibytes) => "Megabytes",
        Some(Unit::Gibibytes) => "Gigabytes",
        Some(Unit::CountPerSecond) => "Count/Second",
        Some(Unit::BitsPerSecond) => "Bits/Second",
        _ => "None",
    }
}

/// An EMF distribution of `samples`: log-spaced bins (10 % wide, doubled
/// until at most 100 remain), with their counts, min, max, count and sum.
fn distribution(samples: &[f64]) -> Value {
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0);
    for &v in samples {
        min = min.min(v);
        max = max.max(v);
        sum += v;
    }
    let mut epsilon = 0.1f64;
    loop {
        let width = (1.0 + epsilon).ln();
        let mut bins: BTreeMap<i64, u64> = BTreeMap::new();
        for &v in samples {
            let index = if v > 0.0 { (v.ln() / width).floor() as i64 } else { i64::MIN };
            *bins.entry(index).or_default() += 1;
        }
        if bins.len() <= MAX_BINS {
            let values: Vec<f64> = bins.keys().map(|&i| if i == i64::MIN { 0.0 } else { ((i as f64 + 0.5) * width).exp() }).collect();
            let counts: Vec<u64> = bins.values().copied().collect();
            return json!({"Values": values, "Counts": counts, "Min": min, "Max": max, "Count": samples.len(), "Sum": sum});
        }
        epsilon *= 2.0;
    }
}

/// Writes a recorder's metrics as EMF lines.
pub struct Flusher {
    recorder: Recorder,
    namespace: String,
    dimensions: Vec<(String, String)>,
    /// Each counter's value at the last flush.
    counted: HashMap<Key, u64>,
}

/// One metric of a flush: name, unit, value.
type Entry = (String, &'static str, Value);

impl Flusher {
    /// Writes one line per label set (and per 100 metrics): counters as
    /// what they gained, gauges as they are, histograms drained.
    ///
    /// # Errors
    /// When writing fails.
    pub fn flush(&mut self, mut out: impl Write) -> std::io::Result<()> {
        let units = self.recorder.units.lock().unwrap_or_else(std::sync::PoisonError::into_inner).clone();
        let unit = |key: &Key| cloudwatch_unit(units.get(key.name()));
        let labels = |key: &Key| {
            let mut labels: Vec<(String, String)> = key.labels().map(|l| (l.key().to_owned(), l.value().to_owned())).collect();
            labels.sort();
            labels
        };
        let mut groups: BTreeMap<Vec<(String, String)>, Vec<Entry>> = BTreeMap::new();
        let counted = &mut self.counted;
        self.recorder.registry.visit_counters(|key, counter| {
            let now = counter.load(Ordering::Relaxed);
            let before = counted.insert(key.clone(), now).unwrap_or(0);
            if now > before {
                groups.entry(labels(key)).or_default().push((key.name().to_owned(), unit(key), json!(now - before)));
            }
        });
        self.recorder.registry.visit_gauges(|key, gauge| {
            let value = f64::from_bits(gauge.load(Ordering::Relaxed));
            groups.entry(labels(key)).or_default().push((key.name().to_owned(), unit(key), json!(value)));
        });
        self.recorder.registry.visit_histograms(|key, histogram| {
            let mut samples = Vec::new();
            histogram.clear_with(|chunk| samples.extend_from_slice(chunk));
            if !samples.is_empty() {
                groups.entry(labels(key)).or_default().push((key.name().to_owned(), unit(key), distribution(&samples)));
            }
        });
        let timestamp = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64);
        for (labels, metrics) in groups {
            let mut dimensions = self.dimensions.clone();
            dimensions.extend(labels);
            dimensions.truncate(MAX_DIMENSIONS);
            let all: Vec<&str> = dimensions.iter().map(|(k, _)| k.as_str()).collect();
            let service: Vec<&str> = self.dimensions.iter().map(|(k, _)| k.as_str()).collect();
            let sets = if all.len() > service.len() { json!([all, service]) } else { json!([all]) };
            for chunk in metrics.chunks(MAX_METRICS) {
                let mut root = Map::new();
                for (key, value) in &dimensions {
                    root.insert(key.clone(), json!(value));
                }
                for (name, _, value) in chunk {
                    root.insert(name.clone(), value.clone());
                }
                let definitions: Vec<Value> = chunk.iter().map(|(name, unit, _)| json!({"Name": name, "Unit": unit})).collect();
                root.insert(
                    "_aws".to_owned(),
                    json!({
                        "Timestamp": timestamp,
                        "CloudWatchMetrics": [{"Namespace": self.namespace, "Dimensions": sets, "Metrics": definitions}],
                    }),
                );
                // The whole line in one write: a line written in pieces
                // can be torn by a log line written meanwhile.
                let mut line = serde_json::to_vec(&Value::Object(root))?;
                line.push(b'\n');
                out.write_all(&line)?;
            }
        }
        out.flush()
    }
}

/// Where EMF lines go: stdout, or a file of their own (opened to append),
/// each line in one `write(2)`. Appends of one write each to a regular file
/// never interleave, so a line stays whole beside anything else written to
/// the same file; stdout, when it is a pipe, keeps that promise only for
/// lines up to `PIPE_BUF` (4 KiB), hence the file.
#[derive(Debug)]
pub enum Sink {
    Stdout,
    File(std::fs::File),
}

impl Sink {
    /// A sink appending to `path` (created if missing).
    ///
    /// # Errors
    /// When the file cannot be opened.
    pub fn file(path: &std::path::Path) -> std::io::Result<Self> {
        std::fs::OpenOptions::new().create(true).append(true).open(path).map(Self::File)
    }

    /// Writes one round of lines (see [`Flusher::flush`]), each whole.
    ///
    /// # Errors
    /// When writing fails.
    pub fn write(&self, flusher: &mut Flusher) -> std::io::Result<()> {
        match self {
            // `Stdout` buffers 1 KiB: a line written whole in one call
            // leaves it in one write, not in 1 KiB pieces.
            Self::Stdout => flusher.flush(std::io::stdout().lock()),
            Self::File(file) => flusher.flush(WholeLines(file)),
        }
    }
}

/// A file written without a buffer: each `write_all` of a line is one
/// `write(2)` (a regular file takes it whole).
struct WholeLines<'a>(&'a std::fs::File);

impl Write for WholeLines<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        (&mut &*self.0).write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use metrics::Recorder as _;

    use super::*;

    fn record(recorder: &Recorder) {
        let metadata = metrics::Metadata::new("test", metrics::Level::INFO, None);
        recorder.describe_counter("requests".into(), Some(Unit::Count), "".into());
        recorder.describe_histogram("latency".into(), Some(Unit::Milliseconds), "".into());
        let route = Key::from_parts("requests", vec![metrics::Label::new("route", "/a"), metrics::Label::new("status", "200")]);
        recorder.register_counter(&route, &metadata).increment(3);
        let latency = Key::from_parts("latency", vec![metrics::Label::new("route", "/a")]);
        for ms in 1..=500 {
            recorder.register_histogram(&latency, &metadata).record(f64::from(ms));
        }
        recorder.register_gauge(&Key::from_name("memory"), &metadata).set(42.0);
    }

    #[test]
    fn large_lines_from_many_threads_beside_log_lines_stay_whole() {
        let dir = std::env::temp_dir().join(format!("anb-emf-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("shared.log");
        let _ = std::fs::remove_file(&path);
        let sink = Arc::new(Sink::file(&path).unwrap());
        let (rounds, metrics_per_line) = (50, 90);
        let emf_threads: Vec<_> = (0..4)
            .map(|thread| {
                let sink = sink.clone();
                std::thread::spawn(move || {
                    let recorder = Recorder::default();
                    let mut flusher = recorder.flusher("ANB/Backend", vec![("Service".into(), format!("anb-web-{thread}"))]);
                    let metadata = metrics::Metadata::new("test", metrics::Level::INFO, None);
                    for round in 0..rounds {
                        for n in 0..metrics_per_line {
                            let key =
                                Key::from_parts(format!("a_rather_long_metric_name_{n:03}"), vec![metrics::Label::new("route", "/api/x")]);
                            recorder.register_gauge(&key, &metadata).set(f64::from(round));
                        }
                        sink.write(&mut flusher).unwrap();
                    }
                })
            })
            .collect();
        // Log lines as tracing writes them: each formatted, then written in
        // one call, through a descriptor of its own (stderr to the same file).
        let log_threads: Vec<_> = (0..4)
            .map(|thread| {
                let path = path.clone();
                std::thread::spawn(move || {
                    let mut file = std::fs::OpenOptions::new().append(true).open(&path).unwrap();
                    for n in 0..2000 {
                        let line = format!("{{\"level\":\"INFO\",\"message\":\"log {thread} {n} {}\"}}\n", "x".repeat(n % 300));
                        file.write_all(line.as_bytes()).unwrap();
                    }
                })
            })
            .collect();
        for thread in emf_threads.into_iter().chain(log_threads) {
            thread.join().unwrap();
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let (mut emf, mut logs) = (0, 0);
        for line in text.lines() {
            let value: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("a torn line ({e}): {line:.200}"));
            if value.get("_aws").is_some() {
                assert!(line.len() > 4096, "the lines are past PIPE_BUF: {}", line.len());
                emf += 1;
            } else {
                logs += 1;
            }
        }
        assert_eq!((emf, logs), (4 * rounds, 4 * 2000));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn flushed(flusher: &mut Flusher) -> Vec<Value> {
        let mut out = Vec::new();
        flusher.flush(&mut out).unwrap();
        String::from_utf8(out).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect()
    }

    #[test]
    fn lines_follow_the_emf_specification() {
        let recorder = Recorder::default();
        let mut flusher = recorder.flusher("ANB/Backend", vec![("Service".into(), "anb-web".into())]);
        record(&recorder);
        let lines = flushed(&mut flusher);
        assert_eq!(lines.len(), 3, "one line per label set: {lines:?}");
        for line in &lines {
            let directive = &line["_aws"]["CloudWatchMetrics"][0];
            assert!(line["_aws"]["Timestamp"].as_u64().unwrap() > 1_700_000_000_000);
            assert_eq!(directive["Namespace"], "ANB/Backend");
            for set in directive["Dimensions"].as_array().unwrap() {
                assert!(set.as_array().unwrap().len() <= MAX_DIMENSIONS);
                for key in set.as_array().unwrap() {
                    assert!(line[key.as_str().unwrap()].is_string(), "every dimension has its value: {line}");
                }
            }
            for metric in directive["Metrics"].as_array().unwrap() {
                assert!(!line[metric["Name"].as_str().unwrap()].is_null(), "every metric has its value: {line}");
            }
        }
        let requests = lines.iter().find(|l| !l["requests"].is_null()).unwrap();
        assert_eq!(requests["requests"], 3);
        assert_eq!(requests["_aws"]["CloudWatchMetrics"][0]["Dimensions"], json!([["Service", "route", "status"], ["Service"]]));
        assert_eq!(requests["_aws"]["CloudWatchMetrics"][0]["Metrics"], json!([{"Name": "requests", "Unit": "Count"}]));
        let latency = &lines.iter().find(|l| !l["latency"].is_null()).unwrap()["latency"];
        assert!(latency["Values"].as_array().unwrap().len() <= MAX_BINS);
        assert_eq!(latency["Counts"].as_array().unwrap().iter().map(|c| c.as_u64().unwrap()).sum::<u64>(), 500);
        assert_eq!((latency["Min"].as_f64(), latency["Max"].as_f64(), latency["Count"].as_u64()), (Some(1.0), Some(500.0), Some(500)));
        assert_eq!(latency["Sum"].as_f64(), Some(125_250.0));

        // Counters send what they gained; drained histograms send nothing.
        let again = flushed(&mut flusher);
        assert!(again.iter().all(|l| l["requests"].is_null() && l["latency"].is_null()), "{again:?}");
        assert!(again.iter().any(|l| l["memory"] == 42.0), "gauges are sent as they are");
    }

    #[test]
    fn a_wide_distribution_keeps_within_a_hundred_bins() {
        let samples: Vec<f64> = (0..100_000).map(|i| f64::from(i) * 0.37).collect();
        let value = distribution(&samples);
        assert!(value["Values"].as_array().unwrap().len() <= MAX_BINS);
        assert_eq!(value["Count"], 100_000);
    }
}
