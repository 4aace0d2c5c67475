//! End-to-end tests of `orbitmesh hull`, on orbits written by `orbitmesh render`.

use crate::common::{assert_input_error, eval_report, orbitmesh, render, text};
use orbitmesh_geom::{shapes, write_mesh};

#[test]
fn render_then_hull_gives_a_mesh_near_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mesh = d.join("ball.ply");
    write_mesh(&mesh, &shapes::uv_sphere(0.5, 32, 64)).unwrap();
    let orbit = d.join("orbit");
    render(
        &mesh,
        &orbit,
        &["--res", "96", "--background", "transparent"],
    );
    let out = d.join("hull");
    let run = orbitmesh(&[
        "hull",
        orbit.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--resolution",
        "64",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let (_, r) = eval_report(&[
        out.join("hull.obj").to_str().unwrap(),
        mesh.to_str().unwrap(),
        "--pred-frame",
        "object",
        "--points",
        "20000",
    ]);
    let chamfer = r["metrics"]["chamfer"].as_f64().unwrap();
    let iou = r["metrics"]["volume_iou"].as_f64().unwrap();
    // A ball is nearly its own visual hull: only near the poles, which a 10° orbit sees edge-on,
    // does some uncarved volume remain.
    assert!(chamfer < 0.015 && iou > 0.9, "chamfer {chamfer}, iou {iou}");
}

#[test]
fn bad_orbits_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mesh = d.join("box.ply");
    write_mesh(&mesh, &shapes::cuboid([-0.3; 3], [0.3; 3])).unwrap();
    let good = d.join("good");
    let run = orbitmesh(&[
        "render",
        mesh.to_str().unwrap(),
        "--out",
        good.to_str().unwrap(),
        "--res",
        "32",
        "--frames",
        "4",
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let transforms = std::fs::read_to_string(good.join("transforms.json")).unwrap();
    let variant = |name: &str, edit: &dyn Fn(&std::path::Path)| {
        let v = d.join(name);
        std::fs::create_dir(&v).unwrap();
        for e in std::fs::read_dir(&good).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), v.join(e.file_name())).unwrap();
        }
        edit(&v);
        v
    };
    let cases = [
        (
            variant("no-json", &|v| {
                std::fs::remove_file(v.join("transforms.json")).unwrap()
            }),
            "no transforms.json",
        ),
        (
            variant("bad-json", &|v| {
                std::fs::write(v.join("transforms.json"), "{ not json").unwrap()
            }),
            "transforms.json",
        ),
        (
            variant("nan", &|v| {
                let t = transforms.replacen(
                    "\"transform_matrix\": [\n        [\n          ",
                    "\"transform_matrix\": [\n        [\n          NaN, ",
                    1,
                );
                std::fs::write(v.join("transforms.json"), t).unwrap()
            }),
            "transforms.json",
        ),
        (
            variant("size", &|v| {
                image::RgbaImage::new(16, 16)
                    .save(v.join("002.png"))
                    .unwrap();
            }),
            "002.png",
        ),
        (
            variant("rgb", &|v| {
                image::RgbImage::new(32, 32)
                    .save(v.join("001.png"))
                    .unwrap();
            }),
            "no alpha",
        ),
        (
            variant("missing", &|v| {
                std::fs::remove_file(v.join("003.png")).unwrap()
            }),
            "003.png",
        ),
    ];
    for (orbit, problem) in cases {
        let out = orbit.join("hull-out");
        let run = orbitmesh(&[
            "hull",
            orbit.to_str().unwrap(),
            "--out",
            out.to_str().unwrap(),
        ]);
        assert_input_error(&run, problem);
        assert!(!out.exists());
    }
}
