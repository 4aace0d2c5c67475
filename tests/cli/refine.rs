//! End-to-end tests of `orbitmesh refine`, on an orbit from `orbitmesh render` and its hull.

use std::path::Path;

use crate::common::{assert_input_error, eval_report, orbitmesh, render, text};
use orbitmesh_geom::{read_mesh, shapes, write_mesh};

fn render_and_hull(d: &Path) -> (String, String, String) {
    let mesh = d.join("box.ply");
    write_mesh(
        &mesh,
        &shapes::cuboid([-0.3, -0.25, -0.2], [0.3, 0.25, 0.2]),
    )
    .unwrap();
    let orbit = d.join("orbit");
    render(
        &mesh,
        &orbit,
        &[
            "--res",
            "64",
            "--frames",
            "8",
            "--background",
            "transparent",
        ],
    );
    let hull = d.join("hull");
    let run = orbitmesh(&[
        "hull",
        orbit.to_str().unwrap(),
        "--out",
        hull.to_str().unwrap(),
        "--resolution",
        "48",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let s = |p: &Path| p.to_str().unwrap().to_string();
    (s(&mesh), s(&orbit), s(&hull))
}

#[test]
fn refine_writes_a_textured_closed_mesh_near_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (mesh, orbit, hull) = render_and_hull(d);
    let out = d.join("fine");
    let run = orbitmesh(&[
        "refine",
        &hull,
        &orbit,
        "--out",
        out.to_str().unwrap(),
        "--holdout",
        "3",
        "--resolution",
        "24",
        "--steps",
        "40",
        "--texture-size",
        "256",
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    for f in [
        "fine.obj",
        "fine.mtl",
        "texture.png",
        "refine.json",
        "holdout_003.png",
    ] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let summary: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("refine.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 40);
    assert!(
        summary["holdout_psnr_db"].as_f64().unwrap() > 15.0,
        "{summary}"
    );

    // Every v has its vn, and the indices tobj reads back are in range.
    let obj = std::fs::read_to_string(out.join("fine.obj")).unwrap();
    let count = |prefix: &str| obj.lines().filter(|l| l.starts_with(prefix)).count();
    assert_eq!(count("v "), count("vn "));
    assert_eq!(count("v "), count("vt "));
    let back = read_mesh(&out.join("fine.obj")).unwrap();
    assert!(back.warnings.is_empty(), "{:?}", back.warnings);
    let n = back.mesh.positions.len() as u32;
    assert!(back.mesh.faces.iter().flatten().all(|&v| v < n));
    assert!(back.mesh.materials[0].diffuse_texture.is_some());

    let chamfer = |pred: &Path| {
        let (_, r) = eval_report(&[
            pred.to_str().unwrap(),
            &mesh,
            "--pred-frame",
            "object",
            "--points",
            "20000",
        ]);
        r["metrics"]["chamfer"].as_f64().unwrap()
    };
    // Eight views at 10° elevation leave wedges of uncarved space above and below the box; the
    // colour and shading of the frames take some of it away.
    let (fine, hull) = (
        chamfer(&out.join("fine.obj")),
        chamfer(&Path::new(&hull).join("hull.obj")),
    );
    assert!(fine < 0.9 * hull, "chamfer {fine}, hull {hull}");
}

#[test]
fn bad_refine_inputs_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (_, orbit, hull) = render_and_hull(d);
    let out = d.join("out");
    let out = out.to_str().unwrap();
    let empty = d.join("empty");
    std::fs::create_dir(&empty).unwrap();
    let refine = |coarse: &str, orbit: &str, extra: &[&str]| {
        let mut args = vec!["refine", coarse, orbit, "--out", out, "--device", "cpu"];
        args.extend_from_slice(extra);
        orbitmesh(&args)
    };
    let run = refine(empty.to_str().unwrap(), &orbit, &[]);
    assert_input_error(&run, "no coarse mesh");
    let run = refine(&hull, &orbit, &["--holdout", "99"]);
    assert_input_error(&run, "--holdout 99");
    let run = refine(&hull, empty.to_str().unwrap(), &[]);
    assert_input_error(&run, "transforms.json");
    let far = d.join("far.ply");
    write_mesh(&far, &shapes::cuboid([5.0; 3], [5.2; 3])).unwrap();
    let run = refine(far.to_str().unwrap(), &orbit, &[]);
    assert_input_error(&run, "leaves no surface");
    assert!(!Path::new(out).exists(), "nothing written for bad input");
}
