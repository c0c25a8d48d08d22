//! Reading a topic back to its end, and checking window results against
//! the brute-force expectation.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::{Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::{Result, high_watermarks, partitions, reader};
use crate::fixture::unique;
use crate::poll::Deadline;

/// One record read back.
#[derive(Debug, Clone)]
pub struct OutRecord {
    /// Partition.
    pub partition: i32,
    /// Offset.
    pub offset: i64,
    /// Key, as text.
    pub key: Option<String>,
    /// Value, as text.
    pub value: String,
    /// Headers, as text, in order.
    pub headers: Vec<(String, String)>,
    /// The record's Kafka timestamp (ms), when it has one.
    pub timestamp: Option<i64>,
}

impl OutRecord {
    /// The value of header `name`.
    #[must_use]
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Reads every record of `topic` up to the high watermarks taken when the
/// call starts. With `read_committed`, records of aborted transactions are
/// skipped and an open transaction holds the read back until it ends (so
/// call this once the writers are stopped, or it waits for their
/// transactions to time out).
///
/// # Errors
///
/// When the broker fails or the end is not reached within `timeout`.
pub async fn read_to_end(
    bootstrap: &str,
    topic: &str,
    read_committed: bool,
    timeout: Duration,
) -> Result<Vec<OutRecord>> {
    let high = high_watermarks(bootstrap, topic)?;
    let n = partitions(bootstrap, topic)?;
    let consumer = reader(bootstrap, &unique("e2e-reader"), read_committed)?;
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let target = |p: i32| high[usize::try_from(p).unwrap_or_default()];
    let mut done: BTreeSet<i32> = (0..n).filter(|p| target(*p) == 0).collect();
    let mut out = Vec::new();
    let deadline = Deadline::new(&format!("{topic} read to its end {high:?}"), timeout);
    while done.len() < high.len() {
        match tokio::time::timeout(Duration::from_millis(500), consumer.recv()).await {
            Err(_) => {}
            Ok(Ok(m)) => {
                if m.offset() + 1 >= target(m.partition()) {
                    done.insert(m.partition());
                }
                out.push(OutRecord {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(|k| String::from_utf8_lossy(k).into_owned()),
                    value: String::from_utf8_lossy(m.payload().unwrap_or_default()).into_owned(),
                    headers: m.headers().map_or_else(Vec::new, |hs| {
                        hs.iter()
                            .map(|h| {
                                let v = h.value.map(String::from_utf8_lossy).unwrap_or_default();
                                (h.key.to_owned(), v.into_owned())
                            })
                            .collect()
                    }),
                    timestamp: m.timestamp().to_millis(),
                });
            }
            Ok(Err(KafkaError::PartitionEOF(p))) => {
                // At the end of what is readable; a transaction marker
                // (or an aborted batch) may be the last thing before the
                // high watermark, which no record reaches.
                let pos = consumer.position()?;
                if let Some(Offset::Offset(o)) = pos.find_partition(topic, p).map(|e| e.offset())
                    && o >= target(p)
                {
                    done.insert(p);
                }
            }
            Ok(Err(e)) => return Err(e.into()),
        }
        deadline.check(format!("{} records, partitions done {done:?}", out.len()))?;
    }
    Ok(out)
}

/// One window result of the tests' pipeline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowResult {
    /// The window's user.
    pub user: String,
    /// Window start (epoch ms).
    pub window_start: i64,
    /// Window end (epoch ms).
    pub window_end: i64,
    /// The count.
    pub clicks: u64,
}

impl WindowResult {
    /// Parses `{"windowStart", "windowEnd", "user", "clicks"}`.
    #[must_use]
    pub fn parse(value: &str) -> Option<Self> {
        let v: serde_json::Value = serde_json::from_str(value).ok()?;
        Some(Self {
            user: v["user"].as_str()?.to_owned(),
            window_start: v["windowStart"].as_i64()?,
            window_end: v["windowEnd"].as_i64()?,
            clicks: v["clicks"].as_u64()?,
        })
    }
}

/// How the output compares with the expectation.
#[derive(Debug, Default, Clone)]
pub struct Check {
    /// Expected results.
    pub expected: usize,
    /// Output records read.
    pub records: usize,
    /// Distinct (user, windowStart) seen.
    pub distinct: usize,
    /// Expected but never seen.
    pub missing: Vec<(String, i64)>,
    /// Seen more than once, with how often.
    pub duplicated: Vec<((String, i64), usize)>,
    /// Seen with another count: (key, expected, got).
    pub wrong: Vec<((String, i64), u64, u64)>,
    /// Seen but not expected (or not a window result at all).
    pub unexpected: Vec<String>,
}

impl Check {
    /// Compares `records` (values of the output topic) with `expected`.
    #[must_use]
    pub fn new(expected: &BTreeMap<(String, i64), u64>, records: &[OutRecord]) -> Self {
        let mut seen: BTreeMap<(String, i64), Vec<u64>> = BTreeMap::new();
        let mut check = Self {
            expected: expected.len(),
            records: records.len(),
            ..Self::default()
        };
        for r in records {
            match WindowResult::parse(&r.value) {
                Some(w) if expected.contains_key(&(w.user.clone(), w.window_start)) => {
                    seen.entry((w.user, w.window_start))
                        .or_default()
                        .push(w.clicks);
                }
                _ => check.unexpected.push(r.value.clone()),
            }
        }
        check.distinct = seen.len();
        for (key, want) in expected {
            match seen.get(key) {
                None => check.missing.push(key.clone()),
                Some(counts) => {
                    if counts.len() > 1 {
                        check.duplicated.push((key.clone(), counts.len()));
                    }
                    for got in counts.iter().filter(|c| *c != want) {
                        check.wrong.push((key.clone(), *want, *got));
                    }
                }
            }
        }
        check
    }

    /// Every expected result exactly once with its exact count, nothing else.
    #[must_use]
    pub fn exactly_once(&self) -> bool {
        self.at_least_once() && self.duplicated.is_empty()
    }

    /// Every expected result at least once, every copy with the exact
    /// count, nothing else.
    #[must_use]
    pub fn at_least_once(&self) -> bool {
        self.missing.is_empty() && self.wrong.is_empty() && self.unexpected.is_empty()
    }
}

impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "expected {} results; read {} records, {} distinct; missing {}, duplicated {}, \
             wrong count {}, unexpected {}",
            self.expected,
            self.records,
            self.distinct,
            self.missing.len(),
            self.duplicated.len(),
            self.wrong.len(),
            self.unexpected.len()
        )?;
        let first = |v: String| v.chars().take(400).collect::<String>();
        if !self.missing.is_empty() {
            write!(
                f,
                "\n  missing e.g. {}",
                first(format!("{:?}", self.missing))
            )?;
        }
        if !self.duplicated.is_empty() {
            write!(
                f,
                "\n  duplicated e.g. {}",
                first(format!("{:?}", self.duplicated))
            )?;
        }
        if !self.wrong.is_empty() {
            write!(f, "\n  wrong e.g. {}", first(format!("{:?}", self.wrong)))?;
        }
        if !self.unexpected.is_empty() {
            write!(
                f,
                "\n  unexpected e.g. {}",
                first(format!("{:?}", self.unexpected))
            )?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(user: &str, start: i64, clicks: u64) -> OutRecord {
        OutRecord {
            partition: 0,
            offset: 0,
            key: Some(user.into()),
            value: serde_json::json!({"windowStart": start, "windowEnd": start + 1000,
                "user": user, "clicks": clicks})
            .to_string(),
            headers: Vec::new(),
            timestamp: None,
        }
    }

    fn expected() -> BTreeMap<(String, i64), u64> {
        [(("a".into(), 0), 2), (("b".into(), 1000), 1)].into()
    }

    #[test]
    fn exact_output_passes_both_checks() {
        let c = Check::new(&expected(), &[rec("a", 0, 2), rec("b", 1000, 1)]);
        assert!(c.exactly_once() && c.at_least_once(), "{c}");
    }

    #[test]
    fn a_duplicate_fails_exactly_once_only() {
        let c = Check::new(
            &expected(),
            &[rec("a", 0, 2), rec("a", 0, 2), rec("b", 1000, 1)],
        );
        assert!(!c.exactly_once() && c.at_least_once(), "{c}");
    }

    #[test]
    fn missing_wrong_or_unexpected_results_fail_both() {
        for records in [
            vec![rec("a", 0, 2)],
            vec![rec("a", 0, 3), rec("b", 1000, 1)],
            vec![rec("a", 0, 2), rec("b", 1000, 1), rec("c", 0, 1)],
        ] {
            let c = Check::new(&expected(), &records);
            assert!(!c.at_least_once(), "{c}");
        }
    }
}
