//! Peer timings for `cargo xtask bench --peers FILE...`: the JSON that
//! `scripts/peers/peers.py` writes (schema `polyhead-peers/v1`), PyTorch's
//! and JAX's seconds per iteration on the bench's own workloads, by
//! workload, shape and thread count.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::Value;

/// One peer's seconds per iteration.
#[derive(Debug, Clone, PartialEq)]
pub struct Peer {
    /// As the script names it, e.g. `pytorch 2.15.0 (eager)`.
    pub name: String,
    /// When the script ran (its own clock).
    pub date: String,
    times: BTreeMap<(String, String, usize), f64>,
}

impl Peer {
    /// The column heading: the framework's name (`pytorch`, `jax`).
    pub fn short_name(&self) -> &str {
        self.name.split_whitespace().next().unwrap_or(&self.name)
    }

    /// Seconds per iteration of `workload` at `shape` on `threads`, if the
    /// peer was timed there.
    pub fn seconds(&self, workload: &str, shape: &str, threads: usize) -> Option<f64> {
        self.times
            .get(&(workload.to_string(), shape.to_string(), threads))
            .copied()
    }
}

/// Every peer of a peers file.
pub fn load(path: &Path) -> Result<Vec<Peer>, String> {
    let shown = path.display();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{shown}: {e}"))?;
    let json: Value = serde_json::from_str(&text).map_err(|e| format!("{shown}: {e}"))?;
    parse(&json).map_err(|e| format!("{shown}: {e}"))
}

fn parse(json: &Value) -> Result<Vec<Peer>, String> {
    if json["schema"] != "polyhead-peers/v1" {
        return Err(format!(
            "schema {} is not \"polyhead-peers/v1\" (written by scripts/peers/peers.py)",
            json["schema"]
        ));
    }
    let date = json["date"].as_str().unwrap_or("?").to_string();
    let peers = json["peers"].as_array().ok_or("no `peers` array")?;
    peers
        .iter()
        .map(|p| {
            let name = p["peer"].as_str().ok_or("a peer without a name")?;
            let rows = p["rows"]
                .as_array()
                .ok_or(format!("{name}: no `rows` array"))?;
            let mut times = BTreeMap::new();
            for row in rows {
                let key = (
                    row["workload"].as_str().ok_or("a row without `workload`")?,
                    row["shape"].as_str().ok_or("a row without `shape`")?,
                    row["threads"].as_u64().ok_or("a row without `threads`")? as usize,
                );
                let seconds = row["seconds_per_iter"]
                    .as_f64()
                    .filter(|s| s.is_finite() && *s > 0.0)
                    .ok_or(format!("{name} {key:?}: no positive `seconds_per_iter`"))?;
                times.insert((key.0.to_string(), key.1.to_string(), key.2), seconds);
            }
            Ok(Peer {
                name: name.to_string(),
                date: date.clone(),
                times,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_peers_file_gives_seconds_by_workload_shape_and_threads() {
        let json = serde_json::json!({
            "schema": "polyhead-peers/v1", "date": "2026-12-06 03:00:00 UTC",
            "peers": [{"peer": "jax 0.10.2 (jit)", "rows": [
                {"workload": "cnn", "shape": "32x28x28", "threads": 1, "seconds_per_iter": 0.005},
            ]}],
        });
        let peers = parse(&json).unwrap();
        assert_eq!(peers[0].short_name(), "jax");
        assert_eq!(peers[0].seconds("cnn", "32x28x28", 1), Some(0.005));
        assert_eq!(peers[0].seconds("cnn", "32x28x28", 2), None);
    }

    #[test]
    fn a_file_of_another_schema_or_a_bad_time_is_refused() {
        let err = parse(&serde_json::json!({"schema": "x"})).unwrap_err();
        assert!(err.contains("polyhead-peers/v1"), "{err}");
        let json = serde_json::json!({
            "schema": "polyhead-peers/v1",
            "peers": [{"peer": "jax", "rows": [
                {"workload": "cnn", "shape": "32x28x28", "threads": 1, "seconds_per_iter": -1.0},
            ]}],
        });
        let err = parse(&json).unwrap_err();
        assert!(err.contains("no positive `seconds_per_iter`"), "{err}");
    }
}
