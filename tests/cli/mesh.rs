//! End-to-end tests of `orbitmesh mesh`: photo to GLB, resuming from the work folder.

use std::path::Path;
use std::process::Stdio;

use crate::common::{assert_input_error, eval_report, orbitmesh, text, wait_for};
use image::{Rgba, RgbaImage};

/// An orange disc on white.
fn write_photo(path: &Path) {
    RgbaImage::from_fn(96, 96, |x, y| {
        let r = ((x as f32 - 47.5).powi(2) + (y as f32 - 50.0).powi(2)).sqrt();
        if r < 30.0 {
            Rgba([220, 120, 20, 255])
        } else {
            Rgba([250, 250, 250, 255])
        }
    })
    .save(path)
    .unwrap();
}

/// `mesh PHOTO -o OUT` with the fast preset on the CPU, a 48³ hull (argument 7) and
/// `fine_steps` steps of the fine stage.
fn fast_mesh<'a>(photo: &'a Path, out: &'a Path, fine_steps: &'a str) -> [&'a str; 12] {
    [
        "mesh",
        photo.to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--preset",
        "fast",
        "--resolution",
        "48",
        "--device",
        "cpu",
        "--fine-steps",
        fine_steps,
    ]
}

#[test]
fn photo_to_glb_then_a_rerun_skips_finished_stages() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let photo = d.join("photo.png");
    write_photo(&photo);
    let out = d.join("ball.glb");
    let mut args = fast_mesh(&photo, &out, "30").to_vec();
    args.extend(["--normal-map", "--texture-size", "256"]);
    let first = orbitmesh(&args);
    assert!(first.status.success(), "{}", text(&first.stderr));
    let glb = std::fs::read(&out).unwrap();
    assert_eq!(&glb[..4], b"glTF");
    // The fine mesh baked onto the exported one: its textures in the work folder, in the GLB
    // with the tangents.
    let work = d.join("ball.work");
    for texture in ["ball_basecolor.png", "ball_normal.png"] {
        let size = image::image_dimensions(work.join("export").join(texture)).unwrap();
        assert_eq!(size, (256, 256), "{texture}");
    }
    let gltf = gltf::Gltf::from_slice(&glb).unwrap();
    let material = gltf.materials().next().unwrap();
    assert!(material.normal_texture().is_some());
    let primitive = gltf.meshes().next().unwrap().primitives().next().unwrap();
    assert!(primitive.get(&gltf::Semantic::Tangents).is_some());
    crate::engines::assert_engine_ready(&out);
    for stage in ["prepare", "orbit", "coarse", "fine"] {
        assert!(work.join(stage).join("stage.json").is_file(), "{stage}");
    }
    let orbit: serde_json::Value =
        serde_json::from_slice(&std::fs::read(work.join("orbit/stage.json")).unwrap()).unwrap();
    assert_eq!(orbit["details"]["generator"], "inflate");

    // Nothing changed: every stage is skipped.
    let second = orbitmesh(&args);
    assert!(second.status.success(), "{}", text(&second.stderr));
    assert_eq!(
        text(&second.stdout).matches("up to date").count(),
        4,
        "{}",
        text(&second.stdout)
    );

    // A lost coarse stage is redone alone; a changed setting redoes its stage and what follows.
    std::fs::remove_dir_all(work.join("coarse")).unwrap();
    let third = text(&orbitmesh(&args).stdout);
    assert!(
        third.contains("prepare  up to date") && third.contains("orbit    up to date"),
        "{third}"
    );
    assert!(
        third.contains("coarse   done") && third.contains("fine     done"),
        "{third}"
    );
    let mut finer = args.to_vec();
    finer[7] = "40";
    let fourth = text(&orbitmesh(&finer).stdout);
    assert!(
        fourth.contains("orbit    up to date") && fourth.contains("coarse   done"),
        "{fourth}"
    );
}

/// `orbitmesh ARGS` started with its output discarded.
fn spawn_quietly(args: &[&str]) -> std::process::Child {
    crate::common::command()
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

#[test]
fn a_run_killed_in_the_fine_stage_redoes_only_that_stage() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let photo = d.join("photo.png");
    write_photo(&photo);
    let out = d.join("ball.glb");
    let args = fast_mesh(&photo, &out, "100");
    let mut child = spawn_quietly(&args);
    wait_for(&d.join("ball.work").join("fine.tmp"), &mut child);
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(
        !d.join("ball.work/fine").exists() && !out.exists(),
        "nothing finished"
    );

    let rerun = orbitmesh(&args);
    let log = text(&rerun.stdout);
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    for stage in [
        "prepare  up to date",
        "orbit    up to date",
        "coarse   up to date",
        "fine     done",
    ] {
        assert!(log.contains(stage), "{stage}: {log}");
    }
    assert!(out.is_file());
}

#[test]
fn bad_requests_fail_before_any_work() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let photo = d.join("p.png");
    RgbaImage::from_pixel(32, 32, Rgba([0, 0, 0, 0]))
        .save(&photo)
        .unwrap();
    let p = photo.to_str().unwrap();
    let missing_dir = d.join("no/such/dir/out.glb");
    let folder = d.join("folder.glb");
    std::fs::create_dir(&folder).unwrap();
    let not_image = d.join("notes.png");
    std::fs::write(&not_image, "not a picture").unwrap();
    let one_pixel = d.join("one.png");
    RgbaImage::from_pixel(1, 1, Rgba([9, 9, 9, 255]))
        .save(&one_pixel)
        .unwrap();
    let all_object = d.join("all.png");
    RgbaImage::from_fn(48, 48, |x, y| {
        let v = ((x * 7919 + y * 104_729) % 251) as u8;
        Rgba([v, v.wrapping_mul(3), 255 - v, 255])
    })
    .save(&all_object)
    .unwrap();
    let out = d.join("x.glb");
    let out = out.to_str().unwrap();
    let ply = d.join("x.ply");
    for (args, problem) in [
        (vec!["mesh", p, "-o", "out.stl"], "must be .glb"),
        (
            vec!["mesh", p, "-o", missing_dir.to_str().unwrap()],
            "no such folder",
        ),
        (
            vec!["mesh", p, "-o", folder.to_str().unwrap()],
            "is a folder",
        ),
        (vec!["mesh", p, "-o", out], "mask is empty"),
        (
            vec!["mesh", p, "-o", ply.to_str().unwrap(), "--normal-map"],
            "needs .glb or .obj",
        ),
        (
            vec!["mesh", p, "-o", out, "--normal-map", "--texture-size", "16"],
            "--texture-size must be in 64..8192",
        ),
        (
            vec!["mesh", not_image.to_str().unwrap(), "-o", out],
            "not a readable image",
        ),
        (
            vec!["mesh", one_pixel.to_str().unwrap(), "-o", out],
            "too small",
        ),
        (
            vec!["mesh", all_object.to_str().unwrap(), "-o", out],
            "background",
        ),
    ] {
        assert_input_error(&orbitmesh(&args), problem);
    }
    assert!(!d.join("x.glb").exists());
}

/// An orbit in SV3D's order, RGB on white as the official code writes it, feeds the 3D stages.
#[test]
fn sv3d_ordered_frames_on_white_become_the_object() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ball = d.join("ball.ply");
    orbitmesh_geom::write_mesh(&ball, &orbitmesh_geom::shapes::uv_sphere(0.5, 32, 64)).unwrap();
    let azimuths: Vec<String> = (0..21)
        .map(|k| format!("{}", 360.0 * (k + 1) as f64 / 21.0))
        .collect();
    let rendered = d.join("rendered");
    let run = orbitmesh(&[
        "render",
        ball.to_str().unwrap(),
        "--out",
        rendered.to_str().unwrap(),
        "--res",
        "96",
        "--azimuths",
        &azimuths.join(","),
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let sv3d = d.join("sv3d");
    std::fs::create_dir(&sv3d).unwrap();
    for k in 0..21 {
        let rgb = image::open(rendered.join(format!("{k:03}.png")))
            .unwrap()
            .to_rgb8();
        rgb.save(sv3d.join(format!("{k:03}.png"))).unwrap();
    }
    let out = d.join("ball.obj");
    let run = orbitmesh(&[
        "mesh",
        sv3d.join("020.png").to_str().unwrap(),
        "-o",
        out.to_str().unwrap(),
        "--frames",
        sv3d.to_str().unwrap(),
        "--orbit-order",
        "sv3d",
        "--preset",
        "fast",
        "--resolution",
        "48",
        "--nerf-seconds",
        "10",
        "--device",
        "cpu",
    ]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    // An orbit of real views gets the NeRF as its coarse stage.
    assert!(text(&run.stdout).contains("imported frames"));
    assert!(text(&run.stdout).contains("coarse stage: the hash-grid NeRF"));
    assert!(d.join("ball.work/coarse/nerf.obj").is_file());
    let (_, r) = eval_report(&[
        out.to_str().unwrap(),
        ball.to_str().unwrap(),
        "--pred-frame",
        "object",
        "--points",
        "20000",
        "--iou-cells",
        "0",
    ]);
    let chamfer = r["metrics"]["chamfer"].as_f64().unwrap();
    assert!(chamfer < 0.02, "chamfer {chamfer}");
}

/// `--frame input` puts the object where SV3D's input camera sees it in the photo; the default
/// object frame centres it with its longest side 1.
#[test]
fn the_input_frame_keeps_the_size_and_place_the_photo_shows() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let photo = d.join("small.png");
    // A disc 30 px across, left of and above the middle of a 96² photo.
    RgbaImage::from_fn(96, 96, |x, y| {
        let r = ((x as f32 - 30.0).powi(2) + (y as f32 - 40.0).powi(2)).sqrt();
        if r < 15.0 {
            Rgba([220, 120, 20, 255])
        } else {
            Rgba([250, 250, 250, 255])
        }
    })
    .save(&photo)
    .unwrap();
    let work = d.join("work");
    let bounds = |frame: &str| {
        let out = d.join(format!("{frame}.obj"));
        let mut args = fast_mesh(&photo, &out, "0").to_vec();
        args.extend(["--work", work.to_str().unwrap(), "--frame", frame]);
        let run = orbitmesh(&args);
        assert!(run.status.success(), "{}", text(&run.stderr));
        orbitmesh_geom::read_mesh(&out).unwrap().mesh.bounds()
    };
    let object = bounds("object");
    assert!((object.longest_side() - 1.0).abs() < 1e-4, "{object:?}");
    assert!(object.centre().iter().all(|c| c.abs() < 1e-4), "{object:?}");

    // One photo pixel on the plane through the origin: 2·2·tan(16.9°)/96. The camera sits on +X,
    // so the photo's right is +Y.
    let pixel = 4.0 * 16.9f64.to_radians().tan() / 96.0;
    let input = bounds("input");
    let across = input.max[1] - input.min[1];
    assert!(
        (across / (30.0 * pixel) - 1.0).abs() < 0.1,
        "{across} across, the photo shows {}",
        30.0 * pixel
    );
    let centre = input.centre()[1];
    assert!(
        (centre - (30.5 - 48.0) * pixel).abs() < 0.02,
        "centred at y = {centre}"
    );
    assert!(input.centre()[2] > 0.05, "above the middle: {input:?}");
}

/// Sends SIGINT to the process.
fn interrupt(child: &std::process::Child) {
    let sent = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

#[test]
fn ctrl_c_in_each_stage_leaves_a_work_folder_that_resumes_to_the_same_mesh() {
    use std::io::BufRead;

    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let photo = d.join("photo.png");
    write_photo(&photo);
    // The same file name as the interrupted run's: the GLB names its object after the file.
    std::fs::create_dir(d.join("reference")).unwrap();
    let reference = d.join("reference/ball.glb");
    let whole = orbitmesh(&fast_mesh(&photo, &reference, "60"));
    assert!(whole.status.success(), "{}", text(&whole.stderr));

    let out = d.join("ball.glb");
    let args = fast_mesh(&photo, &out, "60");
    let lock = d.join("ball.work/.lock");
    let mut interrupted = Vec::new();
    // Each stage in turn: the signal comes as the stage before it reports (or, for the first,
    // once the run holds its work folder).
    for (stage, after) in [
        ("prepare", None),
        ("orbit", Some("prepare")),
        ("coarse", Some("orbit")),
        ("fine", Some("coarse")),
        ("export", Some("fine")),
    ] {
        // Standard error into a file: read only at the end, a pipe could fill and block the run.
        let err_log = d.join("stderr.log");
        let mut child = crate::common::command()
            .args(args)
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&err_log).unwrap())
            .spawn()
            .unwrap();
        let mut lines = std::io::BufReader::new(child.stdout.take().unwrap()).lines();
        match after {
            None => wait_for(&lock, &mut child),
            Some(previous) => {
                let reported = lines.any(|l| l.unwrap().starts_with(previous));
                assert!(reported, "{previous} never reported");
            }
        }
        interrupt(&child);
        // Read to the end, so a run that goes on never writes into a closed pipe.
        lines.for_each(drop);
        let run = child.wait().unwrap();
        let err = std::fs::read_to_string(&err_log).unwrap();
        if run.code() == Some(130) {
            assert!(
                err.contains("run the same command again to resume"),
                "{stage}: {err}"
            );
            interrupted.push(stage);
        } else {
            // The stage ended before the signal came: the run goes on to the end.
            assert!(run.success(), "{stage}: {err}");
        }
        assert!(
            std::fs::read_dir(d).unwrap().all(|e| !e
                .unwrap()
                .file_name()
                .to_string_lossy()
                .ends_with(".tmp")),
            "{stage}: a temporary file was left beside the output"
        );
    }
    for stage in ["orbit", "coarse", "fine"] {
        assert!(
            interrupted.contains(&stage),
            "never interrupted in {stage}: {interrupted:?}"
        );
    }
    let rerun = orbitmesh(&args);
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    assert!(
        std::fs::read(&out).unwrap() == std::fs::read(&reference).unwrap(),
        "the resumed mesh differs from the uninterrupted one"
    );
}

#[test]
fn a_second_run_on_a_busy_work_folder_refuses_naming_the_lock() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let photo = d.join("photo.png");
    write_photo(&photo);
    let out = d.join("ball.glb");
    let args = fast_mesh(&photo, &out, "100");
    let mut first = spawn_quietly(&args);
    let lock = d.join("ball.work/.lock");
    wait_for(&lock, &mut first);
    let second = orbitmesh(&args);
    let err = text(&second.stderr);
    assert!(!second.status.success(), "{err}");
    assert!(
        err.contains(".lock") && err.contains("another orbitmesh run"),
        "{err}"
    );
    assert!(first.wait().unwrap().success());
    // The second run touched nothing: a rerun finds every stage current.
    let third = orbitmesh(&args);
    assert_eq!(text(&third.stdout).matches("up to date").count(), 4);
}
