//! End-to-end tests of `orbitmesh render`.

use std::path::Path;

use crate::common::{assert_input_error, orbitmesh, text};
use orbitmesh_geom::{shapes, write_mesh};

#[test]
fn renders_frames_cameras_and_a_sheet() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mesh = d.join("box.ply");
    write_mesh(&mesh, &shapes::cuboid([-0.5, -0.3, -0.2], [0.5, 0.3, 0.2])).unwrap();
    let out = d.join("orbit");
    let sheet = d.join("sheet.png");
    let run = orbitmesh(&[
        "render",
        mesh.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--frames",
        "3",
        "--res",
        "64",
        "--device",
        "cpu",
        "--sheet",
        sheet.to_str().unwrap(),
        "--depth",
        "--normals",
        "--background",
        "transparent",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    for k in 0..3 {
        let frame = image::open(out.join(format!("{k:03}.png")))
            .unwrap()
            .to_rgba8();
        assert_eq!(frame.dimensions(), (64, 64));
        let covered = frame.pixels().filter(|p| p[3] == 255).count();
        let empty = frame.pixels().filter(|p| p[3] == 0).count();
        assert!(
            covered > 200 && empty > 200,
            "frame {k}: {covered} covered, {empty} empty"
        );
        assert!(out.join("depth").join(format!("{k:03}.png")).is_file());
        assert!(out.join("normal").join(format!("{k:03}.png")).is_file());
    }
    let t: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("transforms.json")).unwrap()).unwrap();
    assert_eq!(t["frames"].as_array().unwrap().len(), 3);
    let c: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("cameras.json")).unwrap()).unwrap();
    assert_eq!(c["frames"][1]["azimuth_deg"].as_f64(), Some(120.0));
    assert!(image::open(&sheet).is_ok());
    // Frame 0 looks along −x from 10° up: its centre sees the +x face at a view depth of
    // (2·cos 10° − 0.5) / cos 10° = 1.4923, stored in units of 1e-4.
    let depth = image::open(out.join("depth/000.png")).unwrap().to_luma16();
    let centre = f64::from(depth.get_pixel(32, 32)[0]) * 1e-4;
    assert!((centre - 1.4923).abs() < 0.01, "centre depth {centre}");
    assert_eq!(depth.get_pixel(0, 0)[0], 0);
}

#[test]
fn a_missing_texture_is_a_warning_and_the_mesh_renders_untextured() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    std::fs::write(d.join("m.mtl"), "newmtl a\nmap_Kd gone.png\n").unwrap();
    std::fs::write(
        d.join("m.obj"),
        "mtllib m.mtl\nv -0.5 -0.5 0\nv 0.5 -0.5 0\nv 0 0.5 0.5\nvt 0 0\nvt 1 0\nvt 0 1\nusemtl a\nf 1/1 2/2 3/3\n",
    )
    .unwrap();
    let out = d.join("o");
    let run = orbitmesh(&[
        "render",
        d.join("m.obj").to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--azimuths",
        "0,90",
        "--res",
        "32",
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stderr).contains("gone.png"));
    assert!(out.join("001.png").is_file());
}

#[test]
fn bad_input_exits_2_and_writes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let good = d.join("good.ply");
    write_mesh(&good, &shapes::cuboid([0.0; 3], [1.0; 3])).unwrap();
    std::fs::write(d.join("nofaces.obj"), "v 0 0 0\nv 1 0 0\n").unwrap();
    std::fs::write(d.join("nan.obj"), "v 0 0 0\nv 1 nan 0\nv 0 1 0\nf 1 2 3\n").unwrap();
    let cases: [(&Path, &[&str], &str); 5] = [
        (&d.join("missing.obj"), &[], "no such file"),
        (&d.join("nofaces.obj"), &[], "no faces"),
        (&d.join("nan.obj"), &[], "non-finite"),
        (&good, &["--res", "0"], "--res"),
        (&good, &["--res", "8193"], "--res"),
    ];
    for (k, (mesh, extra, problem)) in cases.into_iter().enumerate() {
        let out = d.join(format!("out{k}"));
        let mut args = vec![
            "render",
            mesh.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        assert_input_error(&orbitmesh(&args), problem);
        assert!(!out.exists(), "case {k} left {out:?} behind");
    }
}

#[test]
fn export_writes_each_format_and_refuses_an_unknown_one() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mesh = d.join("box.ply");
    write_mesh(&mesh, &shapes::cuboid([0.0; 3], [2.0, 1.0, 1.0])).unwrap();
    for name in ["a.glb", "b.obj", "c.ply"] {
        let out = d.join(name);
        let run = orbitmesh(&[
            "export",
            mesh.to_str().unwrap(),
            "-o",
            out.to_str().unwrap(),
            "--size",
            "0.5",
        ]);
        assert!(run.status.success(), "{}", text(&run.stderr));
        assert!(out.is_file());
    }
    let back = orbitmesh_geom::read_mesh(&d.join("c.ply")).unwrap().mesh;
    assert!((back.bounds().longest_side() - 0.5).abs() < 1e-6);
    let run = orbitmesh(&[
        "export",
        mesh.to_str().unwrap(),
        "-o",
        d.join("d.ply").to_str().unwrap(),
        "--faces",
        "8",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(
        orbitmesh_geom::read_mesh(&d.join("d.ply"))
            .unwrap()
            .mesh
            .faces
            .len()
            <= 8
    );
    let glb = std::fs::read(d.join("a.glb")).unwrap();
    assert_eq!(&glb[..4], b"glTF");
    for (args, problem) in [
        (vec!["-o", "x.stl"], "--format"),
        (vec!["-o", "x.glb", "--size=-1"], "--size"),
    ] {
        let mut all = vec!["export", mesh.to_str().unwrap()];
        all.extend(args);
        assert_input_error(&orbitmesh(&all), problem);
    }
}
