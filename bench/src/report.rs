//! Results: one [`Metric`] per scenario, measurement and stack, and the side-by-side table
//! (QuickChat, the peer, and how many times better QuickChat is).

use std::fmt::Write as _;

use serde::Serialize;

#[derive(Debug, Clone, Copy, Serialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum Better {
    Higher,
    Lower,
}

/// One measurement of one stack.
#[derive(Debug, Clone, Serialize)]
pub struct Metric {
    pub scenario: &'static str,
    pub what: String,
    /// `None`: not reached (e.g. no sweep step stayed under the bound).
    pub value: Option<f64>,
    pub unit: &'static str,
    pub better: Better,
}

impl Metric {
    pub fn new(
        scenario: &'static str,
        what: String,
        value: Option<f64>,
        unit: &'static str,
        better: Better,
    ) -> Self {
        Self {
            scenario,
            what,
            value,
            unit,
            better,
        }
    }
}

/// A table row: one measurement, both stacks.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    pub scenario: &'static str,
    pub what: String,
    pub unit: &'static str,
    pub better: Better,
    pub quickchat: Option<f64>,
    pub peer: Option<f64>,
    /// How many times better QuickChat is (above 1) or worse (below 1).
    pub advantage: Option<f64>,
}

/// Rows from both stacks' metrics, in the order they were measured; a scenario that failed
/// on one stack is named in `failures`.
pub fn rows(quickchat: &[Metric], peer: &[Metric]) -> Vec<Row> {
    let mut rows: Vec<Row> = Vec::new();
    for (m, is_qc) in quickchat
        .iter()
        .map(|m| (m, true))
        .chain(peer.iter().map(|m| (m, false)))
    {
        let row = match rows
            .iter_mut()
            .find(|r| r.scenario == m.scenario && r.what == m.what)
        {
            Some(row) => row,
            None => {
                rows.push(Row {
                    scenario: m.scenario,
                    what: m.what.clone(),
                    unit: m.unit,
                    better: m.better,
                    quickchat: None,
                    peer: None,
                    advantage: None,
                });
                rows.last_mut().expect("just pushed")
            }
        };
        if is_qc {
            row.quickchat = m.value;
        } else {
            row.peer = m.value;
        }
    }
    for row in &mut rows {
        row.advantage = match (row.quickchat, row.peer) {
            (Some(q), Some(p)) if q > 0.0 && p > 0.0 => Some(match row.better {
                Better::Higher => q / p,
                Better::Lower => p / q,
            }),
            _ => None,
        };
    }
    rows
}

fn value(v: Option<f64>, unit: &str) -> String {
    match v {
        None => "—".to_owned(),
        Some(v) => {
            let n = if v.abs() >= 100.0 {
                group_thousands(v.round() as i64)
            } else if v.abs() >= 10.0 {
                format!("{v:.1}")
            } else {
                format!("{v:.2}")
            };
            if unit.starts_with('/') || unit == "%" {
                format!("{n}{unit}")
            } else {
                format!("{n} {unit}")
            }
        }
    }
}

fn group_thousands(n: i64) -> String {
    let digits = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(' ');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// The side-by-side table, as Markdown (it reads as well in a terminal).
pub fn table(rows: &[Row], failures: &[String]) -> String {
    let mut cells: Vec<[String; 5]> = vec![[
        "scenario".into(),
        "measurement".into(),
        "QuickChat".into(),
        "peer (Node.js)".into(),
        "QuickChat vs peer".into(),
    ]];
    for r in rows {
        let advantage = match r.advantage {
            None => "—".to_owned(),
            Some(a) if a >= 1.0 => format!("{a:.2}× better"),
            Some(a) => format!("{:.2}× worse", 1.0 / a),
        };
        cells.push([
            r.scenario.to_owned(),
            r.what.clone(),
            value(r.quickchat, r.unit),
            value(r.peer, r.unit),
            advantage,
        ]);
    }
    let widths: Vec<usize> = (0..5)
        .map(|c| {
            cells
                .iter()
                .map(|row| row[c].chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    let mut out = String::new();
    for (i, row) in cells.iter().enumerate() {
        out.push('|');
        for (c, cell) in row.iter().enumerate() {
            let pad = widths[c] - cell.chars().count();
            if c >= 2 {
                let _ = write!(out, " {}{cell} |", " ".repeat(pad));
            } else {
                let _ = write!(out, " {cell}{} |", " ".repeat(pad));
            }
        }
        out.push('\n');
        if i == 0 {
            out.push('|');
            for (c, w) in widths.iter().enumerate() {
                let dashes = "-".repeat(*w);
                if c >= 2 {
                    let _ = write!(out, "-{dashes}:|");
                } else {
                    let _ = write!(out, "-{dashes}-|");
                }
            }
            out.push('\n');
        }
    }
    for f in failures {
        let _ = writeln!(out, "\nfailed: {f}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_puts_both_stacks_side_by_side_with_the_ratio() {
        let qc = [
            Metric::new(
                "fanout",
                "deliveries/s".into(),
                Some(500_000.0),
                "/s",
                Better::Higher,
            ),
            Metric::new(
                "fanout",
                "latency p99".into(),
                Some(5.0),
                "ms",
                Better::Lower,
            ),
        ];
        let peer = [
            Metric::new(
                "fanout",
                "deliveries/s".into(),
                Some(100_000.0),
                "/s",
                Better::Higher,
            ),
            Metric::new(
                "fanout",
                "latency p99".into(),
                Some(10.0),
                "ms",
                Better::Lower,
            ),
        ];
        let rows = rows(&qc, &peer);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].advantage, Some(5.0));
        assert_eq!(rows[1].advantage, Some(2.0));
        let table = table(&rows, &[]);
        assert!(table.contains("500 000/s"), "{table}");
        assert!(table.contains("5.00× better"), "{table}");
        assert!(table.contains("10.0 ms"), "{table}");
    }
}
