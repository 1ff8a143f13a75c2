//! TensorBoard's event files: records of `Event` protocol buffers framed as
//! TFRecords. The messages below are the fields polyhead writes of
//! TensorFlow's published definitions (`tensorflow/core/util/event.proto`,
//! `tensorflow/core/framework/summary.proto`), with the same field numbers
//! and types, encoded and decoded by `prost`. A record is the data's length
//! (u64, little-endian), the length's masked CRC-32C, the data, and the
//! data's masked CRC-32C (`crc32c` crate).

use std::io::Write;
use std::path::Path;

use crate::error::{Error, Result};

/// `tensorflow.Event`: a wall time, a step, and what happened.
///
/// ```
/// use polyhead::tensorboard::{Event, What};
/// let event = Event { wall_time: 0.0, step: 0, what: Some(What::FileVersion("brain.Event:2".into())) };
/// let bytes = prost::Message::encode_to_vec(&event);
/// assert_eq!(<Event as prost::Message>::decode(&bytes[..]).unwrap(), event);
/// ```
#[derive(Clone, PartialEq, prost::Message)]
pub struct Event {
    /// Seconds since the Unix epoch.
    #[prost(double, tag = "1")]
    pub wall_time: f64,
    /// The global step (for epoch summaries, the epoch).
    #[prost(int64, tag = "2")]
    pub step: i64,
    /// The file's version (first record) or a summary.
    #[prost(oneof = "What", tags = "3, 5")]
    pub what: Option<What>,
}

/// `Event.what`: the kinds of event polyhead writes.
///
/// ```
/// let what = polyhead::tensorboard::What::FileVersion("brain.Event:2".into());
/// # let _ = what;
/// ```
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum What {
    /// `file_version`, `"brain.Event:2"` in the first record of a file.
    #[prost(string, tag = "3")]
    FileVersion(String),
    /// A summary of values.
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`: tagged values.
///
/// ```
/// use polyhead::tensorboard::{Summary, SummaryValue, Value};
/// let summary = Summary { value: vec![SummaryValue { tag: "epoch_loss".into(), value: Some(Value::SimpleValue(0.5)) }] };
/// assert_eq!(summary.value[0].tag, "epoch_loss");
/// ```
#[derive(Clone, PartialEq, prost::Message)]
pub struct Summary {
    /// The values.
    #[prost(message, repeated, tag = "1")]
    pub value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a tag and a scalar or a histogram.
///
/// ```
/// let v = polyhead::tensorboard::SummaryValue { tag: "epoch_accuracy".into(), value: Some(polyhead::tensorboard::Value::SimpleValue(0.9)) };
/// # let _ = v;
/// ```
#[derive(Clone, PartialEq, prost::Message)]
pub struct SummaryValue {
    /// The name TensorBoard shows (e.g. `epoch_loss`).
    #[prost(string, tag = "1")]
    pub tag: String,
    /// The value.
    #[prost(oneof = "Value", tags = "2, 5")]
    pub value: Option<Value>,
}

/// `Summary.Value.value`: the kinds polyhead writes.
///
/// ```
/// let v = polyhead::tensorboard::Value::Histo(polyhead::tensorboard::Histogram::of(&[1.0, 2.0], 2));
/// # let _ = v;
/// ```
#[derive(Clone, PartialEq, prost::Oneof)]
pub enum Value {
    /// `simple_value`: a scalar (float32 in the format).
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    /// `histo`: a histogram.
    #[prost(message, tag = "5")]
    Histo(Histogram),
}

/// `tensorflow.HistogramProto`: counts in buckets; bucket `i` holds values
/// up to `bucket_limit[i]` (above the previous limit).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Histogram {
    /// The smallest value.
    #[prost(double, tag = "1")]
    pub min: f64,
    /// The largest value.
    #[prost(double, tag = "2")]
    pub max: f64,
    /// How many values.
    #[prost(double, tag = "3")]
    pub num: f64,
    /// Their sum.
    #[prost(double, tag = "4")]
    pub sum: f64,
    /// The sum of their squares.
    #[prost(double, tag = "5")]
    pub sum_squares: f64,
    /// Each bucket's right edge.
    #[prost(double, repeated, tag = "6")]
    pub bucket_limit: Vec<f64>,
    /// Each bucket's count.
    #[prost(double, repeated, tag = "7")]
    pub bucket: Vec<f64>,
}

impl Histogram {
    /// The histogram of `values` (finite ones) in `buckets` equal-width
    /// buckets between their minimum and maximum.
    ///
    /// ```
    /// let h = polyhead::tensorboard::Histogram::of(&[0.0, 1.0, 1.0, 4.0], 4);
    /// assert_eq!((h.min, h.max, h.num, h.sum, h.sum_squares), (0.0, 4.0, 4.0, 6.0, 18.0));
    /// assert_eq!(h.bucket_limit, vec![1.0, 2.0, 3.0, 4.0]);
    /// assert_eq!(h.bucket, vec![3.0, 0.0, 0.0, 1.0]);
    /// ```
    pub fn of(values: &[f64], buckets: usize) -> Self {
        let finite: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
        let buckets = buckets.max(1);
        let min = finite.iter().copied().fold(f64::INFINITY, f64::min);
        let max = finite.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        if finite.is_empty() {
            return Histogram {
                min: 0.0,
                max: 0.0,
                num: 0.0,
                sum: 0.0,
                sum_squares: 0.0,
                bucket_limit: vec![0.0],
                bucket: vec![0.0],
            };
        }
        let width = (max - min) / buckets as f64;
        let bucket_limit: Vec<f64> = if width > 0.0 {
            (1..=buckets)
                .map(|i| {
                    if i == buckets {
                        max
                    } else {
                        min + width * i as f64
                    }
                })
                .collect()
        } else {
            vec![max]
        };
        let last = bucket_limit.len() - 1;
        let mut bucket = vec![0.0; bucket_limit.len()];
        for &v in &finite {
            // The first bucket whose right edge is at or above `v`.
            bucket[bucket_limit.partition_point(|&limit| limit < v).min(last)] += 1.0;
        }
        Histogram {
            min,
            max,
            num: finite.len() as f64,
            sum: finite.iter().sum(),
            sum_squares: finite.iter().map(|v| v * v).sum(),
            bucket_limit,
            bucket,
        }
    }
}

/// The masked CRC-32C TFRecords store (TensorFlow's `crc32c::Mask`).
fn masked_crc(bytes: &[u8]) -> u32 {
    let crc = crc32c::crc32c(bytes);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

/// Appends events to one event file, each as a TFRecord.
///
/// ```
/// use polyhead::tensorboard::{Event, EventWriter, read_events};
/// let path = std::env::temp_dir().join(format!("polyhead-doc-events-{}", std::process::id()));
/// let mut writer = EventWriter::create(&path)?;
/// writer.scalar("epoch_loss", 0, 0.5)?;
/// writer.flush()?;
/// let events = read_events(&path)?;
/// assert_eq!(events.len(), 2); // the file version, then the scalar
/// # std::fs::remove_file(&path)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Debug)]
pub struct EventWriter {
    path: std::path::PathBuf,
    file: std::io::BufWriter<std::fs::File>,
}

impl EventWriter {
    /// Creates `path` (not overwriting an existing file) and writes the
    /// file-version event TensorBoard expects first.
    ///
    /// ```
    /// let err = polyhead::tensorboard::EventWriter::create("no/such/dir/events").unwrap_err();
    /// assert!(err.to_string().starts_with("no/such/dir/events: "));
    /// ```
    pub fn create(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .map_err(|e| Error::File {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        let mut writer = EventWriter {
            path: path.to_path_buf(),
            file: std::io::BufWriter::new(file),
        };
        writer.write(&Event {
            wall_time: now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(writer)
    }

    /// Appends `event`.
    ///
    /// ```
    /// use polyhead::tensorboard::{Event, EventWriter, What};
    /// let path = std::env::temp_dir().join(format!("polyhead-doc-write-{}", std::process::id()));
    /// let mut writer = EventWriter::create(&path)?;
    /// writer.write(&Event { wall_time: 1.0, step: 3, what: None })?;
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn write(&mut self, event: &Event) -> Result<()> {
        let data = prost::Message::encode_to_vec(event);
        let length = (data.len() as u64).to_le_bytes();
        let mut record = Vec::with_capacity(data.len() + 16);
        record.extend_from_slice(&length);
        record.extend_from_slice(&masked_crc(&length).to_le_bytes());
        record.extend_from_slice(&data);
        record.extend_from_slice(&masked_crc(&data).to_le_bytes());
        self.file.write_all(&record).map_err(|e| Error::File {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }

    /// Appends one scalar summary at `step`.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("polyhead-doc-scalar-{}", std::process::id()));
    /// let mut writer = polyhead::tensorboard::EventWriter::create(&path)?;
    /// writer.scalar("epoch_accuracy", 4, 0.75)?;
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn scalar(&mut self, tag: &str, step: i64, value: f64) -> Result<()> {
        self.summary(step, tag, Value::SimpleValue(value as f32))
    }

    /// Appends one histogram summary at `step`.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("polyhead-doc-histo-{}", std::process::id()));
    /// let mut writer = polyhead::tensorboard::EventWriter::create(&path)?;
    /// writer.histogram("dense.kernel/histogram", 0, &[0.5, -0.25, 1.0])?;
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn histogram(&mut self, tag: &str, step: i64, values: &[f64]) -> Result<()> {
        self.summary(step, tag, Value::Histo(Histogram::of(values, 30)))
    }

    fn summary(&mut self, step: i64, tag: &str, value: Value) -> Result<()> {
        self.write(&Event {
            wall_time: now(),
            step,
            what: Some(What::Summary(Summary {
                value: vec![SummaryValue {
                    tag: tag.to_string(),
                    value: Some(value),
                }],
            })),
        })
    }

    /// Writes what is buffered to the file, so that TensorBoard sees it.
    ///
    /// ```
    /// # let path = std::env::temp_dir().join(format!("polyhead-doc-flush-{}", std::process::id()));
    /// let mut writer = polyhead::tensorboard::EventWriter::create(&path)?;
    /// writer.flush()?;
    /// assert!(std::fs::metadata(&path)?.len() > 0);
    /// # std::fs::remove_file(&path)?;
    /// # Ok::<(), Box<dyn std::error::Error>>(())
    /// ```
    pub fn flush(&mut self) -> Result<()> {
        self.file.flush().map_err(|e| Error::File {
            path: self.path.display().to_string(),
            message: e.to_string(),
        })
    }
}

/// Seconds since the Unix epoch, now.
fn now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

/// Every event in the file at `path`, checking each record's two CRCs; a
/// truncated or corrupt record is an error naming the file and the record.
///
/// ```
/// std::fs::write(std::env::temp_dir().join("polyhead-doc-bad-events"), b"12345")?;
/// let err = polyhead::tensorboard::read_events(std::env::temp_dir().join("polyhead-doc-bad-events")).unwrap_err();
/// assert!(err.to_string().ends_with("record 0 is truncated"), "{err}");
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_events(path: impl AsRef<Path>) -> Result<Vec<Event>> {
    let path = path.as_ref();
    let fail = |message: String| Error::File {
        path: path.display().to_string(),
        message,
    };
    let bytes = std::fs::read(path).map_err(|e| fail(e.to_string()))?;
    let mut events = Vec::new();
    let mut at = 0usize;
    while at < bytes.len() {
        let record = events.len();
        let truncated = || fail(format!("record {record} is truncated"));
        let header = bytes.get(at..at + 12).ok_or_else(truncated)?;
        let length_bytes: [u8; 8] = header[..8].try_into().expect("8 bytes");
        let stored = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
        if masked_crc(&length_bytes) != stored {
            return Err(fail(format!(
                "record {record}: the length's CRC does not match"
            )));
        }
        let length = usize::try_from(u64::from_le_bytes(length_bytes)).map_err(|_| truncated())?;
        let end = at
            .checked_add(12)
            .and_then(|v| v.checked_add(length))
            .ok_or_else(truncated)?;
        let data = bytes.get(at + 12..end).ok_or_else(truncated)?;
        let crc = bytes.get(end..end + 4).ok_or_else(truncated)?;
        if masked_crc(data) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(fail(format!(
                "record {record}: the data's CRC does not match"
            )));
        }
        events.push(
            <Event as prost::Message>::decode(data)
                .map_err(|e| fail(format!("record {record}: {e}")))?,
        );
        at = end + 4;
    }
    Ok(events)
}

/// Every scalar in the event files of folder `dir` (a run, e.g.
/// `logs/train`), as `(tag, step, value)` in file and record order.
///
/// ```
/// # let dir = std::env::temp_dir().join(format!("polyhead-doc-scalars-{}", std::process::id()));
/// # std::fs::create_dir_all(&dir)?;
/// let mut writer = polyhead::tensorboard::EventWriter::create(dir.join("events.out.tfevents.1"))?;
/// writer.scalar("epoch_loss", 0, 0.5)?;
/// writer.flush()?;
/// assert_eq!(polyhead::tensorboard::read_scalars(&dir)?, vec![("epoch_loss".to_string(), 0, 0.5)]);
/// # std::fs::remove_dir_all(&dir)?;
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn read_scalars(dir: impl AsRef<Path>) -> Result<Vec<(String, i64, f32)>> {
    let dir = dir.as_ref();
    let mut files: Vec<std::path::PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::File {
            path: dir.display().to_string(),
            message: e.to_string(),
        })?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("events.out.tfevents."))
        })
        .collect();
    files.sort();
    let mut scalars = Vec::new();
    for file in files {
        for event in read_events(&file)? {
            if let Some(What::Summary(summary)) = event.what {
                for v in summary.value {
                    if let Some(Value::SimpleValue(x)) = v.value {
                        scalars.push((v.tag, event.step, x));
                    }
                }
            }
        }
    }
    Ok(scalars)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// CRC-32C's check value, and TensorFlow's mask of it.
    #[test]
    fn the_crc_is_crc32c_masked_as_tensorflow_masks_it() {
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283);
        // ((crc >> 15) | (crc << 17)) + 0xa282ead8, worked by hand.
        assert_eq!(masked_crc(b"123456789"), 0xc78a_b0e5);
    }

    /// The bytes of a scalar event, field by field, as protobuf's wire
    /// format lays them out: the encoding is TensorFlow's, not just
    /// something our own decoder reads back.
    #[test]
    fn a_scalar_event_has_the_published_wire_layout() {
        let event = Event {
            wall_time: 2.0,
            step: 3,
            what: Some(What::Summary(Summary {
                value: vec![SummaryValue {
                    tag: "a".into(),
                    value: Some(Value::SimpleValue(0.5)),
                }],
            })),
        };
        let bytes = prost::Message::encode_to_vec(&event);
        let mut expected = vec![0x09]; // field 1, 64-bit: wall_time
        expected.extend_from_slice(&2.0f64.to_le_bytes());
        expected.extend_from_slice(&[0x10, 3]); // field 2, varint: step
        // field 5, length-delimited: summary { field 1: value { field 1:
        // tag "a", field 2 (32-bit): simple_value } }
        expected.extend_from_slice(&[0x2a, 10, 0x0a, 8, 0x0a, 1, b'a', 0x15]);
        expected.extend_from_slice(&0.5f32.to_le_bytes());
        assert_eq!(bytes, expected);
    }

    #[test]
    fn a_corrupt_record_is_named() {
        let dir = std::env::temp_dir().join(format!("polyhead-events-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("events.out.tfevents.1");
        let mut w = EventWriter::create(&path).unwrap();
        w.scalar("x", 1, 2.0).unwrap();
        w.flush().unwrap();
        assert!(EventWriter::create(&path).is_err(), "never overwrites");
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 6;
        bytes[last] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let err = read_events(&path).unwrap_err().to_string();
        assert!(
            err.ends_with("record 1: the data's CRC does not match"),
            "{err}"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }
}
