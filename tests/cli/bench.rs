//! End-to-end tests of `orbitmesh bench`.

use std::path::Path;

use crate::common::{orbitmesh, text};
use orbitmesh_geom::{shapes, write_mesh};

#[test]
fn bench_survives_a_corrupt_object_resumes_and_merges_shards() {
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
    let args = oracle_bench(&data, &out, "2");
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
    // report.html: the table, the failure, and each measured object's scan and mesh as GLBs
    // (base64 of "glTF" starts "Z2xUR") in its pair of viewers, the viewer itself inlined.
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<td>a_ball</td>") && html.contains("failed: "));
    assert_eq!(
        html.matches("<model-viewer src=\"data:model/gltf-binary;base64,Z2xUR")
            .count(),
        4
    );
    assert!(!html.contains("<script type=\"module\" src="));
    for object in ["a_ball", "c_box"] {
        let glb = orbitmesh_geom::read_mesh(&out.join(object).join("mesh.glb")).unwrap();
        assert!((100..=20_000).contains(&glb.mesh.faces.len()));
    }

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

    // Two shards on two "machines", merged, give the single run's report (timings aside).
    let mut parts = Vec::new();
    for shard in ["0/2", "1/2"] {
        let part = dir.path().join(format!("part-{}", &shard[..1]));
        let mut shard_args = args.to_vec();
        shard_args[3] = part.to_str().unwrap();
        shard_args.extend(["--shard", shard]);
        let run = orbitmesh(&shard_args);
        assert!(run.status.success(), "{}", text(&run.stderr));
        parts.push(part);
    }
    let merged = dir.path().join("merged");
    let mut merge_args = vec!["bench", "merge"];
    merge_args.extend(parts.iter().map(|p| p.to_str().unwrap()));
    merge_args.extend(["--out", merged.to_str().unwrap()]);
    let run = orbitmesh(&merge_args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(
        results_without_seconds(&merged),
        results_without_seconds(&out)
    );
    let metrics = |dir: &std::path::Path| {
        let summary: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.join("summary.json")).unwrap()).unwrap();
        (
            summary["metrics"].clone(),
            summary["objects"].clone(),
            summary["failed"].clone(),
        )
    };
    assert_eq!(metrics(&merged), metrics(&out));
    assert_eq!(
        std::fs::read(merged.join("chamfer.png")).unwrap(),
        std::fs::read(out.join("chamfer.png")).unwrap()
    );
}

/// A fast oracle bench of `data` into `out` (`out` is argument 3), `jobs` objects at once, of
/// the visual hull alone (the NeRF and the fine stage have their own tests, and would make these
/// minutes long).
fn oracle_bench<'a>(data: &'a Path, out: &'a Path, jobs: &'a str) -> [&'a str; 17] {
    [
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
        jobs,
        "--fine-steps",
        "0",
        "--coarse",
        "hull",
    ]
}

/// results.csv's rows without the timing column, which differs between runs.
fn results_without_seconds(dir: &Path) -> Vec<Vec<String>> {
    let csv = std::fs::read_to_string(dir.join("results.csv")).unwrap();
    let mut lines = csv
        .lines()
        .map(|l| l.split(',').map(str::to_string).collect::<Vec<_>>());
    let header = lines.next().unwrap();
    let seconds = header.iter().position(|h| h == "seconds").unwrap();
    std::iter::once(header.clone())
        .chain(lines)
        .map(|mut row| {
            row.remove(seconds);
            row
        })
        .collect()
}

#[test]
fn a_killed_bench_reruns_only_the_unfinished_objects() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let names = ["a", "b", "c", "d", "e", "f"];
    for (i, name) in names.iter().enumerate() {
        std::fs::create_dir_all(data.join(name).join("meshes")).unwrap();
        let r = 0.3 + 0.05 * i as f32;
        write_mesh(
            &data.join(name).join("meshes/model.obj"),
            &shapes::uv_sphere(r, 24, 48),
        )
        .unwrap();
    }
    let out = dir.path().join("out");
    let args = oracle_bench(&data, &out, "1");
    let finished = || -> Vec<&str> {
        names
            .iter()
            .copied()
            .filter(|n| out.join(n).join("metrics.json").is_file())
            .collect()
    };
    // Killed as soon as the first object has its result.
    let mut child = crate::common::command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let started = std::time::Instant::now();
    while finished().is_empty() {
        assert!(started.elapsed().as_secs() < 120, "no object finished");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let before = finished();
    assert!(
        before.len() < names.len(),
        "the bench ended before it was killed"
    );
    assert!(!out.join("results.csv").exists());
    let stamps: Vec<_> = before
        .iter()
        .map(|n| {
            std::fs::metadata(out.join(n).join("metrics.json"))
                .unwrap()
                .modified()
                .unwrap()
        })
        .collect();

    let run = orbitmesh(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert_eq!(finished().len(), names.len());
    for (n, stamp) in before.iter().zip(stamps) {
        let now = std::fs::metadata(out.join(n).join("metrics.json"))
            .unwrap()
            .modified()
            .unwrap();
        assert_eq!(
            now, stamp,
            "{n} was finished before the kill and must not be redone"
        );
    }
}

/// `bench` runs each object through the pipeline's stage folders, as `mesh` does: killed in an
/// object's fine stage, a rerun redoes that stage and what follows, not the stages before it.
#[test]
fn a_bench_killed_in_the_fine_stage_reruns_only_the_unfinished_stages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let gso = Path::new(env!("CARGO_MANIFEST_DIR")).join("data/gso-mini");
    for name in ["GSO_bead_bowl", "utah_teapot"] {
        let meshes = data.join(name).join("meshes");
        std::fs::create_dir_all(&meshes).unwrap();
        for file in std::fs::read_dir(gso.join(name).join("meshes")).unwrap() {
            let file = file.unwrap().path();
            std::fs::copy(&file, meshes.join(file.file_name().unwrap())).unwrap();
        }
    }
    let out = dir.path().join("out");
    let mut args = oracle_bench(&data, &out, "1").to_vec();
    args[14] = "40";
    let first = out.join("GSO_bead_bowl");
    let mut child = crate::common::command()
        .args(&args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    crate::common::wait_for(&first.join("fine.tmp"), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!first.join("fine").exists() && !first.join("metrics.json").exists());
    let record = |stage: &str| std::fs::read(first.join(stage).join("stage.json")).unwrap();
    let finished = [("orbit", record("orbit")), ("coarse", record("coarse"))];

    let run = orbitmesh(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
    for (stage, before) in finished {
        assert_eq!(
            record(stage),
            before,
            "{stage} was finished and must not rerun"
        );
    }
    let fine: serde_json::Value = serde_json::from_slice(&record("fine")).unwrap();
    assert_eq!(fine["details"]["steps"], 40);
    for name in ["GSO_bead_bowl", "utah_teapot"] {
        for stage in ["orbit", "coarse", "fine"] {
            assert!(out.join(name).join(stage).join("stage.json").is_file());
        }
        assert!(out.join(name).join("metrics.json").is_file());
    }
}
