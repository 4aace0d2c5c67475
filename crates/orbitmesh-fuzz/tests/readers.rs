//! Every reader of a file a user gives, fed mutated copies of a valid seed: each must return a
//! value or an error (no panic), holding no more memory at any moment than the bound stated
//! beside it. CI runs a fixed-seed slice (`orbitmesh_fuzz::CI_CASES` per reader);
//! `scripts/fuzz.sh N` runs N.

use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::Device;
use orbitmesh_fuzz::{CountingAllocator, MIB, Mutation, apply, fuzz, peak_bytes, small_bound};
use orbitmesh_geom::io::{write_glb, write_obj, write_ply};
use orbitmesh_geom::{Material, TriMesh, read_mesh, shapes};
use orbitmesh_nn::weights::Weights;
use orbitmesh_pipeline::{
    StageRecord, fingerprint, is_current, read_stage_record, write_stage_record,
};
use orbitmesh_render::camera::{self, Intrinsics, OrbitFrame};
use orbitmesh_segment::{PrepareOptions, Segmenter, prepare};

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// What a mesh reader may hold: 256 bytes per byte of (uncompressed) file, plus 16 MiB. A
/// binary PLY vertex is 12 bytes on disk and its parsed property map, positions and split corners
/// take a few hundred in memory; a count the file declares but does not back must not count.
fn mesh_bound(len: usize) -> usize {
    256 * len + 16 * MIB
}

/// What an image reader may hold: 512 MiB beside the file. A header may declare up to 40
/// megapixels (more is refused before decoding), which the decoder needs a few bytes each for
/// whether or not the data backs them (JPEG compresses a plain image to almost nothing); `prepare`
/// then works on a copy at most 3072 pixels across, so its own buffers do not grow with the photo.
fn image_bound(len: usize) -> usize {
    512 * MIB + mesh_bound(len)
}

/// A cube with per-vertex colours and UVs, one textured material.
fn cube(texture: &Path) -> TriMesh {
    let mut mesh = shapes::cuboid([0.0; 3], [1.0; 3]);
    let n = mesh.positions.len();
    mesh.uvs = Some((0..n).map(|i| [i as f32 / n as f32, 0.5]).collect());
    mesh.colors = Some((0..n).map(|i| [0.1, i as f32 / n as f32, 0.9]).collect());
    let mut material = Material::new("skin");
    material.diffuse_texture = Some(texture.to_path_buf());
    mesh.materials = vec![material];
    mesh.face_materials = vec![0; mesh.faces.len()];
    mesh
}

fn png(dir: &Path) -> PathBuf {
    let path = dir.join("texture.png");
    image::RgbaImage::from_fn(8, 8, |x, y| {
        image::Rgba([x as u8 * 30, y as u8 * 30, 90, 255])
    })
    .save(&path)
    .unwrap();
    path
}

/// Writes the bytes to `dir/name` and returns that path.
fn writer(dir: &Path, name: &str) -> impl Fn(&[u8]) -> PathBuf {
    let path = dir.join(name);
    move |bytes: &[u8]| {
        std::fs::write(&path, bytes).unwrap();
        path.clone()
    }
}

fn read_any_mesh(path: &Path) -> Result<(), String> {
    read_mesh(path).map(drop).map_err(|e| e.to_string())
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut z = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    z.write_all(bytes).unwrap();
    z.finish().unwrap()
}

/// The length a gzip stream inflates to (at most 256 MiB read), or its own where it is not one.
fn inflated_len(bytes: &[u8]) -> usize {
    let mut z = flate2::read::MultiGzDecoder::new(bytes);
    let mut sink = std::io::sink();
    let n = std::io::copy(&mut std::io::Read::take(&mut z, 256 << 20), &mut sink).unwrap_or(0);
    (n as usize).max(bytes.len())
}

#[test]
fn obj_and_its_mtl() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_obj(&d.join("seed.obj"), &cube(&png(d))).unwrap();
    let obj = std::fs::read(d.join("seed.obj")).unwrap();
    let mtl = std::fs::read(d.join("seed.mtl")).unwrap();
    // The mutated OBJ names the seed's (intact) MTL; the mutated MTL is read by an intact OBJ.
    fuzz(
        "OBJ",
        &obj,
        writer(d, "model.obj"),
        |b| mesh_bound(b.len()),
        read_any_mesh,
    );
    let named = String::from_utf8(obj)
        .unwrap()
        .replace("mtllib seed.mtl", "mtllib model.mtl");
    std::fs::write(d.join("model.obj"), named).unwrap();
    let obj_len = std::fs::metadata(d.join("model.obj")).unwrap().len() as usize;
    let mtl_writer = writer(d, "model.mtl");
    fuzz(
        "MTL",
        &mtl,
        |b| {
            mtl_writer(b);
            d.join("model.obj")
        },
        |b| mesh_bound(b.len() + obj_len),
        read_any_mesh,
    );
}

#[test]
fn ply_binary_and_ascii() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let mesh = cube(&png(d));
    write_ply(&d.join("seed.ply"), &mesh).unwrap();
    let binary = std::fs::read(d.join("seed.ply")).unwrap();
    fuzz(
        "binary PLY",
        &binary,
        writer(d, "model.ply"),
        |b| mesh_bound(b.len()),
        read_any_mesh,
    );
    let mut ascii = format!(
        "ply\nformat ascii 1.0\nelement vertex {}\nproperty float x\nproperty float y\n\
         property float z\nproperty uchar red\nproperty uchar green\nproperty uchar blue\n\
         element face {}\nproperty list uchar int vertex_indices\nend_header\n",
        mesh.positions.len(),
        mesh.faces.len()
    );
    for [x, y, z] in &mesh.positions {
        ascii += &format!("{x} {y} {z} 200 100 50\n");
    }
    for [a, b, c] in &mesh.faces {
        ascii += &format!("3 {a} {b} {c}\n");
    }
    read_mesh(&writer(d, "check.ply")(ascii.as_bytes())).expect("the ASCII seed reads");
    fuzz(
        "ASCII PLY",
        ascii.as_bytes(),
        writer(d, "model.ply"),
        |b| mesh_bound(b.len()),
        read_any_mesh,
    );
}

#[test]
fn ply_gz() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_ply(&d.join("seed.ply"), &cube(&png(d))).unwrap();
    let ply = std::fs::read(d.join("seed.ply")).unwrap();
    // The compressed stream mutated (the inflater's errors), and the PLY inside it (the parser
    // behind the inflater).
    fuzz(
        "PLY.gz stream",
        &gzip(&ply),
        writer(d, "model.ply.gz"),
        |b| mesh_bound(inflated_len(b)),
        read_any_mesh,
    );
    let path = d.join("inner.ply.gz");
    fuzz(
        "PLY inside .gz",
        &ply,
        |b| {
            std::fs::write(&path, gzip(b)).unwrap();
            path.clone()
        },
        |b| mesh_bound(b.len()),
        read_any_mesh,
    );
}

#[test]
fn off() {
    let dir = tempfile::tempdir().unwrap();
    let mesh = shapes::uv_sphere(0.5, 4, 6);
    let mut off = format!("OFF\n{} {} 0\n", mesh.positions.len(), mesh.faces.len());
    for [x, y, z] in &mesh.positions {
        off += &format!("{x} {y} {z}\n");
    }
    for [a, b, c] in &mesh.faces {
        off += &format!("3 {a} {b} {c}\n");
    }
    let d = dir.path();
    read_mesh(&writer(d, "check.off")(off.as_bytes())).expect("the OFF seed reads");
    fuzz(
        "OFF",
        off.as_bytes(),
        writer(d, "model.off"),
        |b| mesh_bound(b.len()),
        read_any_mesh,
    );
}

#[test]
fn glb() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    write_glb(&d.join("seed.glb"), &cube(&png(d)), 1.0).unwrap();
    let glb = std::fs::read(d.join("seed.glb")).unwrap();
    fuzz(
        "GLB",
        &glb,
        writer(d, "model.glb"),
        |b| mesh_bound(b.len()),
        read_any_mesh,
    );
}

fn frames() -> Vec<OrbitFrame> {
    let intrinsics = Intrinsics::from_fov(33.8, 64, 64);
    camera::orbit(&[0.0, 120.0, 240.0], 10.0, 2.0)
        .into_iter()
        .enumerate()
        .map(|(k, view)| OrbitFrame {
            file: format!("{k:03}.png"),
            view: Some(view),
            camera: view.camera(intrinsics),
        })
        .collect()
}

#[test]
fn cameras_and_transforms_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    camera::write_cameras_json(&d.join("cameras.json"), &frames()).unwrap();
    camera::write_transforms_json(&d.join("transforms.json"), &frames()).unwrap();
    let cameras = std::fs::read(d.join("cameras.json")).unwrap();
    let transforms = std::fs::read(d.join("transforms.json")).unwrap();
    fuzz(
        "cameras.json",
        &cameras,
        writer(d, "c.json"),
        |b| small_bound(b.len()),
        |p| {
            camera::read_cameras_json(p)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    );
    fuzz(
        "transforms.json",
        &transforms,
        writer(d, "t.json"),
        |b| small_bound(b.len()),
        |p| {
            camera::read_transforms_json(p, None)
                .map(drop)
                .map_err(|e| e.to_string())
        },
    );
}

/// A stage's record in the work folder: a damaged or hostile stage.json only makes its stage run
/// again (no record, not current), and a record counts as current only where it reads whole with
/// the stage's fingerprint.
#[test]
fn stage_json() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let settings = serde_json::json!({ "steps": 300, "resolution": [576, 576], "name": "prepare" });
    let fp = fingerprint(&settings, &[&png(d)]).unwrap();
    let stage = d.join("prepare");
    std::fs::create_dir(&stage).unwrap();
    let details = serde_json::json!({ "frames": 21, "mask_from": "the image's alpha" });
    write_stage_record(
        &stage,
        &StageRecord::new("prepare", fp.clone(), details, 1.5),
    )
    .unwrap();
    assert!(is_current(&stage, &fp, &[]), "the seed record is current");
    let seed = std::fs::read(stage.join("stage.json")).unwrap();
    fuzz(
        "stage.json",
        &seed,
        writer(&stage, "stage.json"),
        |b| small_bound(b.len()),
        |p| {
            let folder = p.parent().unwrap();
            let matches = read_stage_record(folder).is_some_and(|r| r.fingerprint == fp);
            if is_current(folder, &fp, &[]) != matches {
                return Err("is_current disagrees with the record it reads".into());
            }
            Ok(())
        },
    );
}

#[test]
fn safetensors_header() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let a: Vec<u8> = (0..6).flat_map(|i| (i as f32).to_le_bytes()).collect();
    let b: Vec<u8> = (0..4u16).flat_map(|i| (i * 1000).to_le_bytes()).collect();
    let views = [
        (
            "a",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3], &a).unwrap(),
        ),
        (
            "b",
            safetensors::tensor::TensorView::new(safetensors::Dtype::F16, vec![4], &b).unwrap(),
        ),
    ];
    let seed = safetensors::serialize(views, None).unwrap();
    let device = Device::flex();
    fuzz(
        "safetensors",
        &seed,
        writer(d, "w.safetensors"),
        |b| small_bound(b.len()),
        |p| {
            let weights = Weights::open(p, &device).map_err(|e| e.to_string())?;
            let root = weights.root();
            let _ = (root.tensor("a", [2, 3]), root.tensor("b", [4]));
            weights.finish(&[""]).map_err(|e| e.to_string())
        },
    );
}

/// The options the photo cases prepare with (a small output: the reader is under test).
const PHOTO_OPTIONS: PrepareOptions = PrepareOptions {
    size: 64,
    fill: 0.85,
    mask: None,
    segmenter: Segmenter::Classical,
};

/// The seed photo in `format`: an object on a plain background, as `prepare` expects one.
fn seed_photo(format: image::ImageFormat) -> Vec<u8> {
    let photo = image::RgbImage::from_fn(32, 24, |x, y| {
        let inside = (8..24).contains(&x) && (6..18).contains(&y);
        if inside {
            image::Rgb([200, 60, 30])
        } else {
            image::Rgb([240, 240, 240])
        }
    });
    let encoded: image::DynamicImage = photo.into();
    let encoded = if format == image::ImageFormat::WebP {
        image::DynamicImage::ImageRgba8(encoded.to_rgba8())
    } else {
        encoded
    };
    let mut seed = std::io::Cursor::new(Vec::new());
    encoded.write_to(&mut seed, format).unwrap();
    seed.into_inner()
}

fn prepare_photo(path: &Path) -> Result<(), String> {
    prepare(path, &PHOTO_OPTIONS)
        .map(drop)
        .map_err(|e| e.to_string())
}

#[test]
fn photos() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (name, format) in [
        ("photo.png", image::ImageFormat::Png),
        ("photo.jpg", image::ImageFormat::Jpeg),
        ("photo.webp", image::ImageFormat::WebP),
    ] {
        let seed = seed_photo(format);
        prepare_photo(&writer(d, name)(&seed)).expect("the seed photo prepares");
        fuzz(
            name,
            &seed,
            writer(d, name),
            |b| image_bound(b.len()),
            prepare_photo,
        );
    }
}

/// The fuzzer's find: 7,167 bytes of JPEG declaring a large image, which `prepare` held 1.51 GB
/// for (segmenting and cropping at the photo's full size) before it worked at `WORK_SIDE`.
#[test]
fn a_small_jpeg_declaring_a_large_photo_prepares_within_the_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mutations = [
        Mutation::Repeat {
            at: 2_735_058_671_565_127_981,
            len: 188,
            times: 34,
        },
        Mutation::FlipBit {
            at: 6_245_244_396_448_069_500,
            bit: 6,
        },
    ];
    let bytes = apply(&seed_photo(image::ImageFormat::Jpeg), &mutations);
    assert_eq!(bytes.len(), 7167, "the input the fuzzer found");
    let path = writer(dir.path(), "found.jpg")(&bytes);
    let (w, h) = image::ImageReader::open(&path)
        .unwrap()
        .with_guessed_format()
        .unwrap()
        .into_dimensions()
        .unwrap();
    assert!(w.max(h) > 3072, "it declares {w}×{h}");
    let (_, peak) = peak_bytes(|| prepare_photo(&path));
    assert!(
        peak <= image_bound(bytes.len()),
        "held {peak} bytes ({w}×{h})"
    );
}
