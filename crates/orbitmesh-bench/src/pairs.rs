//! Evaluation of meshes against scans one pair at a time: one pair, or a CSV of `pred,gt` rows
//! measured into one CSV of results.

use std::path::{Path, PathBuf};

use orbitmesh_geom::{
    EvalOptions, EvalReport, Metrics, TriMesh, UpAxis, evaluate_with, read_mesh, sample_surface,
};
use orbitmesh_pipeline::{one_line, save};
use orbitmesh_render::{DeviceChoice, open_rasterizer, sample_visible};

use crate::{BenchError, Result};

/// How a pair is measured.
#[derive(Debug, Clone)]
pub struct PairEval {
    pub pred_up: UpAxis,
    pub gt_up: UpAxis,
    pub options: EvalOptions,
    /// Sample only the surface seen in depth renders from this rasterizer, instead of
    /// `options.sampling`.
    pub visible: Option<DeviceChoice>,
}

impl PairEval {
    /// Measures `pred` against `gt` (both read and turned Z up); their warnings go to `warn`.
    pub fn evaluate(
        &self,
        pred: &Path,
        gt: &Path,
        warn: &(dyn Fn(&str) + Sync),
    ) -> Result<EvalReport> {
        let load = |path: &Path, up: UpAxis| -> Result<TriMesh> {
            let file = read_mesh(path)?;
            for w in &file.warnings {
                warn(w);
            }
            let mut mesh = file.mesh;
            mesh.transform(&up.to_z_up());
            Ok(mesh)
        };
        let (pred, gt) = rayon::join(|| load(pred, self.pred_up), || load(gt, self.gt_up));
        let (pred, gt, opts) = (pred?, gt?, &self.options);
        if let Some(device) = self.visible {
            let rasterizer = open_rasterizer(device)?;
            return Ok(evaluate_with(&pred, &gt, opts, |mesh, count, seed| {
                sample_visible(mesh, count, seed, &rasterizer)
            })?);
        }
        evaluate_with(&pred, &gt, opts, |mesh, count, seed| {
            Ok(sample_surface(mesh, count, seed, opts.sampling))
        })
    }
}

/// Reads `pred,gt` rows; a first row of exactly `pred,gt` is a header. Paths are relative to the
/// CSV's folder.
pub fn read_pairs(csv_path: &Path) -> Result<Vec<(PathBuf, PathBuf)>> {
    let base = csv_path.parent().unwrap_or(Path::new("."));
    let bad = |message: String| BenchError::input(csv_path, message);
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .trim(csv::Trim::All)
        .comment(Some(b'#'))
        .from_path(csv_path)
        .map_err(|e| bad(format!("cannot read ({e})")))?;
    let mut pairs = Vec::new();
    for (i, record) in reader.records().enumerate() {
        let record = record.map_err(|e| bad(format!("row {}: {e}", i + 1)))?;
        if i == 0 && record.len() == 2 && &record[0] == "pred" && &record[1] == "gt" {
            continue;
        }
        if record.len() != 2 {
            return Err(bad(format!(
                "row {} has {} fields, expected pred,gt",
                i + 1,
                record.len()
            )));
        }
        pairs.push((base.join(&record[0]), base.join(&record[1])));
    }
    if pairs.is_empty() {
        return Err(bad("no pred,gt rows".into()));
    }
    Ok(pairs)
}

/// Measures each pair and writes one row per pair to `out` (the metrics, with `icp_` columns
/// when aligning, or the error), reporting each pair to `on_pair` with its error if it failed.
/// Returns how many failed.
pub fn evaluate_pairs(
    pairs: &[(PathBuf, PathBuf)],
    eval: &PairEval,
    out: &Path,
    warn: &(dyn Fn(&str) + Sync),
    on_pair: &dyn Fn(&Path, Option<&str>),
) -> Result<usize> {
    let metric_columns = |prefix: &str| {
        let mut c = vec![
            format!("{prefix}chamfer"),
            format!("{prefix}chamfer_l2_squared"),
        ];
        c.extend(
            eval.options
                .taus
                .iter()
                .map(|t| format!("{prefix}fscore@{t}")),
        );
        c.extend([
            format!("{prefix}volume_iou"),
            format!("{prefix}normal_consistency"),
        ]);
        c
    };
    let mut header = vec!["pred".to_string(), "gt".to_string()];
    header.extend(metric_columns(""));
    if eval.options.align == orbitmesh_geom::Align::Icp {
        header.extend(metric_columns("icp_"));
        header.push("icp_scale".into());
    }
    header.push("error".into());
    let table_error = |e: &dyn std::fmt::Display| BenchError::input(out, e.to_string());
    let mut table = csv::Writer::from_writer(Vec::new());
    table.write_record(&header).map_err(|e| table_error(&e))?;
    let values = |m: &Metrics| {
        let mut v = vec![
            m.points.chamfer.to_string(),
            m.points.chamfer_l2_squared.to_string(),
        ];
        v.extend(m.points.fscores.iter().map(|f| f.fscore.to_string()));
        v.push(m.volume_iou.map_or(String::new(), |x| x.to_string()));
        v.push(m.points.normal_consistency.to_string());
        v
    };
    let mut failed = 0;
    for (pred, gt) in pairs {
        let mut row = vec![pred.display().to_string(), gt.display().to_string()];
        match eval.evaluate(pred, gt, warn) {
            Ok(report) => {
                row.extend(values(&report.metrics));
                if let Some(a) = &report.aligned {
                    row.extend(values(&a.metrics));
                    row.push(a.scale.to_string());
                }
                row.resize(header.len() - 1, String::new());
                row.push(String::new());
                on_pair(pred, None);
            }
            Err(e) => {
                failed += 1;
                let message = one_line(&e);
                on_pair(pred, Some(&message));
                row.resize(header.len() - 1, String::new());
                row.push(message);
            }
        }
        table.write_record(&row).map_err(|e| table_error(&e))?;
    }
    save(out, &table.into_inner().map_err(|e| table_error(&e))?)?;
    Ok(failed)
}
