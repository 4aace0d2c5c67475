//! End-to-end tests of `orbitmesh bench`.

mod common;

use common::{orbitmesh, text};
use orbitmesh_geom::{shapes, write_mesh};

#[test]
fn bench_survives_a_corrupt_object_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    for (name, mesh) in [
        ("a_ball", shapes::uv_sphere(0.5, 24, 48)),
        ("c_box", shapes::cuboid([-0.5, -0.3, -0.2], [0.5, 0.3, 0.2])),
    ] {
        std::fs::create_dir_all(data.join(name).join("meshes")).unwrap();
        write_mesh(&data.join(name).join("meshes/model.obj"), &mesh).unwrap();
    }
    std::fs::create_dir_all(data.join("b_broken/meshes")).unwrap();
    std::fs::write(
        data.join("b_broken/meshes/model.obj"),
        "v 0 0 0\nv 1 0 0\nv 0 1 0\nf 1 2",
    )
    .unwrap();
    let out = dir.path().join("out");
    let args = [
        "bench",
        data.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--oracle",
        "--preset",
        "fast",
        "--points",
        "5000",
        "--device",
        "cpu",
        "--jobs",
        "2",
    ];
    // Two objects at once: rows still come in the objects' order.
    let run = orbitmesh(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let results = std::fs::read_to_string(out.join("results.csv")).unwrap();
    let lines: Vec<&str> = results.lines().collect();
    assert_eq!(lines.len(), 4, "{results}");
    assert!(
        lines[2].starts_with("b_broken,") && lines[2].contains("model.obj"),
        "{results}"
    );
    let chamfer = |line: &str| line.split(',').nth(1).unwrap().parse::<f64>().unwrap();
    assert!(
        chamfer(lines[1]) < 0.02 && chamfer(lines[3]) < 0.05,
        "{results}"
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["failed"], 1);
    assert!(
        std::fs::read_to_string(out.join("report.md"))
            .unwrap()
            .contains("| a_ball |")
    );

    // An interrupted bench: one object's result missing. The rerun redoes only that one.
    let kept = out.join("c_box/metrics.json");
    let before = std::fs::metadata(&kept).unwrap().modified().unwrap();
    std::fs::remove_file(out.join("a_ball/metrics.json")).unwrap();
    let run = orbitmesh(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(out.join("a_ball/metrics.json").is_file());
    assert_eq!(
        std::fs::metadata(&kept).unwrap().modified().unwrap(),
        before
    );
    assert_eq!(
        std::fs::read_to_string(out.join("results.csv"))
            .unwrap()
            .lines()
            .count(),
        4
    );
}
