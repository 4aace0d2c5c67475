//! Times SV3D's port on the tiny parity fixture (`shared/fixtures/sv3d-tiny`, or
//! `ORBITMESH_SV3D_FIXTURES`) per device: one UNet call on the recorded 21-frame inputs, a whole
//! `Sv3d::generate` with 4 steps (CLIP, VAE encoder, 8 UNet calls, decoder), and the decoder alone
//! on the recorded latent, each as the median of N runs after one warm-up (which pays for wgpu's
//! shader compilation), then the wgpu/flex ratio. It then estimates what the full-size `sv3d_p`
//! costs from the fixture's manifest of its tensors: parameters, weight memory, and the FLOPs of
//! one UNet call counted as 2 × weights × the positions each weight is applied at (plus the
//! attention matrices), and the GPU time of a 50-step orbit at an assumed throughput. Run it with
//! `cargo build --workspace --examples && target/debug/examples/sv3d_bench [flex|wgpu|both] [N]`
//! (default both, N = 3).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Device, DeviceKind, Tensor, TensorData};
use orbitmesh_sv3d::{
    SampleOptions, Sv3d, Sv3dConfig, UnetInputs, VaeDecoder, Variant, VideoUnet, Weights, prefix,
};

/// SV3D's frames, and the full-size model's latent side (576 / 8).
const FRAMES: usize = 21;
const FULL_LATENT: usize = 72;
/// The published script's sampling: 50 steps, each a conditional and an unconditional call.
const FULL_STEPS: usize = 50;
/// Assumed sustained f16 throughput of a 24 GB GPU (an RTX 4090-class card reaches about a third
/// of its ~165 TFLOP/s dense peak on convolution-heavy diffusion UNets).
const ASSUMED_TFLOPS: f64 = 50.0;

fn folder() -> PathBuf {
    std::env::var_os("ORBITMESH_SV3D_FIXTURES")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/work/shared/fixtures/sv3d-tiny"))
}

fn read<const D: usize>(io: &Weights, name: &str, device: &Device) -> Tensor<D> {
    let (values, shape) = io.read(name).unwrap();
    let shape: [usize; D] = shape.try_into().unwrap();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// Median seconds of `runs` calls of `f` after one warm-up; `f` returns a tensor that is read
/// back, so that a lazy device has finished the work inside the timing.
fn time<const D: usize>(runs: usize, mut f: impl FnMut() -> Tensor<D>) -> f64 {
    f().into_data();
    let mut seconds: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f().into_data();
            start.elapsed().as_secs_f64()
        })
        .collect();
    seconds.sort_by(f64::total_cmp);
    seconds[seconds.len() / 2]
}

/// Median seconds of [UNet call, 4-step generate, decode] on `device`.
fn bench(device: &Device, runs: usize) -> [f64; 3] {
    let dir = folder();
    let config = std::fs::read_to_string(dir.join("sv3d_tiny_config.json"))
        .unwrap_or_else(|e| panic!("{}: {e} (set ORBITMESH_SV3D_FIXTURES)", dir.display()));
    let config = Sv3dConfig::from_json(&config).unwrap();
    let weights = Weights::open(&dir.join("sv3d_tiny.safetensors"), device).unwrap();
    let io = Weights::open(&dir.join("sv3d_tiny_io.safetensors"), device).unwrap();
    // The UNet and decoder on their own, since `Sv3d` keeps its parts private.
    let unet = VideoUnet::load(&weights.root().at(prefix::UNET), &config.unet);
    let decoder = VaeDecoder::load(&weights.root().at(prefix::DECODER), &config.vae);
    let scale_factor = config.scale_factor;
    let model = Sv3d::from_weights(&weights, config, Variant::P).unwrap();

    let clip: Tensor<3> = read(&io, "clip_embedding", device);
    let [_, k, d] = clip.dims();
    let timesteps: Vec<f32> = read::<1>(&io, "unet_timesteps", device)
        .into_data()
        .try_to_vec()
        .unwrap();
    let x: Tensor<4> = read(&io, "unet_x", device);
    let y: Tensor<2> = read(&io, "vector_y", device);
    let unet_s = time(runs, || {
        unet.forward(UnetInputs {
            x: x.clone(),
            timesteps: timesteps.clone(),
            context: clip.clone().expand([FRAMES, k, d]),
            y: y.clone(),
            frames: FRAMES,
        })
    });

    let image: Tensor<4> = read(&io, "image", device);
    let to_vec = |name| -> Vec<f32> {
        read::<1>(&io, name, device)
            .into_data()
            .try_to_vec()
            .unwrap()
    };
    let cameras: Vec<(f32, f32)> = to_vec("polars_rad")
        .into_iter()
        .zip(to_vec("azimuths_rad"))
        .collect();
    let options = SampleOptions {
        steps: 4,
        resolution: 64,
        ..SampleOptions::default()
    };
    let generate_s = time(runs, || {
        model
            .generate(image.clone(), &cameras, &options, |_, _| {})
            .unwrap()
    });

    let latent: Tensor<4> = read(&io, "sampled_latent", device);
    let decode_s = time(runs, || {
        decoder
            .decode_chunked(
                latent.clone() / scale_factor,
                options.decode_chunk,
                |_, _| Ok::<(), std::convert::Infallible>(()),
            )
            .unwrap()
    });
    [unet_s, generate_s, decode_s]
}

/// The full-size UNet's FLOPs per call on 21 frames of 72×72 latents, from the tensor manifest.
/// Each weight matrix or kernel costs 2 FLOPs per position it is applied at: every latent
/// position of its resolution level, or once per frame for the embedding layers and the
/// cross-attention keys and values (one CLIP token). Self-attention adds 4·T²·C for its scores
/// and weighted sum over T tokens: the 72²-ish positions of a frame (spatial) or the 21 frames of
/// a position (temporal). Norms and element-wise work are left out.
fn unet_flops(manifest: &BTreeMap<String, Vec<usize>>) -> f64 {
    let f = FRAMES as f64;
    let mut flops = 0.0;
    for (name, shape) in manifest {
        let Some(rest) = name.strip_prefix(&format!("{}.", prefix::UNET)) else {
            continue;
        };
        if shape.len() < 2 {
            continue;
        }
        let params: f64 = shape.iter().product::<usize>() as f64;
        let parts: Vec<&str> = rest.split('.').collect();
        let block: usize = parts.get(1).and_then(|p| p.parse().ok()).unwrap_or(0);
        // The level each block runs at; 3 res+attention groups per level on each side.
        let level = match parts[0] {
            "input_blocks" => block / 3,
            "middle_block" => 3,
            "output_blocks" => 3 - block / 3,
            _ => 0,
        };
        // An upsampler's conv (`output_blocks.N.M.conv`) runs at the next finer level.
        let level = if parts[0] == "output_blocks" && parts.get(3) == Some(&"conv") {
            level - 1
        } else {
            level
        };
        let side = (FULL_LATENT >> level) as f64;
        let per_frame = rest.starts_with("time_embed")
            || rest.starts_with("label_emb")
            || rest.contains("emb_layers")
            || rest.contains("time_pos_embed")
            || rest.contains("attn2.to_k")
            || rest.contains("attn2.to_v");
        let positions = if per_frame { f } else { f * side * side };
        flops += 2.0 * params * positions;
        if rest.contains("attn1.to_q") {
            let channels = shape[0] as f64;
            let tokens = side * side;
            flops += if rest.contains("time_stack") {
                tokens * 4.0 * f * f * channels
            } else {
                f * 4.0 * tokens * tokens * channels
            };
        }
    }
    flops
}

fn full_size_estimate() {
    let path = folder().join("sv3d_p_manifest.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    let tensors: BTreeMap<String, Vec<usize>> =
        serde_json::from_value(manifest["sv3d_p"].clone()).unwrap();
    let params: usize = tensors.values().map(|s| s.iter().product::<usize>()).sum();
    let flops = unet_flops(&tensors);
    let calls = FULL_STEPS * 2;
    let seconds = flops * calls as f64 / (ASSUMED_TFLOPS * 1e12);
    println!("\nfull-size sv3d_p (from {}):", path.display());
    println!("  parameters          {:.3} G", params as f64 / 1e9);
    println!(
        "  weights             {:.2} GB in f16, {:.2} GB in f32",
        params as f64 * 2.0 / 1e9,
        params as f64 * 4.0 / 1e9
    );
    println!(
        "  UNet call           {:.1} TFLOP ({FRAMES} frames of {FULL_LATENT}² latents; 2 × weights × positions + attention)",
        flops / 1e12
    );
    println!("  calls per orbit     {calls} ({FULL_STEPS} steps × 2 for CFG)");
    println!(
        "  UNet time per orbit {seconds:.0} s at an assumed {ASSUMED_TFLOPS} TFLOP/s sustained f16 (24 GB GPU), VAE and CLIP not included"
    );
    // The largest activation of a UNet call where attention materialises its scores: the
    // finest level's spatial self-attention, frames × heads × tokens², held twice (the scores
    // and their softmax). A fused (flash) attention kernel keeps none of it.
    let unet = Sv3dConfig::sv3d(Variant::P).unet;
    let heads = unet.model_channels / unet.num_head_channels;
    let tokens = (FULL_LATENT * FULL_LATENT) as f64;
    let scores = 2.0 * (FRAMES * heads) as f64 * tokens * tokens;
    let weights = params as f64;
    println!(
        "  attention scores    {:.1} GB in f16, {:.1} GB in f32 ({FRAMES} frames × {heads} heads × {}² tokens, scores and softmax) if materialised",
        scores * 2.0 / 1e9,
        scores * 4.0 / 1e9,
        FULL_LATENT * FULL_LATENT
    );
    println!(
        "  peak on a GPU       ≈ {:.0} GB in f16, {:.0} GB in f32 (weights + attention scores): f16 fits 24 GB, f32 does not without a fused attention",
        (weights + scores) * 2.0 / 1e9,
        (weights + scores) * 4.0 / 1e9
    );
}

fn main() {
    let mut args = std::env::args().skip(1);
    let which = args.next().unwrap_or_else(|| "both".into());
    let runs: usize = args.next().map_or(3, |n| n.parse().expect("N: a count"));
    let devices: Vec<(&str, Device)> = match which.as_str() {
        "flex" => vec![("flex", Device::flex())],
        "wgpu" => vec![("wgpu", Device::wgpu(DeviceKind::DefaultDevice))],
        "both" => vec![
            ("flex", Device::flex()),
            ("wgpu", Device::wgpu(DeviceKind::DefaultDevice)),
        ],
        other => panic!("{other}: expected flex, wgpu or both"),
    };
    println!("tiny SV3D fixture, median of {runs} runs after a warm-up, seconds");
    println!(
        "{:<6} {:>10} {:>18} {:>10}",
        "device", "UNet call", "generate 4 steps", "decode"
    );
    let mut results = Vec::new();
    for (name, device) in &devices {
        let [unet, generate, decode] = bench(device, runs);
        println!("{name:<6} {unet:>10.3} {generate:>18.3} {decode:>10.3}");
        results.push([unet, generate, decode]);
    }
    if let [flex, wgpu] = results[..] {
        println!(
            "{:<6} {:>10.1} {:>18.1} {:>10.1}",
            "ratio",
            wgpu[0] / flex[0],
            wgpu[1] / flex[1],
            wgpu[2] / flex[2]
        );
        println!("(ratio: wgpu / flex)");
    }
    full_size_estimate();
}
