//! A run's plan: every stage's settings, made from one [`Preset`] and the user's [`Overrides`],
//! declared once here for every front end.

use std::path::{Path, PathBuf};

use burn::tensor::FloatDType;
use orbitmesh_dmtet::RefineConfig;
use orbitmesh_geom::Pivot;
use orbitmesh_geom::io::EngineOptions;
use orbitmesh_orbit::{InflateProfile, OrbitOrder};
use orbitmesh_render::camera::{SV3D_ELEVATION_DEG, SV3D_FRAMES};
use orbitmesh_render::{DeviceChoice, Rasterizer};
use orbitmesh_segment::PrepareOptions;
use serde::{Deserialize, Serialize, Serializer};

use crate::error::{PipelineError, Result};
use crate::stages::coarse::CoarseMethod;
use crate::stages::export::check_size;

/// How much work each stage does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
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

    /// The coarse stage: the NeRF or the hull (see [`CoarseChoice`]) given whether the orbit is
    /// the inflate baseline's, with the preset's hull grid and NeRF time unless `overrides` say
    /// otherwise.
    pub fn coarse(self, overrides: &Overrides, inflate: bool) -> CoarseMethod {
        if overrides.coarse.is_nerf(inflate) {
            CoarseMethod::Nerf {
                fast: self == Preset::Fast,
                seconds: overrides
                    .nerf_seconds
                    .or((self == Preset::Best).then_some(600.0)),
            }
        } else {
            let grid = match self {
                Preset::Fast => 128,
                Preset::Default => 192,
                Preset::Best => 256,
            };
            CoarseMethod::Hull {
                resolution: overrides.hull_resolution.unwrap_or(grid),
            }
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

/// The coarse stage's method, as a user chooses it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CoarseChoice {
    /// The NeRF on orbits of real views (SV3D's, imported frames, renders of a scan); the hull on
    /// the inflate baseline's, which are renders of a solid its silhouettes already describe
    #[default]
    Auto,
    /// The visual hull of the frames' silhouettes: seconds
    Hull,
    /// The hash-grid NeRF: minutes, and it sees concavities no silhouette shows
    Nerf,
}

impl CoarseChoice {
    /// Whether the coarse stage trains the NeRF, given whether the orbit is the inflate
    /// baseline's.
    pub fn is_nerf(self, inflate: bool) -> bool {
        match self {
            CoarseChoice::Auto => !inflate,
            CoarseChoice::Hull => false,
            CoarseChoice::Nerf => true,
        }
    }
}

/// What a user may change of a preset; `None` keeps the preset's.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Overrides {
    pub coarse: CoarseChoice,
    /// Training time of the NeRF in seconds.
    pub nerf_seconds: Option<f64>,
    /// Grid points per side of the visual hull.
    pub hull_resolution: Option<usize>,
    /// Steps of the DMTet fine stage; 0 skips it.
    pub fine_steps: Option<usize>,
}

/// The float type SV3D's weights are held in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Precision {
    /// f16 on a GPU (half the memory), f32 on the CPU
    #[default]
    Auto,
    F32,
    F16,
}

impl Precision {
    /// The float type beside `rasterizer` (see [`tensor_device`]).
    pub fn dtype(self, rasterizer: &Rasterizer) -> FloatDType {
        match (self, rasterizer) {
            (Precision::F16, _) | (Precision::Auto, Rasterizer::Gpu(_)) => FloatDType::F16,
            (Precision::F32, _) | (Precision::Auto, Rasterizer::Cpu) => FloatDType::F32,
        }
    }
}

/// The tensor device beside a rasterizer: its GPU when it has one, else the CPU.
pub fn tensor_device(rasterizer: &Rasterizer) -> burn::tensor::Device {
    match rasterizer {
        Rasterizer::Gpu(_) => burn::tensor::Device::wgpu(Default::default()),
        Rasterizer::Cpu => burn::tensor::Device::flex(),
    }
}

/// The device IS-Net runs on for `device`: the GPU only where one is asked for, since probing for
/// one would come before the photo's checks.
pub fn segmenter_device(device: DeviceChoice) -> burn::tensor::Device {
    match device {
        DeviceChoice::Gpu => burn::tensor::Device::wgpu(Default::default()),
        DeviceChoice::Cpu | DeviceChoice::Auto => burn::tensor::Device::flex(),
    }
}

/// Which generator makes the orbit, with its settings. Serialised into the orbit stage's
/// fingerprint without the weights' path: their bytes are one of its inputs, so a checkpoint
/// moved elsewhere keeps the stage current.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "generator", rename_all = "snake_case")]
pub enum GeneratorConfig {
    /// The weight-free baseline: the silhouette inflated into a solid.
    Inflate {
        #[serde(serialize_with = "profile_name")]
        profile: InflateProfile,
    },
    /// SV3D's video diffusion model.
    Sv3d {
        #[serde(skip)]
        weights: PathBuf,
        steps: usize,
        seed: u64,
        /// Frames decoded at once.
        decode_chunk: usize,
        precision: Precision,
    },
}

impl GeneratorConfig {
    /// SV3D's sampling steps unless a user asks otherwise (the official sampler's 50).
    pub const SV3D_STEPS: usize = 50;
    /// The seed of SV3D's noise unless a user asks otherwise.
    pub const SV3D_SEED: u64 = 23;
    /// Frames SV3D decodes at once unless a user asks otherwise: a third of the orbit.
    pub const SV3D_DECODE_CHUNK: usize = 7;
    /// The inflate baseline's profile unless a user asks otherwise: on gso-mini's three objects
    /// the revolved profile measured closer to the scans than the round one (hull only, bowl
    /// 0.048 against 0.088 Chamfer), and no worse on the others.
    pub const INFLATE_PROFILE: InflateProfile = InflateProfile::Revolved;

    /// SV3D with `weights` and the default settings.
    pub fn sv3d(weights: PathBuf) -> Self {
        GeneratorConfig::Sv3d {
            weights,
            steps: Self::SV3D_STEPS,
            seed: Self::SV3D_SEED,
            decode_chunk: Self::SV3D_DECODE_CHUNK,
            precision: Precision::Auto,
        }
    }

    /// The inflate baseline with the default profile.
    pub fn inflate() -> Self {
        GeneratorConfig::Inflate {
            profile: Self::INFLATE_PROFILE,
        }
    }
}

fn profile_name<S: Serializer>(profile: &InflateProfile, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(profile.name())
}

/// The orbit's cameras and frames.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct OrbitConfig {
    pub frames: usize,
    pub elevation_deg: f64,
    /// The elevation the photo was taken from.
    pub input_elevation_deg: f64,
    /// Frame side in pixels.
    pub res: u32,
}

impl OrbitConfig {
    /// SV3D's orbit (21 frames at 10°) with frames of `res` pixels.
    pub fn sv3d(res: u32) -> Self {
        OrbitConfig {
            frames: SV3D_FRAMES,
            elevation_deg: SV3D_ELEVATION_DEG,
            input_elevation_deg: SV3D_ELEVATION_DEG,
            res,
        }
    }
}

/// A photo and how to prepare it.
#[derive(Debug, Clone)]
pub struct Photo {
    pub image: PathBuf,
    pub options: PrepareOptions,
    /// IS-Net was the segmenter to use but is not installed: the prepare stage says so where the
    /// classical model stood in.
    pub fell_back: bool,
}

/// Where the orbit's frames come from.
#[derive(Debug, Clone)]
pub enum OrbitSource {
    /// Generated from the prepared photo.
    Generate(GeneratorConfig),
    /// Frames made elsewhere (the official SV3D code's; renders of a scan, as `bench --oracle`'s).
    Import { dir: PathBuf, order: OrbitOrder },
}

/// The fine stage's settings.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FineConfig {
    pub refine: RefineConfig,
    /// Side of the baked texture.
    pub texture: u32,
}

/// The frame the exported mesh is placed in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MeshFrame {
    /// DESIGN.md's object frame: bounding box centred at the origin, longest side 1.
    Object,
    /// Where the photo's camera sees the object (the prepare stage's crop undone): for a photo
    /// rendered from a normalised scan, as `bench`'s are, the scan's normalised frame.
    Input,
    /// The orbit's own frame, untouched (for an imported orbit of a scan, the scan's frame).
    Orbit,
}

/// What the run ends with.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportConfig {
    /// Face budget (quadric decimation).
    pub faces: usize,
    pub frame: MeshFrame,
    /// The longest side in metres, if not the frame's own.
    pub size: Option<f64>,
    /// Where the origin goes (after `size`), if not where the frame puts it.
    pub pivot: Option<Pivot>,
    /// The file written (.glb, .obj or .ply), if any.
    pub out: Option<PathBuf>,
    /// Levels of detail, up axis and material of the file.
    pub engine: EngineOptions,
}

impl ExportConfig {
    /// Checks what can be checked of the output before the long stages: its format, its folder
    /// and that the folder takes a file, the size.
    pub fn check(&self) -> Result<()> {
        check_size(self.size)?;
        let Some(out) = &self.out else {
            return Ok(());
        };
        let ext = out
            .extension()
            .and_then(|e| e.to_str())
            .map(str::to_lowercase);
        if !matches!(ext.as_deref(), Some("glb" | "obj" | "ply")) {
            return Err(PipelineError::input(
                out,
                "the output must be .glb, .obj or .ply",
            ));
        }
        let parent = match out.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        };
        if !parent.is_dir() {
            return Err(PipelineError::input(
                parent,
                "no such folder for the output",
            ));
        }
        if out.is_dir() {
            return Err(PipelineError::input(out, "is a folder, not a mesh file"));
        }
        tempfile::NamedTempFile::new_in(parent).map_err(PipelineError::io(
            parent,
            "cannot write the output into this folder",
        ))?;
        self.engine.check(out)?;
        Ok(())
    }
}

/// Side of the fine stage's texture.
pub const FINE_TEXTURE: u32 = 1024;

/// Every stage's settings for one run.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The photo, prepared first; without one the orbit must be imported.
    pub photo: Option<Photo>,
    pub orbit: OrbitSource,
    pub orbit_config: OrbitConfig,
    pub coarse: CoarseMethod,
    /// None: the coarse mesh is exported, coloured from the frames.
    pub fine: Option<FineConfig>,
    pub export: ExportConfig,
    /// Where to rasterize (and run the tensors beside the rasterizer).
    pub device: DeviceChoice,
}

impl Plan {
    /// The plan of `preset` with `overrides`, for `orbit` (and `photo`), exporting `export`.
    pub fn new(
        preset: Preset,
        overrides: &Overrides,
        photo: Option<Photo>,
        orbit: OrbitSource,
        export: ExportConfig,
        device: DeviceChoice,
    ) -> Plan {
        let inflate = matches!(
            orbit,
            OrbitSource::Generate(GeneratorConfig::Inflate { .. })
        );
        let refine = preset.fine(overrides.fine_steps);
        Plan {
            photo,
            orbit,
            orbit_config: OrbitConfig::sv3d(preset.frame_side()),
            coarse: preset.coarse(overrides, inflate),
            fine: (refine.steps > 0).then_some(FineConfig {
                refine,
                texture: FINE_TEXTURE,
            }),
            export,
            device,
        }
    }

    /// What the run does, in words: `Orbit: SV3D; coarse stage: the hash-grid NeRF; fine stage:
    /// DMTet with SV3D's score distillation, textured.`
    pub fn describe(&self) -> String {
        let sv3d = self.sv3d().is_some();
        let orbit = match &self.orbit {
            OrbitSource::Import { .. } => "imported frames",
            _ if sv3d => "SV3D",
            _ => "the weight-free inflate baseline",
        };
        let coarse = match self.coarse {
            CoarseMethod::Hull { .. } => "visual hull",
            CoarseMethod::Nerf { .. } => "hash-grid NeRF",
        };
        let fine = match (&self.fine, sv3d) {
            (Some(_), true) => "fine stage: DMTet with SV3D's score distillation, textured",
            (Some(_), false) => "fine stage: DMTet, textured",
            (None, _) => "no fine stage",
        };
        format!("Orbit: {orbit}; coarse stage: the {coarse}; {fine}.")
    }

    /// SV3D's weights where SV3D makes the orbit (and so guides the fine stage).
    pub fn sv3d(&self) -> Option<&GeneratorConfig> {
        match &self.orbit {
            OrbitSource::Generate(g @ GeneratorConfig::Sv3d { .. }) => Some(g),
            _ => None,
        }
    }
}
