//! End-to-end tests of `orbitmesh nerf` on small orbits written by `orbitmesh render`.

use std::path::Path;

use crate::common::{assert_input_error, orbitmesh, render, text};
use orbitmesh_geom::{shapes, write_mesh};

fn render_ball(d: &Path, name: &str, background: &str) -> std::path::PathBuf {
    let mesh = d.join("ball.ply");
    write_mesh(&mesh, &shapes::uv_sphere(0.35, 16, 32)).unwrap();
    let orbit = d.join(name);
    render(
        &mesh,
        &orbit,
        &["--res", "32", "--frames", "12", "--background", background],
    );
    orbit
}

fn nerf(orbit: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    nerf_on("cpu", orbit, out, extra)
}

fn nerf_on(device: &str, orbit: &Path, out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec![
        "nerf",
        orbit.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        device,
        "--table-log2",
        "14",
        "--mesh-resolution",
        "40",
        "--holdout",
        "3",
    ];
    args.extend_from_slice(extra);
    orbitmesh(&args)
}

#[test]
fn trains_writes_its_outputs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orbit = render_ball(d, "orbit", "transparent");
    let out = d.join("nerf");
    let run = nerf(&orbit, &out, &["--steps", "60"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("nerf.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 60);
    assert!(
        summary["holdout_psnr_db"].as_f64().unwrap().is_finite(),
        "{summary}"
    );
    assert!(out.join("holdout_003.png").is_file());
    let mesh = orbitmesh_geom::read_mesh(&out.join("nerf.obj"))
        .unwrap()
        .mesh;
    assert!(mesh.colors.is_some() && !mesh.faces.is_empty());
    // Every vertex lies inside the carved unit cube.
    assert!(
        mesh.positions
            .iter()
            .flatten()
            .all(|v| v.abs() <= 0.5 + 1e-4)
    );
    // density.npy is a valid .npy of the grid.
    let npy = std::fs::read(out.join("density.npy")).unwrap();
    assert_eq!(&npy[..6], b"\x93NUMPY");
    let header_len = u16::from_le_bytes([npy[8], npy[9]]) as usize;
    assert_eq!((10 + header_len) % 64, 0);
    assert_eq!(npy.len(), 10 + header_len + 4 * 40 * 40 * 40);
    assert!(out.join("field.bpk").is_file() && out.join("checkpoint/state.json").is_file());

    // A larger budget continues from the checkpoint instead of starting over.
    let run = nerf(&orbit, &out, &["--steps", "70"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        text(&run.stderr).contains("resuming from step 60"),
        "{}",
        text(&run.stderr)
    );
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("nerf.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 70);
}

/// The whole trainer on the GPU (llvmpipe in CI): the kernels' parity with the CPU's is tested
/// beside them; this runs every stage there, from the first step to the mesh.
#[test]
fn trains_on_the_gpu() {
    if !orbitmesh_render::gpu_tests::gpu_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orbit = render_ball(d, "orbit", "transparent");
    let out = d.join("nerf");
    let run = nerf_on("gpu", &orbit, &out, &["--steps", "20"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("nerf.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 20);
    let psnr = summary["holdout_psnr_db"].as_f64().unwrap();
    assert!(psnr > 15.0, "held-out PSNR {psnr}");
    let mesh = orbitmesh_geom::read_mesh(&out.join("nerf.obj"))
        .unwrap()
        .mesh;
    assert!(!mesh.faces.is_empty());
}

#[test]
fn frames_without_alpha_train_against_the_background_and_say_so() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let orbit = render_ball(d, "white", "white");
    // Re-save the frames as RGB: no silhouettes at all.
    for e in std::fs::read_dir(&orbit).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "png") {
            image::open(&p).unwrap().to_rgb8().save(&p).unwrap();
        }
    }
    let out = d.join("nerf");
    let run = nerf(&orbit, &out, &["--steps", "40"]);
    let err = text(&run.stderr);
    assert!(
        err.contains("have no alpha") && err.contains("background"),
        "{err}"
    );
}

#[test]
fn bad_input_exits_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let run = nerf(&d.join("nowhere"), &d.join("out"), &[]);
    assert_input_error(&run, "transforms.json");

    let orbit = render_ball(d, "orbit", "transparent");
    let run = nerf(&orbit, &d.join("out"), &["--holdout", "12"]);
    assert_input_error(&run, "--holdout 12");

    let transforms = orbit.join("transforms.json");
    let json = std::fs::read_to_string(&transforms).unwrap();
    let mut doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    doc["frames"][2]["transform_matrix"][0][3] = serde_json::json!("NaN");
    std::fs::write(&transforms, serde_json::to_string(&doc).unwrap()).unwrap();
    let run = nerf(&orbit, &d.join("out2"), &[]);
    assert_input_error(&run, "transforms.json");
    assert!(!d.join("out2/nerf.obj").exists());
}
