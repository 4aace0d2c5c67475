//! The bench's report: results.csv, summary.json, report.md, report.html and chamfer.png from
//! the objects' rows, and the merge of sharded runs' outputs.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use image::DynamicImage;
use orbitmesh_pipeline::{encode_png, save, save_json};
use serde_json::{Value, json};

use crate::chart::chamfer_chart;
use crate::html;
use crate::{BenchError, Result};

/// The SV3D paper's Chamfer figures on GSO, drawn beside ours (not measured here).
const PAPER_CHAMFER: [(&str, f64); 3] = [
    ("SV3D 3D stage, GT renders", 0.021),
    ("SV3D_p", 0.024),
    ("EscherNet", 0.042),
];

/// One object's line of the report: its metrics ([`COLUMNS`] and seconds), or why it failed.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    pub name: String,
    pub values: std::result::Result<BTreeMap<String, f64>, String>,
}

impl Row {
    /// The row of an object's metrics.json, or of its error.
    pub(crate) fn new(name: &str, metrics: std::result::Result<Value, String>) -> Row {
        let values = metrics.map(|m| {
            COLUMNS
                .iter()
                .chain(&["seconds"])
                .filter_map(|c| Some((c.to_string(), m[c].as_f64()?)))
                .collect()
        });
        Row {
            name: name.to_string(),
            values,
        }
    }
}

/// A report's headline figures.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    pub objects: usize,
    pub failed: usize,
    pub mean_chamfer: f64,
    pub mean_iou: f64,
    /// report.md.
    pub report: PathBuf,
}

pub const COLUMNS: [&str; 7] = [
    "chamfer",
    "chamfer_l2_squared",
    "fscore@0.01",
    "fscore@0.02",
    "fscore@0.05",
    "volume_iou",
    "normal_consistency",
];

/// Reads a bench output's results.csv back into rows.
fn read_rows(dir: &Path) -> Result<Vec<Row>> {
    let path = dir.join("results.csv");
    let mut reader = csv::Reader::from_path(&path).map_err(|e| {
        BenchError::input(
            &path,
            format!("cannot read (is this a bench output?) ({e})"),
        )
    })?;
    let bad = |e: csv::Error| BenchError::input(&path, format!("bad results table ({e})"));
    let header: Vec<String> = reader
        .headers()
        .map_err(bad)?
        .iter()
        .map(str::to_string)
        .collect();
    let mut rows = Vec::new();
    for record in reader.records() {
        let record = record.map_err(bad)?;
        let field = |name: &str| {
            header
                .iter()
                .position(|h| h == name)
                .and_then(|i| record.get(i))
        };
        let name = field("object").unwrap_or_default().to_string();
        let error = field("error").unwrap_or_default();
        let values = if error.is_empty() {
            Ok(COLUMNS
                .iter()
                .chain(&["seconds"])
                .filter_map(|c| Some((c.to_string(), field(c)?.parse::<f64>().ok()?)))
                .collect())
        } else {
            Err(error.to_string())
        };
        rows.push(Row { name, values });
    }
    Ok(rows)
}

/// Joins the outputs of sharded runs (`dirs`) into one report in `out`.
pub fn merge(dirs: &[PathBuf], out: &Path) -> Result<Summary> {
    let mut rows = Vec::new();
    let mut mode: Option<String> = None;
    for dir in dirs {
        rows.extend(read_rows(dir)?);
        let path = dir.join("summary.json");
        let summary: Value = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or_else(|| BenchError::input(&path, "missing or unreadable"))?;
        let this = summary["orbit"].as_str().unwrap_or_default().to_string();
        match &mode {
            Some(m) if *m != this => {
                return Err(BenchError::input(
                    dir,
                    format!("its orbit mode ({this}) differs from the other shards' ({m})"),
                ));
            }
            _ => mode = Some(this),
        }
    }
    rows.sort_by(|a, b| a.name.cmp(&b.name));
    orbitmesh_pipeline::make_folder(out)?;
    write_report(out, &rows, mode.as_deref().unwrap_or_default())
}

/// results.csv, summary.json, report.md and chamfer.png for `rows`.
pub(crate) fn write_report(out: &Path, rows: &[Row], mode: &str) -> Result<Summary> {
    let results = out.join("results.csv");
    let table_error = |e: &dyn std::fmt::Display| BenchError::input(&results, e.to_string());
    let mut table = csv::Writer::from_writer(Vec::new());
    let mut header = vec!["object"];
    header.extend(COLUMNS);
    header.extend(["seconds", "error"]);
    table.write_record(&header).map_err(|e| table_error(&e))?;
    for row in rows {
        let mut record = vec![row.name.clone()];
        match &row.values {
            Ok(m) => {
                record.extend(
                    COLUMNS
                        .iter()
                        .chain(&["seconds"])
                        .map(|c| m.get(*c).map_or(String::new(), |v| v.to_string())),
                );
                record.push(String::new());
            }
            Err(e) => {
                record.extend(std::iter::repeat_n(String::new(), COLUMNS.len() + 1));
                record.push(e.clone());
            }
        }
        table.write_record(&record).map_err(|e| table_error(&e))?;
    }
    save(&results, &table.into_inner().map_err(|e| table_error(&e))?)?;

    let ok: Vec<&BTreeMap<String, f64>> =
        rows.iter().filter_map(|r| r.values.as_ref().ok()).collect();
    let stats = |c: &str| {
        let mut v: Vec<f64> = ok.iter().filter_map(|m| m.get(c).copied()).collect();
        v.sort_by(f64::total_cmp);
        let mean = if v.is_empty() {
            f64::NAN
        } else {
            v.iter().sum::<f64>() / v.len() as f64
        };
        let median = v.get(v.len() / 2).copied().unwrap_or(f64::NAN);
        json!({ "mean": mean, "median": median })
    };
    let metrics: serde_json::Map<String, Value> =
        COLUMNS.iter().map(|c| (c.to_string(), stats(c))).collect();
    let summary = json!({
        "orbit": mode,
        "objects": rows.len(), "failed": rows.len() - ok.len(), "metrics": metrics,
    });
    save_json(&out.join("summary.json"), &summary)?;

    let value = |m: &BTreeMap<String, f64>, c: &str| m.get(c).copied().unwrap_or(f64::NAN);
    let mut md = format!(
        "# orbitmesh bench\n\nOrbit: {mode}, then the DMTet fine stage \
         unless --fine-steps 0 (each object's metrics.json says which). Metrics: the gso \
         protocol of DESIGN.md; a generated orbit's mesh is measured where the conditioning \
         camera sees the object (prepare's crop and zoom undone).\n\n\
         ![per-object Chamfer](chamfer.png)\n\n\
         | object | Chamfer ↓ | F@0.01 ↑ | F@0.05 ↑ | volume IoU ↑ | seconds |\n|---|---|---|---|---|---|\n"
    );
    for row in rows {
        let name = &row.name;
        match &row.values {
            Ok(m) => {
                md += &format!(
                    "| {name} | {:.4} | {:.3} | {:.3} | {:.3} | {:.1} |\n",
                    value(m, "chamfer"),
                    value(m, "fscore@0.01"),
                    value(m, "fscore@0.05"),
                    value(m, "volume_iou"),
                    value(m, "seconds"),
                )
            }
            Err(e) => md += &format!("| {name} | failed: {e} | | | | |\n"),
        }
    }
    let mean = |c: &str| summary["metrics"][c]["mean"].as_f64().unwrap_or(f64::NAN);
    md += &format!(
        "| **mean** | **{:.4}** | {:.3} | {:.3} | **{:.3}** | |\n\n\
         Reference rows on GSO from the SV3D paper (not measured here): SV3D_p Chamfer 0.024, IoU \
         0.614; SV3D's 3D stage on ground-truth renders 0.021 / 0.689; EscherNet Chamfer 0.042.\n",
        mean("chamfer"),
        mean("fscore@0.01"),
        mean("fscore@0.05"),
        mean("volume_iou")
    );
    save(&out.join("report.md"), md.as_bytes())?;
    let cell =
        |m: &BTreeMap<String, f64>, c: &str, digits: usize| format!("{:.*}", digits, value(m, c));
    let mut table = String::from(
        "<table><tr><th>object</th><th>Chamfer ↓</th><th>F@0.01 ↑</th><th>F@0.05 ↑</th>\
         <th>volume IoU ↑</th><th>seconds</th></tr>\n",
    );
    for row in rows {
        let name = html::escape(&row.name);
        table += &match &row.values {
            Ok(m) => format!(
                "<tr><td>{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>\n",
                cell(m, "chamfer", 4),
                cell(m, "fscore@0.01", 3),
                cell(m, "fscore@0.05", 3),
                cell(m, "volume_iou", 3),
                cell(m, "seconds", 1),
            ),
            Err(e) => format!(
                "<tr><td>{name}</td><td colspan=\"5\">failed: {}</td></tr>\n",
                html::escape(e)
            ),
        };
    }
    table += &format!(
        "<tr><th>mean</th><th>{:.4}</th><th>{:.3}</th><th>{:.3}</th><th>{:.3}</th><th></th></tr></table>",
        mean("chamfer"),
        mean("fscore@0.01"),
        mean("fscore@0.05"),
        mean("volume_iou")
    );
    html::write_html(out, rows, mode, &table)?;
    let chamfers: Vec<(String, Option<f64>)> = rows
        .iter()
        .map(|r| {
            (
                r.name.clone(),
                r.values
                    .as_ref()
                    .ok()
                    .and_then(|m| m.get("chamfer").copied()),
            )
        })
        .collect();
    let chart = chamfer_chart(&chamfers, &PAPER_CHAMFER)?;
    save(
        &out.join("chamfer.png"),
        &encode_png(&DynamicImage::ImageRgb8(chart).into_rgba8())?,
    )?;
    Ok(Summary {
        objects: rows.len(),
        failed: rows.len() - ok.len(),
        mean_chamfer: mean("chamfer"),
        mean_iou: mean("volume_iou"),
        report: out.join("report.md"),
    })
}
