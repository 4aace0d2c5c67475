//! What several commands take: meshes from files, up axes, the compute device.

use anyhow::Result;
use clap::Args;
use orbitmesh_geom::bake::{BakeOptions, TextureFormat};
use orbitmesh_geom::io::EngineOptions;
use orbitmesh_geom::{Pivot, UpAxis};
use orbitmesh_pipeline::{CoarseChoice, Overrides, Precision, Preset};
use orbitmesh_render::DeviceChoice;

/// A clap value enum with the variants of a library enum of the same names, and its conversion
/// into that enum (the libraries do not depend on clap).
macro_rules! value_enum {
    ($(#[$meta:meta])* $vis:vis enum $name:ident => $target:path {
        $($(#[$variant_meta:meta])* $variant:ident),+ $(,)?
    }) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
        $vis enum $name {
            $($(#[$variant_meta])* $variant),+
        }

        impl From<$name> for $target {
            fn from(value: $name) -> Self {
                match value {
                    $($name::$variant => Self::$variant),+
                }
            }
        }
    };
}
pub(crate) use value_enum;

value_enum! {
    pub enum UpArg => UpAxis {
        Z,
        Y,
    }
}

value_enum! {
    pub enum DeviceArg => DeviceChoice {
        Cpu,
        Gpu,
        /// A hardware GPU if there is one, else the CPU (a software Vulkan such as llvmpipe is
        /// not used)
        Auto,
    }
}

value_enum! {
    /// The coarse stage's method (`orbitmesh_pipeline::CoarseChoice`).
    pub enum CoarseArg => CoarseChoice {
        /// The NeRF on orbits of real views (SV3D's, imported frames, renders of a scan); the
        /// hull on the inflate baseline's, which are renders of a solid its silhouettes already
        /// describe
        Auto,
        /// The visual hull of the frames' silhouettes: seconds
        Hull,
        /// The hash-grid NeRF of `orbitmesh nerf` (fast or default preset, on the CPU): minutes,
        /// and it sees concavities no silhouette shows
        Nerf,
    }
}

value_enum! {
    /// How much work `mesh` and `bench` do in each stage (`orbitmesh_pipeline::Preset`).
    pub enum PresetArg => Preset {
        /// 256² orbit frames, a 128³ hull or 90 s of NeRF, 150 DMTet steps on a 48³ grid
        Fast,
        /// 576² frames (SV3D's), a 192³ hull or 300 s of NeRF, 600 DMTet steps on 64³
        Default,
        /// 576² frames, a 256³ hull or 600 s of NeRF, 1200 DMTet steps on 80³
        Best,
    }
}

/// How much work the stages of `mesh` and `bench` do, and where: a preset and what changes it.
#[derive(Args)]
pub struct PlanArgs {
    /// How much work each stage does
    #[arg(long, value_enum, default_value = "default")]
    preset: PresetArg,
    /// The coarse stage's method
    #[arg(long, value_enum, default_value = "auto")]
    coarse: CoarseArg,
    /// Training time of the NeRF in seconds [default: the preset's: 90 (fast), 300 (default),
    /// 600 (best)]
    #[arg(long, value_parser = parse_seconds)]
    nerf_seconds: Option<f64>,
    /// Steps of the DMTet fine stage; 0 skips it (the coarse mesh is exported, or measured)
    /// [default: 150 (fast), 600 (default), 1200 (best)]
    #[arg(long)]
    fine_steps: Option<usize>,
    /// Where to rasterize
    #[arg(long, value_enum, default_value = "auto")]
    pub device: DeviceArg,
}

impl PlanArgs {
    pub fn preset(&self) -> Preset {
        self.preset.into()
    }

    /// The overrides of the preset, with the hull's grid if given.
    pub fn overrides(&self, hull_resolution: Option<usize>) -> Overrides {
        Overrides {
            coarse: self.coarse.into(),
            nerf_seconds: self.nerf_seconds,
            hull_resolution,
            fine_steps: self.fine_steps,
        }
    }
}

value_enum! {
    /// Where an exported object's origin goes.
    pub enum PivotArg => Pivot {
        /// The centre of its base: the object stands on the ground plane over the origin
        Base,
        /// The centre of its bounding box
        Centre,
    }
}

/// How `mesh` and `export` lay a file out for game engines.
#[derive(Args)]
pub struct EngineArgs {
    /// Levels of detail in the GLB: LOD0 at the face budget, each next at half the faces of the
    /// one before (nodes <name>_LOD0, <name>_LOD1, …, and the MSFT_lod extension)
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..=8))]
    lods: u64,
    /// Where the origin goes [default: where the frame puts it]
    #[arg(long, value_enum)]
    pivot: Option<PivotArg>,
    /// Up axis of the written file [default: y for .glb, as glTF requires; z for .obj and .ply]
    #[arg(long, value_enum)]
    up: Option<UpArg>,
    /// PBR roughness of the GLB's material (its metallic is 0)
    #[arg(long, default_value_t = 1.0)]
    roughness: f32,
    /// Bake the detailed mesh onto the decimated one: a fresh UV atlas, its colour, and a
    /// tangent-space normal map (MikkTSpace, OpenGL/glTF green) that keeps the detail the
    /// budget drops (.glb or .obj)
    #[arg(long)]
    normal_map: bool,
    /// Side of the baked textures in texels
    #[arg(long, default_value_t = 1024, requires = "normal_map")]
    texture_size: u32,
    /// File format of the baked textures
    #[arg(long, value_enum, default_value = "png", requires = "normal_map")]
    texture_format: TextureFormatArg,
}

value_enum! {
    /// The file format of baked textures.
    pub enum TextureFormatArg => TextureFormat {
        Png,
        /// Smaller; lossy
        Jpeg,
    }
}

impl EngineArgs {
    pub fn options(&self) -> EngineOptions {
        EngineOptions {
            lods: self.lods as usize,
            up: self.up.map(UpAxis::from),
            roughness: self.roughness,
            bake: self.normal_map.then_some(BakeOptions {
                size: self.texture_size,
                format: self.texture_format.into(),
            }),
        }
    }

    pub fn pivot(&self) -> Option<Pivot> {
        self.pivot.map(Pivot::from)
    }
}

/// `--nerf-seconds`: a positive, finite number of seconds.
pub fn parse_seconds(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(s) if s > 0.0 && s.is_finite() => Ok(s),
        _ => Err(format!("{text}: not a positive number of seconds")),
    }
}

value_enum! {
    /// The float type SV3D's weights are held in (`orbitmesh_pipeline::Precision`).
    pub enum PrecisionArg => Precision {
        /// f16 on a GPU (half the memory), f32 on the CPU
        Auto,
        F32,
        F16,
    }
}
