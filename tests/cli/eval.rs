//! End-to-end tests of `orbitmesh eval`: the binary, its output files and its exit codes.

use std::path::{Path, PathBuf};

use crate::common::{assert_input_error, eval_report, orbitmesh, text};
use orbitmesh_geom::{TriMesh, shapes, write_mesh};

fn save(dir: &Path, name: &str, mesh: &TriMesh) -> String {
    let p = dir.join(name);
    write_mesh(&p, mesh).unwrap();
    p.display().to_string()
}

fn shifted(mut mesh: TriMesh, dx: f32) -> TriMesh {
    for p in &mut mesh.positions {
        p[0] += dx;
    }
    mesh
}

#[test]
fn a_sphere_against_itself_shifted_writes_json_with_the_shift_as_chamfer() {
    let dir = tempfile::tempdir().unwrap();
    // Longest side 1, so the shift is in normalised units too.
    let sphere = shapes::uv_sphere(0.5, 64, 128);
    let gt = save(dir.path(), "gt.ply", &sphere);
    let pred = save(dir.path(), "pred.obj", &shifted(sphere, 0.02));
    let (stdout, report) = eval_report(&[&pred, &gt, "--points", "50000"]);
    assert!(
        stdout.contains("chamfer") && stdout.contains("volume_iou"),
        "{stdout}"
    );
    let m = &report["metrics"];
    let chamfer = m["chamfer"].as_f64().unwrap();
    // Mean distance between unit-diameter spheres 0.02 apart: (2/3)·0.02·... ≈ 0.0133 from the
    // shift's normal component, plus sampling spacing.
    assert!(chamfer > 0.010 && chamfer < 0.016, "chamfer {chamfer}");
    let iou = m["volume_iou"].as_f64().unwrap();
    assert!(iou > 0.9 && iou < 0.99, "iou {iou}");
    assert_eq!(m["fscores"][2]["fscore"].as_f64(), Some(1.0));
}

#[test]
fn icp_reports_metrics_before_and_after() {
    let dir = tempfile::tempdir().unwrap();
    let gt = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("data/gso-mini/utah_teapot");
    let moved = orbitmesh_geom::read_mesh(&gt).unwrap().mesh;
    let size = moved.bounds().longest_side() as f32;
    let pred = save(dir.path(), "pred.ply", &shifted(moved, 0.05 * size));
    let (stdout, r) = eval_report(&[
        &pred,
        gt.to_str().unwrap(),
        "--align",
        "icp",
        "--points",
        "20000",
        "--iou-cells",
        "0",
    ]);
    assert!(stdout.contains("after ICP"));
    let before = r["metrics"]["chamfer"].as_f64().unwrap();
    let after = r["aligned"]["metrics"]["chamfer"].as_f64().unwrap();
    assert!(
        before > 0.015 && after < 0.3 * before,
        "before {before}, after {after}"
    );
    assert!(r["metrics"]["volume_iou"].is_null());
}

#[test]
fn batch_writes_one_row_per_pair_and_fails_for_a_bad_row() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    save(d, "a.ply", &shapes::uv_sphere(0.5, 32, 64));
    save(d, "b.ply", &shapes::cuboid([-0.5; 3], [0.5; 3]));
    std::fs::write(d.join("pairs.csv"), "pred,gt\na.ply,b.ply\nb.ply,b.ply\n").unwrap();
    let pairs = d.join("pairs.csv");
    let out = orbitmesh(&[
        "eval",
        "--batch",
        pairs.to_str().unwrap(),
        "--points",
        "20000",
    ]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let results = std::fs::read_to_string(d.join("pairs-results.csv")).unwrap();
    let lines: Vec<_> = results.lines().collect();
    assert_eq!(lines.len(), 3, "{results}");
    assert!(lines[0].starts_with("pred,gt,chamfer,"));
    let chamfer = |line: &str| line.split(',').nth(2).unwrap().parse::<f64>().unwrap();
    assert!(
        chamfer(lines[1]) > 0.05 && chamfer(lines[2]) < 0.01,
        "{results}"
    );

    std::fs::write(d.join("bad.csv"), "a.ply,b.ply\nmissing.ply,b.ply\n").unwrap();
    let out_csv = d.join("bad-out.csv");
    let out = orbitmesh(&[
        "eval",
        "--batch",
        d.join("bad.csv").to_str().unwrap(),
        "--out",
        out_csv.to_str().unwrap(),
        "--points",
        "5000",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let results = std::fs::read_to_string(&out_csv).unwrap();
    assert_eq!(results.lines().count(), 3);
    assert!(results.lines().nth(2).unwrap().contains("missing.ply"));
}

/// Bad input: one line on stderr naming the file and the problem, exit code 2, no panic.
#[test]
fn bad_input_exits_2_with_one_line_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = save(d, "good.ply", &shapes::cuboid([0.0; 3], [1.0; 3]));
    let bytes = std::fs::read(&good).unwrap();
    // The same binary PLY with its second vertex's y replaced by NaN.
    let mut with_nan = bytes.clone();
    let body = bytes
        .windows(11)
        .position(|w| w == b"end_header\n")
        .unwrap()
        + 11;
    with_nan[body + 16..body + 20].copy_from_slice(&f32::NAN.to_le_bytes());
    let write = |name: &str, body: &[u8]| {
        let p = d.join(name);
        std::fs::write(&p, body).unwrap();
        p.display().to_string()
    };
    let cases = [
        (d.join("nope.obj").display().to_string(), "no such file"),
        (write("empty.obj", b"v 0 0 0\n"), "no faces"),
        (
            write("range.obj", b"v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2 4\n"),
            "out of bounds",
        ),
        (
            write("nan.obj", b"v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n"),
            "non-finite",
        ),
        (write("nan.ply", &with_nan), "non-finite"),
        (write("cut.ply", &bytes[..bytes.len() - 20]), "truncated"),
        (write("model.stl", b"solid\n"), "unknown mesh format"),
    ];
    for (bad, problem) in cases {
        for args in [[bad.as_str(), good.as_str()], [good.as_str(), bad.as_str()]] {
            let out = orbitmesh(&["eval", args[0], args[1], "--points", "1000"]);
            let err = assert_input_error(&out, problem);
            assert!(err.contains(&bad), "{err}");
        }
    }
    // Nothing half-written: a failed run leaves no JSON.
    let json = d.join("never.json");
    let out = orbitmesh(&[
        "eval",
        &good,
        "missing.off",
        "--json",
        json.to_str().unwrap(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(!json.exists());
}

#[test]
fn visible_sampling_ignores_a_hidden_shell() {
    let dir = tempfile::tempdir().unwrap();
    let outer = shapes::uv_sphere(0.5, 32, 64);
    let mut with_core = outer.clone();
    let core = shapes::uv_sphere(0.2, 16, 32);
    let base = with_core.positions.len() as u32;
    with_core.positions.extend(&core.positions);
    with_core
        .faces
        .extend(core.faces.iter().map(|f| f.map(|i| i + base)));
    let gt = save(dir.path(), "gt.ply", &outer);
    let pred = save(dir.path(), "pred.ply", &with_core);
    let chamfer = |sampling: &str| {
        let (_, r) = eval_report(&[
            &pred,
            &gt,
            "--points",
            "20000",
            "--iou-cells",
            "0",
            "--sampling",
            sampling,
            "--device",
            "cpu",
        ]);
        r["metrics"]["chamfer"].as_f64().unwrap()
    };
    // Uniform sampling puts a share of the points on the hidden core, 0.3 from the surface.
    let (uniform, visible) = (chamfer("uniform"), chamfer("visible"));
    assert!(uniform > 0.02, "uniform {uniform}");
    assert!(visible < 0.01, "visible {visible}");
}
