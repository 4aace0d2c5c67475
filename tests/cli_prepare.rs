//! End-to-end tests of `orbitmesh prepare`.

mod common;

use common::{assert_input_error, orbitmesh, text};
use image::{Rgba, RgbaImage};

#[test]
fn prepares_a_photo_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // A blue square on a plain light background, saved without alpha.
    let photo = RgbaImage::from_fn(120, 90, |x, y| {
        if (40..70).contains(&x) && (30..60).contains(&y) {
            Rgba([20, 40, 200, 255])
        } else {
            Rgba([235, 235, 230, 255])
        }
    });
    let path = d.join("photo.jpg");
    image::DynamicImage::ImageRgba8(photo)
        .to_rgb8()
        .save(&path)
        .unwrap();
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
