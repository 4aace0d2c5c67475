//! End-to-end tests of `orbitmesh prepare`.

use crate::common::{assert_input_error, orbitmesh, text, write_plain_photo};
use image::{Rgba, RgbaImage};

#[test]
fn prepares_a_photo_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("photo.jpg");
    write_plain_photo(&path);
    let out = d.join("prep");
    let run = orbitmesh(&[
        "prepare",
        path.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("background model"));
    let rgba = image::open(out.join("prepared.png")).unwrap().to_rgba8();
    assert_eq!(rgba.dimensions(), (576, 576));
    assert_eq!(rgba.get_pixel(288, 288)[3], 255);
    assert_eq!(rgba.get_pixel(10, 10)[3], 0);
    let white = image::open(out.join("prepared_white.png"))
        .unwrap()
        .to_rgba8();
    assert_eq!(white.get_pixel(10, 10).0, [255, 255, 255, 255]);

    let text_file = d.join("notes.png");
    std::fs::write(&text_file, "not an image").unwrap();
    let clear = d.join("clear.png");
    RgbaImage::new(50, 50).save(&clear).unwrap();
    let dot = d.join("dot.png");
    RgbaImage::from_pixel(1, 1, Rgba([9, 9, 9, 255]))
        .save(&dot)
        .unwrap();
    for (image, problem) in [
        (text_file, "not a readable image"),
        (clear, "mask is empty"),
        (dot, "too small"),
    ] {
        let o = d.join("never");
        let run = orbitmesh(&[
            "prepare",
            image.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ]);
        assert_input_error(&run, problem);
        assert!(!o.exists());
    }
}

#[test]
fn orbit_makes_labelled_frames_from_a_prepared_image() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let prepared = d.join("prepared.png");
    RgbaImage::from_fn(64, 64, |x, y| {
        let r = ((x as f32 - 31.5).powi(2) + (y as f32 - 31.5).powi(2)).sqrt();
        if r < 27.0 {
            Rgba([30, 160, 60, 255])
        } else {
            Rgba([0; 4])
        }
    })
    .save(&prepared)
    .unwrap();
    let out = d.join("orbit");
    let run = orbitmesh(&[
        "orbit",
        prepared.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--res",
        "64",
        "--frames",
        "6",
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("not a diffusion model"));
    let stage: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.join("stage.json")).unwrap()).unwrap();
    assert_eq!(stage["details"]["generator"], "inflate");
    for k in 0..6 {
        let f = image::open(out.join(format!("{k:03}.png")))
            .unwrap()
            .to_rgba8();
        let covered = f.pixels().filter(|p| p[3] > 127).count();
        assert!(covered > 500, "frame {k}: {covered} pixels");
    }
    // The orbit feeds the 3D stages as it is.
    let hull = d.join("hull");
    let run = orbitmesh(&[
        "hull",
        out.to_str().unwrap(),
        "--out",
        hull.to_str().unwrap(),
        "--resolution",
        "48",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));

    let wide = d.join("wide.png");
    RgbaImage::from_pixel(64, 32, Rgba([1, 1, 1, 255]))
        .save(&wide)
        .unwrap();
    let o = d.join("never");
    assert_input_error(
        &orbitmesh(&[
            "orbit",
            wide.to_str().unwrap(),
            "--out",
            o.to_str().unwrap(),
        ]),
        "not square",
    );
    assert!(!o.exists());
}
