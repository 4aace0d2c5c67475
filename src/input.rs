//! What several commands take: meshes from files, up axes, the compute device.

use std::path::Path;

use anyhow::Result;
use burn::tensor::FloatDType;
use clap::ValueEnum;
use orbitmesh_dmtet::RefineConfig;
use orbitmesh_geom::{TriMesh, UpAxis, read_mesh};
use orbitmesh_render::{DeviceChoice, Rasterizer};

use crate::nerf::CoarseMethod;

#[derive(Clone, Copy, ValueEnum)]
pub enum UpArg {
    Z,
    Y,
}

impl From<UpArg> for UpAxis {
    fn from(u: UpArg) -> Self {
        match u {
            UpArg::Z => UpAxis::Z,
            UpArg::Y => UpAxis::Y,
        }
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum DeviceArg {
    Cpu,
    Gpu,
    /// A hardware GPU if there is one, else the CPU (a software Vulkan such as llvmpipe is not used)
    Auto,
}

impl From<DeviceArg> for DeviceChoice {
    fn from(d: DeviceArg) -> Self {
        match d {
            DeviceArg::Cpu => DeviceChoice::Cpu,
            DeviceArg::Gpu => DeviceChoice::Gpu,
            DeviceArg::Auto => DeviceChoice::Auto,
        }
    }
}

/// The coarse stage's method.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CoarseArg {
    /// The NeRF on orbits of real views (SV3D's, imported frames, renders of a scan); the hull on
    /// the inflate baseline's, which are renders of a solid its silhouettes already describe
    Auto,
    /// The visual hull of the frames' silhouettes: seconds
    Hull,
    /// The hash-grid NeRF of `orbitmesh nerf` (fast or default preset, on the CPU): minutes, and
    /// it sees concavities no silhouette shows
    Nerf,
}

impl CoarseArg {
    /// Whether the coarse stage trains the NeRF, given whether the orbit is the inflate
    /// baseline's.
    pub fn is_nerf(self, inflate: bool) -> bool {
        match self {
            CoarseArg::Auto => !inflate,
            CoarseArg::Hull => false,
            CoarseArg::Nerf => true,
        }
    }
}

/// How much work `mesh` and `bench` do in each stage.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Preset {
    /// 256² orbit frames, a 128³ hull or 90 s of NeRF, 150 DMTet steps on a 48³ grid
    Fast,
    /// 576² frames (SV3D's), a 192³ hull or 300 s of NeRF, 600 DMTet steps on 64³
    Default,
    /// 576² frames, a 256³ hull or 600 s of NeRF, 1200 DMTet steps on 80³
    Best,
}

impl Preset {
    /// The side of the orbit's frames.
    pub fn frame_side(self) -> u32 {
        match self {
            Preset::Fast => 256,
            Preset::Default | Preset::Best => 576,
        }
    }

    /// The coarse stage: `method` given whether the orbit is the inflate baseline's, with the
    /// preset's hull grid and NeRF time unless `resolution` or `nerf_seconds` say otherwise.
    pub fn coarse(
        self,
        method: CoarseArg,
        inflate: bool,
        resolution: Option<u64>,
        nerf_seconds: Option<f64>,
    ) -> CoarseMethod {
        if method.is_nerf(inflate) {
            CoarseMethod::Nerf {
                fast: self == Preset::Fast,
                seconds: nerf_seconds.or((self == Preset::Best).then_some(600.0)),
            }
        } else {
            let grid = match self {
                Preset::Fast => 128,
                Preset::Default => 192,
                Preset::Best => 256,
            };
            CoarseMethod::Hull(resolution.map_or(grid, |r| r as usize))
        }
    }

    /// The fine stage: `steps` (or the preset's), a sixth of them fitting the coarse mesh, on the
    /// preset's grid.
    pub fn fine(self, steps: Option<usize>) -> RefineConfig {
        let (resolution, preset_steps) = match self {
            Preset::Fast => (48, 150),
            Preset::Default => (64, 600),
            Preset::Best => (80, 1200),
        };
        RefineConfig {
            resolution,
            ..RefineConfig::with_steps(steps.unwrap_or(preset_steps))
        }
    }
}

/// `--nerf-seconds`: a positive, finite number of seconds.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("{text}: not a positive number of seconds")),
    }
}

/// The tensor device beside a rasterizer: its GPU when it has one, else the CPU.
pub fn tensor_device(rasterizer: &Rasterizer) -> burn::tensor::Device {
    match rasterizer {
        Rasterizer::Gpu(_) => burn::tensor::Device::wgpu(Default::default()),
        Rasterizer::Cpu => burn::tensor::Device::flex(),
    }
}

/// The name clap gives `value` on the command line (`revolved`, `f16`), for settings and reports.
pub fn value_name(value: impl ValueEnum) -> String {
    value
        .to_possible_value()
        .expect("no variant is skipped")
        .get_name()
        .to_string()
}

/// The float type SV3D's weights are held in.
#[derive(Clone, Copy, ValueEnum)]
pub enum PrecisionArg {
    /// f16 on a GPU (half the memory), f32 on the CPU
    Auto,
    F32,
    F16,
}

impl PrecisionArg {
    /// The float type beside `rasterizer` (see [`tensor_device`]).
    pub fn dtype(self, rasterizer: &Rasterizer) -> FloatDType {
        match (self, rasterizer) {
            (PrecisionArg::F16, _) | (PrecisionArg::Auto, Rasterizer::Gpu(_)) => FloatDType::F16,
            (PrecisionArg::F32, _) | (PrecisionArg::Auto, Rasterizer::Cpu) => FloatDType::F32,
        }
    }
}

/// Reads and checks a mesh, prints its warnings, and turns it into the Z-up frame.
pub fn load_mesh(path: &Path, up: UpArg) -> Result<TriMesh> {
    let file = read_mesh(path)?;
    for w in &file.warnings {
        eprintln!("warning: {w}");
    }
    let mut mesh = file.mesh;
    mesh.transform(&UpAxis::from(up).to_z_up());
    Ok(mesh)
}
