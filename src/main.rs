//! The `orbitmesh` command line.

mod bench;
mod eval;
mod export;
mod hull;
mod input;
mod interrupt;
mod mesh;
mod models;
mod nerf;
mod orbit;
mod prepare;
mod progress;
mod refine;
mod render;
mod serve;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "orbitmesh",
    version,
    about = "One photo of an object to a textured 3D mesh, and metrics against scans"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the benchmark protocol over a GSO-layout dataset and write a report
    Bench(bench::BenchArgs),
    /// Measure a mesh against a ground-truth scan (Chamfer, F-score, volume IoU, normal consistency)
    Eval(eval::EvalArgs),
    /// One photo to a mesh (.glb, .obj, .ply) through every stage, resumable
    Mesh(mesh::MeshArgs),
    /// Turn a photo into SV3D's input: the object's mask, centred, 85% of a square frame
    Prepare(prepare::PrepareArgs),
    /// Generate the frames of an orbit around a prepared image's object
    Orbit(orbit::OrbitArgs),
    /// Render a mesh from an orbit of cameras: RGBA frames, cameras.json, transforms.json
    Render(render::RenderArgs),
    /// Train the hash-grid NeRF on an orbit and extract its mesh (the coarse stage)
    Nerf(nerf::NerfArgs),
    /// Carve the visual hull of an orbit's silhouettes (the baseline for every reconstruction)
    Hull(hull::HullArgs),
    /// Refine a coarse mesh against its orbit: DMTet and differentiable rasterization (the fine stage)
    Refine(refine::RefineArgs),
    /// Convert a mesh to GLB (for game engines), OBJ or PLY
    Export(export::ExportArgs),
    /// Install the optional learned models (the IS-Net background remover)
    Models(models::ModelsArgs),
    /// A local web app and HTTP API: photos in, meshes out, live progress, a 3D viewer
    Serve(serve::ServeArgs),
}

/// Bad input and failed commands exit with 2 (as clap does for bad arguments); a panic would be a
/// bug and exits with 101.
const EXIT_FAILURE: u8 = 2;

fn main() -> ExitCode {
    keep_large_allocations_in_the_heap();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Bench(args) => bench::run(args),
        Command::Eval(args) => eval::run(args),
        Command::Mesh(args) => mesh::run(args),
        Command::Prepare(args) => prepare::run(args),
        Command::Orbit(args) => orbit::run(args),
        Command::Render(args) => render::run(args),
        Command::Nerf(args) => nerf::run(args),
        Command::Hull(args) => hull::run(args),
        Command::Refine(args) => refine::run(args),
        Command::Export(args) => export::run(args),
        Command::Models(args) => models::run(args),
        Command::Serve(args) => serve::run(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", orbitmesh_pipeline::one_line(e.as_ref()));
            ExitCode::from(EXIT_FAILURE)
        }
    }
}

/// IS-Net and SV3D allocate and free tensors of tens of MiB in every layer. glibc serves each from
/// its own mmap and unmaps it when freed, so the kernel faults in and zeroes every page again: a
/// sixth of IS-Net's time on 2 cores (sys 3.0 s of 12 s of CPU). Kept in the heap, freed blocks
/// are reused; peak memory stayed the same (`prepare --segmenter isnet` 639 MB, `mesh --preset fast` 78 MB).
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_large_allocations_in_the_heap() {
    // SAFETY: mallopt only sets allocator parameters; it runs before any other thread exists.
    unsafe {
        libc::mallopt(libc::M_MMAP_MAX, 0);
        libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_large_allocations_in_the_heap() {}
