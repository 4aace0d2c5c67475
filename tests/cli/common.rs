//! Helpers shared by the end-to-end tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A safetensors file cut short: its header length promises more than the file holds.
pub fn write_truncated_safetensors(path: &Path) {
    std::fs::write(path, [200u8, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap();
}

/// The SV3D parity fixtures' folder (the tiny model with random weights and its configuration),
/// read in place where this machine has `shared/fixtures/sv3d-tiny` above the project.
pub fn sv3d_tiny() -> Option<PathBuf> {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .map(|a| a.join("shared/fixtures/sv3d-tiny"))
        .find(|d| d.join("sv3d_tiny.safetensors").is_file())
}

/// Runs the `orbitmesh` binary built for these tests, with an empty models folder, so the
/// results do not depend on which optional models this machine has installed.
pub fn orbitmesh(args: &[&str]) -> Output {
    command()
        .args(args)
        .output()
        .expect("the orbitmesh binary runs")
}

/// The `orbitmesh` binary as [`orbitmesh`] runs it (an empty models folder), to spawn.
pub fn command() -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_orbitmesh"));
    command.env(
        "ORBITMESH_MODELS",
        Path::new(env!("CARGO_TARGET_TMPDIR")).join("no-models"),
    );
    command
}

/// Runs the `orbitmesh` binary with `models` as its models folder.
pub fn orbitmesh_with_models(args: &[&str], models: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orbitmesh"))
        .args(args)
        .env("ORBITMESH_MODELS", models)
        .output()
        .expect("the orbitmesh binary runs")
}

/// Runs `orbitmesh render MESH --out OUT --device cpu` plus `extra` and asserts it succeeded.
pub fn render(mesh: &Path, out: &Path, extra: &[&str]) {
    let mut args = vec![
        "render",
        mesh.to_str().unwrap(),
        "--out",
        out.to_str().unwrap(),
        "--device",
        "cpu",
    ];
    args.extend_from_slice(extra);
    let run = orbitmesh(&args);
    assert!(run.status.success(), "{}", text(&run.stderr));
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Asserts the contract for bad input: exit code 2 and one line on stderr that names `problem`
/// (case-insensitive), no panic. Returns that line.
pub fn assert_input_error(run: &Output, problem: &str) -> String {
    let err = text(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "{err}");
    assert_eq!(err.trim_end().lines().count(), 1, "{err}");
    assert!(err.starts_with("error: "), "{err}");
    assert!(
        err.to_lowercase().contains(&problem.to_lowercase()),
        "{problem}: {err}"
    );
    err
}

/// Runs `orbitmesh eval ARGS --json FILE`, asserts it succeeded, and returns its standard output
/// and the `report` object of the JSON it wrote.
pub fn eval_report(args: &[&str]) -> (String, serde_json::Value) {
    let json = tempfile::NamedTempFile::new().unwrap();
    let mut all = vec!["eval"];
    all.extend_from_slice(args);
    all.extend_from_slice(&["--json", json.path().to_str().unwrap()]);
    let out = orbitmesh(&all);
    assert!(out.status.success(), "{}", text(&out.stderr));
    let doc: serde_json::Value =
        serde_json::from_slice(&std::fs::read(json.path()).unwrap()).unwrap();
    (text(&out.stdout), doc["report"].clone())
}

/// Writes a blue square on a plain light background, without alpha (the format from `path`'s
/// extension): a photo the classical background model separates.
pub fn write_plain_photo(path: &Path) {
    let img = image::RgbaImage::from_fn(120, 90, |x, y| {
        if (40..70).contains(&x) && (30..60).contains(&y) {
            image::Rgba([20, 40, 200, 255])
        } else {
            image::Rgba([235, 235, 230, 255])
        }
    });
    image::DynamicImage::ImageRgba8(img)
        .to_rgb8()
        .save(path)
        .unwrap();
}

/// Waits until `path` exists, failing if `child` ends first or two minutes pass.
pub fn wait_for(path: &Path, child: &mut std::process::Child) {
    let started = Instant::now();
    while !path.exists() {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "{} never appeared",
            path.display()
        );
        assert!(
            child.try_wait().unwrap().is_none(),
            "the run ended before {} appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(2));
    }
}
