//! End-to-end tests of `--generator sv3d`: it never runs without the user's weights, and bad
//! weights files are refused with their name and problem.

use std::path::{Path, PathBuf};

use crate::common::{assert_input_error, orbitmesh, sv3d_tiny, write_truncated_safetensors};

/// A prepared image (square RGBA), as `orbitmesh prepare` writes.
fn prepared(dir: &Path) -> PathBuf {
    let path = dir.join("prepared.png");
    image::RgbaImage::from_pixel(64, 64, image::Rgba([200, 40, 30, 255]))
        .save(&path)
        .unwrap();
    path
}

/// `orbitmesh orbit` with SV3D: named with --generator, or implied by --weights alone.
fn orbit_with(dir: &Path, weights: Option<&Path>) -> std::process::Output {
    let image = prepared(dir);
    let out = dir.join("orbit");
    let mut args = vec![
        "orbit",
        image.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    if weights.is_none() {
        args.extend(["--generator", "sv3d"]);
    }
    if let Some(w) = weights {
        args.extend(["--weights", w.to_str().unwrap()]);
    }
    orbitmesh(&args)
}

#[test]
fn sv3d_without_weights_fails_at_once_saying_where_to_get_them() {
    let dir = tempfile::tempdir().unwrap();
    let line = assert_input_error(&orbit_with(dir.path(), None), "--weights");
    assert!(line.contains("huggingface.co/stabilityai/sv3d"), "{line}");
    assert!(!dir.path().join("orbit").exists());

    let missing = dir.path().join("sv3d_p.safetensors");
    assert_input_error(
        &orbit_with(dir.path(), Some(&missing)),
        "sv3d_p.safetensors",
    );

    let photo = prepared(dir.path());
    let out = dir.path().join("x.glb");
    let run = orbitmesh(&[
        "mesh",
        photo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--generator",
        "sv3d",
    ]);
    assert_input_error(&run, "--weights");
    assert!(
        !dir.path().join("x.work").exists(),
        "no work before the check"
    );
}

#[test]
fn bad_weights_files_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let truncated = dir.path().join("truncated.safetensors");
    write_truncated_safetensors(&truncated);
    let line = assert_input_error(
        &orbit_with(dir.path(), Some(&truncated)),
        "truncated.safetensors",
    );
    assert!(line.contains("not a readable safetensors file"), "{line}");

    // A real safetensors file whose tensors are not SV3D's full-size ones: the tiny parity
    // model, where the fixtures are on this machine.
    if let Some(tiny) = sv3d_tiny().map(|d| d.join("sv3d_tiny.safetensors")) {
        let line = assert_input_error(&orbit_with(dir.path(), Some(&tiny)), "label_emb.0.0.weight");
        assert!(line.contains("not an SV3D checkpoint"), "{line}");
    }
}

/// `--profile` shapes the inflate generator's proxy; with SV3D it is refused, not ignored.
#[test]
fn a_profile_with_sv3d_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let image = prepared(dir.path());
    let weights = dir.path().join("sv3d_p.safetensors");
    std::fs::write(&weights, b"").unwrap();
    let out = dir.path().join("orbit");
    let run = orbitmesh(&[
        "orbit",
        image.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--weights",
        weights.to_str().unwrap(),
        "--profile",
        "round",
    ]);
    assert_input_error(&run, "--profile");
    assert!(!out.exists());
}
