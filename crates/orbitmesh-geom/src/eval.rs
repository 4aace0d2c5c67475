//! `evaluate`: the whole `gso` protocol for one prediction against one ground truth.

use std::fmt::Write;
use std::time::Instant;

use nalgebra::Similarity3;
use serde::Serialize;

use crate::frame::{normalising_transform, transform_point};
use crate::icp::icp_similarity;
use crate::mesh::TriMesh;
use crate::metrics::{PointMetrics, correspondences, point_metrics_from, volume_iou};
use crate::sample::{Sampling, SurfaceSamples, sample_surface};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Align {
    /// The meshes already share the ground truth's frame (the benchmark knows it).
    #[default]
    None,
    /// Similarity ICP of the prediction onto the ground truth; metrics before and after.
    Icp,
}

/// Where the prediction lives, and so what moves both meshes into the ground truth's normalised
/// object frame (box centred, longest side 1), where the protocol measures.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EvalFrame {
    /// The prediction shares the ground-truth file's frame: the ground truth's normalising
    /// transform is applied to both (what evaluation scripts such as the peer do).
    #[default]
    SharedRaw,
    /// The prediction is already in the normalised object frame, as every mesh orbitmesh's stages
    /// write: only the ground truth is normalised.
    PredictionNormalised,
    /// Both are measured as given.
    AsGiven,
}

#[derive(Debug, Clone)]
pub struct EvalOptions {
    /// Surface samples on each mesh.
    pub points: usize,
    /// The prediction is sampled with `seed`, the ground truth with `seed + 1`.
    pub seed: u64,
    pub sampling: Sampling,
    pub taus: Vec<f64>,
    /// Grid cells along the longest side for volume IoU; `None` skips it.
    pub iou_cells: Option<usize>,
    pub align: Align,
    /// How the meshes reach the ground truth's normalised frame.
    pub frame: EvalFrame,
}

impl Default for EvalOptions {
    fn default() -> Self {
        EvalOptions {
            points: 100_000,
            seed: 0,
            sampling: Sampling::Independent,
            taus: vec![0.01, 0.02, 0.05],
            iou_cells: Some(64),
            align: Align::None,
            frame: EvalFrame::SharedRaw,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct Metrics {
    #[serde(flatten)]
    pub points: PointMetrics,
    pub volume_iou: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Alignment {
    /// 4×4 row-major matrix taking the normalised prediction onto the normalised ground truth.
    pub matrix: [[f64; 4]; 4],
    pub scale: f64,
    pub iterations: usize,
    pub rms: f64,
    pub metrics: Metrics,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Timings {
    pub sample: f64,
    pub query: f64,
    pub iou: f64,
    pub align: f64,
}

impl Timings {
    pub fn sample_plus_query(&self) -> f64 {
        self.sample + self.query
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct EvalReport {
    pub points: usize,
    pub seed: u64,
    /// Metrics as the meshes were given (in the ground truth's normalised frame).
    pub metrics: Metrics,
    /// With `Align::Icp`: the alignment found and the metrics after it.
    pub aligned: Option<Alignment>,
    pub seconds: Timings,
}

impl EvalReport {
    /// The report as a table for people: each metric as given (and after ICP when aligned), the
    /// alignment, the time each part took.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "{} points per mesh, seed {}, gso protocol (ground truth's normalised frame)",
            self.points, self.seed
        );
        let before = rows(&self.metrics);
        match &self.aligned {
            None => {
                for (k, v) in before {
                    let _ = writeln!(out, "  {k:<20} {v}");
                }
            }
            Some(Alignment {
                metrics,
                scale,
                iterations,
                rms,
                ..
            }) => {
                let _ = writeln!(out, "  {:<20} {:<44} after ICP", "", "as given");
                for ((k, v), (_, a)) in before.into_iter().zip(rows(metrics)) {
                    let _ = writeln!(out, "  {k:<20} {v:<44} {a}");
                }
                let _ = writeln!(
                    out,
                    "  ICP: scale {scale:.4}, {iterations} iterations, rms {rms:.5}"
                );
            }
        }
        let s = &self.seconds;
        let _ = writeln!(
            out,
            "  seconds: sample {:.3}, nearest neighbours {:.3}, volume IoU {:.3}, align {:.3}",
            s.sample, s.query, s.iou, s.align
        );
        out
    }
}

/// Each metric and its value as the table shows it.
fn rows(m: &Metrics) -> Vec<(String, String)> {
    let mut r = vec![
        ("chamfer".into(), format!("{:.6}", m.points.chamfer)),
        (
            "chamfer_l2_squared".into(),
            format!("{:.3e}", m.points.chamfer_l2_squared),
        ),
    ];
    for f in &m.points.fscores {
        r.push((
            format!("fscore@{}", f.tau),
            format!(
                "{:.4}  (precision {:.4}, recall {:.4})",
                f.fscore, f.precision, f.recall
            ),
        ));
    }
    r.push((
        "volume_iou".into(),
        m.volume_iou.map_or("skipped".into(), |v| format!("{v:.4}")),
    ));
    r.push((
        "normal_consistency".into(),
        format!("{:.4}", m.points.normal_consistency),
    ));
    r
}

fn measure(
    pred: &TriMesh,
    gt: &TriMesh,
    pred_samples: &SurfaceSamples,
    gt_samples: &SurfaceSamples,
    opts: &EvalOptions,
    seconds: &mut Timings,
) -> Metrics {
    let t = Instant::now();
    let c = correspondences(&pred_samples.points, &gt_samples.points);
    let points = point_metrics_from(&c, pred_samples, gt_samples, &opts.taus);
    seconds.query += t.elapsed().as_secs_f64();
    let t = Instant::now();
    let volume_iou = opts.iou_cells.map(|cells| volume_iou(pred, gt, cells));
    seconds.iou += t.elapsed().as_secs_f64();
    Metrics { points, volume_iou }
}

/// Runs the `gso` protocol. The meshes must have passed `TriMesh::validate`.
pub fn evaluate(pred: &TriMesh, gt: &TriMesh, opts: &EvalOptions) -> EvalReport {
    let sample = |mesh: &TriMesh, count, seed| {
        Ok::<_, std::convert::Infallible>(sample_surface(mesh, count, seed, opts.sampling))
    };
    match evaluate_with(pred, gt, opts, sample) {
        Ok(report) => report,
        Err(never) => match never {},
    }
}

/// `evaluate` with another way of placing points (`sample(mesh, count, seed)`, called on the
/// meshes in the ground truth's normalised frame), such as points seen from rendered views.
pub fn evaluate_with<E: Send>(
    pred: &TriMesh,
    gt: &TriMesh,
    opts: &EvalOptions,
    sample: impl Fn(&TriMesh, usize, u64) -> Result<SurfaceSamples, E> + Sync,
) -> Result<EvalReport, E> {
    let mut pred = pred.clone();
    let mut gt = gt.clone();
    let frame = normalising_transform(&gt.bounds());
    match opts.frame {
        EvalFrame::SharedRaw => {
            pred.transform(&frame);
            gt.transform(&frame);
        }
        EvalFrame::PredictionNormalised => gt.transform(&frame),
        EvalFrame::AsGiven => {}
    }
    let mut seconds = Timings::default();
    let t = Instant::now();
    let (pred_samples, gt_samples) = rayon::join(
        || sample(&pred, opts.points, opts.seed),
        || sample(&gt, opts.points, opts.seed.wrapping_add(1)),
    );
    let (pred_samples, gt_samples) = (pred_samples?, gt_samples?);
    seconds.sample = t.elapsed().as_secs_f64();
    let metrics = measure(&pred, &gt, &pred_samples, &gt_samples, opts, &mut seconds);

    let aligned = (opts.align == Align::Icp).then(|| {
        let t = Instant::now();
        // ICP on a subset: 20k points pin down seven parameters as well as 100k do.
        let stride = (opts.points / 20_000).max(1);
        let sub = |s: &SurfaceSamples| s.points.iter().step_by(stride).copied().collect::<Vec<_>>();
        let icp = icp_similarity(&sub(&pred_samples), &sub(&gt_samples), 50);
        seconds.align = t.elapsed().as_secs_f64();
        let moved = transform_samples(&pred_samples, &icp.transform);
        let mut moved_mesh = pred.clone();
        moved_mesh.transform(&icp.transform);
        let mut after = Timings::default();
        let metrics = measure(&moved_mesh, &gt, &moved, &gt_samples, opts, &mut after);
        let h = icp.transform.to_homogeneous();
        Alignment {
            matrix: [0, 1, 2, 3].map(|r| [0, 1, 2, 3].map(|c| h[(r, c)])),
            scale: icp.transform.scaling(),
            iterations: icp.iterations,
            rms: icp.rms,
            metrics,
        }
    });
    Ok(EvalReport {
        points: opts.points,
        seed: opts.seed,
        metrics,
        aligned,
        seconds,
    })
}

/// A similarity maps area-uniform samples to area-uniform samples, so aligned metrics reuse them.
fn transform_samples(s: &SurfaceSamples, t: &Similarity3<f64>) -> SurfaceSamples {
    let rotate = t.isometry.rotation;
    SurfaceSamples {
        points: s.points.iter().map(|p| transform_point(t, *p)).collect(),
        normals: s
            .normals
            .iter()
            .map(|n| {
                let r = rotate * nalgebra::Vector3::new(n[0] as f64, n[1] as f64, n[2] as f64);
                [r.x as f32, r.y as f32, r.z as f32]
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::read_mesh;
    use nalgebra::{Translation3, UnitQuaternion};
    use std::path::Path;

    fn teapot() -> TriMesh {
        let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../data/gso-mini/utah_teapot");
        read_mesh(&p).unwrap().mesh
    }

    #[test]
    fn icp_undoes_a_small_similarity() {
        let gt = teapot();
        let mut pred = gt.clone();
        let frame = normalising_transform(&gt.bounds());
        let wobble = Similarity3::from_parts(
            Translation3::new(0.03, -0.02, 0.01),
            UnitQuaternion::from_euler_angles(0.05, 0.08, -0.06),
            1.06,
        );
        // Perturb in the normalised frame so the numbers mean the same at any mesh scale.
        pred.transform(&(frame.inverse() * wobble * frame));
        let opts = EvalOptions {
            points: 30_000,
            align: Align::Icp,
            iou_cells: Some(32),
            ..Default::default()
        };
        let r = evaluate(&pred, &gt, &opts);
        let after = r.aligned.unwrap();
        assert!(
            r.metrics.points.chamfer > 0.02,
            "{}",
            r.metrics.points.chamfer
        );
        assert!(
            after.metrics.points.chamfer < 0.006,
            "{}",
            after.metrics.points.chamfer
        );
        assert!(
            (after.scale - 1.0 / 1.06).abs() < 0.005,
            "scale {}",
            after.scale
        );
        assert!(after.metrics.volume_iou.unwrap() > r.metrics.volume_iou.unwrap());
    }
}
