//! What a job asks for, as the API takes it: one flat JSON object such as `{"preset": "fast",
//! "format": "glb", "fine_steps": 0}`, every key optional, and the plan it makes.

use std::path::{Path, PathBuf};

use orbitmesh_geom::io::EngineOptions;
use orbitmesh_pipeline::{
    ExportConfig, GeneratorConfig, MeshFrame, OrbitSource, Overrides, Photo, Plan, Preset,
    segmenter_device,
};
use orbitmesh_segment::{PrepareOptions, SegmenterRequest, install};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::ServeConfig;

/// The file a job's result is downloaded as.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResultFormat {
    /// `model.glb`: one file, textures embedded.
    #[default]
    Glb,
    /// `model.zip`: the OBJ with its MTL and texture.
    Obj,
}

impl ResultFormat {
    /// The job's file of this format.
    pub fn file_name(self) -> &'static str {
        match self {
            ResultFormat::Glb => "model.glb",
            ResultFormat::Obj => "model.zip",
        }
    }
}

/// Which generator makes the orbit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GeneratorOption {
    Inflate,
    /// Needs the server to have been started with `--weights`.
    Sv3d,
}

/// A job's options. Stored in its `job.json` as they were checked, so a restarted server runs it
/// with the same settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOptions {
    #[serde(default = "default_preset")]
    pub preset: Preset,
    #[serde(default)]
    pub format: ResultFormat,
    #[serde(default)]
    pub segmenter: SegmenterRequest,
    /// None: SV3D where the server has weights, else the inflate baseline.
    #[serde(default)]
    pub generator: Option<GeneratorOption>,
    /// Face budget of the result.
    #[serde(default = "default_faces")]
    pub faces: usize,
    /// What the job changes of the preset (the pipeline's own [`Overrides`], flat beside the rest).
    #[serde(flatten)]
    pub overrides: Overrides,
}

fn default_preset() -> Preset {
    Preset::Default
}

fn default_faces() -> usize {
    100_000
}

impl Default for JobOptions {
    fn default() -> Self {
        JobOptions {
            preset: default_preset(),
            format: ResultFormat::default(),
            segmenter: SegmenterRequest::default(),
            generator: None,
            faces: default_faces(),
            overrides: Overrides::default(),
        }
    }
}

impl JobOptions {
    /// The options in `text`, a JSON object, checked key by key: an unknown key is named with
    /// the known ones, a bad value with what it should be.
    pub fn parse(text: &str) -> Result<JobOptions, String> {
        let value: Value = serde_json::from_str(text).map_err(|e| {
            format!("options: not JSON ({e}); send an object such as {{\"preset\": \"fast\"}}")
        })?;
        let Value::Object(map) = value else {
            return Err(
                "options: must be a JSON object such as {\"preset\": \"fast\"}".to_string(),
            );
        };
        // The known keys are the fields the defaults serialise to, so they are declared once,
        // here and in the pipeline's Overrides.
        let known: Map<String, Value> = match serde_json::to_value(JobOptions::default()) {
            Ok(Value::Object(known)) => known,
            _ => unreachable!("JobOptions serialises to an object"),
        };
        if let Some(unknown) = map.keys().find(|k| !known.contains_key(*k)) {
            let names: Vec<&str> = known.keys().map(String::as_str).collect();
            return Err(format!(
                "options: unknown option `{unknown}` (the options are {})",
                names.join(", ")
            ));
        }
        let options: JobOptions =
            serde_json::from_value(Value::Object(map)).map_err(|e| format!("options: {e}"))?;
        options.check_ranges()?;
        Ok(options)
    }

    fn check_ranges(&self) -> Result<(), String> {
        if self.faces < 100 {
            return Err("options: faces must be at least 100".into());
        }
        if let Some(r) = self.overrides.hull_resolution
            && !(16..=512).contains(&r)
        {
            return Err("options: hull_resolution must be 16 to 512".into());
        }
        if let Some(s) = self.overrides.nerf_seconds
            && !(s.is_finite() && s > 0.0)
        {
            return Err("options: nerf_seconds must be a positive number".into());
        }
        Ok(())
    }

    /// Whether the server can run the job: SV3D needs its weights, IS-Net its install.
    pub fn check_server(&self, config: &ServeConfig) -> Result<(), String> {
        if self.generator == Some(GeneratorOption::Sv3d) && config.weights.is_none() {
            return Err(
                "options: generator sv3d: this server was started without --weights".into(),
            );
        }
        if self.segmenter == SegmenterRequest::Isnet && install::installed().is_none() {
            return Err(
                "options: segmenter isnet: IS-Net is not installed on this server \
                        (`orbitmesh models fetch isnet`)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The pipeline's plan for the photo `image`, writing `out` (a .glb).
    pub fn plan(&self, image: &Path, out: PathBuf, config: &ServeConfig) -> Result<Plan, String> {
        self.check_server(config)?;
        let device = || Ok::<_, std::convert::Infallible>(segmenter_device(config.device));
        // check_server has refused IS-Net by name where it is not installed.
        let Ok(Some(choice)) = self.segmenter.choose(install::installed(), device) else {
            return Err("options: segmenter isnet: IS-Net is not installed on this server".into());
        };
        let generator = match (self.generator, &config.weights) {
            (Some(GeneratorOption::Sv3d) | None, Some(weights)) => {
                GeneratorConfig::sv3d(weights.clone())
            }
            _ => GeneratorConfig::inflate(),
        };
        let photo = Photo {
            image: image.to_path_buf(),
            options: PrepareOptions {
                segmenter: choice.segmenter,
                ..Default::default()
            },
            fell_back: choice.fell_back,
        };
        let export = ExportConfig {
            faces: self.faces,
            frame: MeshFrame::Object,
            size: None,
            pivot: None,
            out: Some(out),
            engine: EngineOptions::default(),
        };
        Ok(Plan::new(
            self.preset,
            &self.overrides,
            Some(photo),
            OrbitSource::Generate(generator),
            export,
            config.device,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbitmesh_pipeline::CoarseChoice;
    use orbitmesh_render::DeviceChoice;

    #[test]
    fn options_are_one_flat_object_with_defaults() {
        let o =
            JobOptions::parse(r#"{"preset": "fast", "format": "obj", "fine_steps": 0}"#).unwrap();
        assert_eq!(o.preset, Preset::Fast);
        assert_eq!(o.format, ResultFormat::Obj);
        assert_eq!(o.overrides.fine_steps, Some(0));
        assert_eq!(o.overrides.coarse, CoarseChoice::Auto);
        assert_eq!(o.faces, 100_000);
        assert_eq!(JobOptions::parse("{}").unwrap(), JobOptions::default());
        // Stored and read back as the same options.
        let text = serde_json::to_string(&o).unwrap();
        assert_eq!(JobOptions::parse(&text).unwrap(), o);
    }

    #[test]
    fn bad_options_name_the_problem() {
        let err = JobOptions::parse(r#"{"preset": "fast", "colour": "red"}"#).unwrap_err();
        assert!(err.contains("unknown option `colour`"), "{err}");
        assert!(
            err.contains("fine_steps") && err.contains("preset"),
            "{err}"
        );
        let err = JobOptions::parse(r#"{"preset": "huge"}"#).unwrap_err();
        assert!(err.contains("huge") && err.contains("fast"), "{err}");
        let err = JobOptions::parse(r#"["fast"]"#).unwrap_err();
        assert!(err.contains("JSON object"), "{err}");
        let err = JobOptions::parse("{preset").unwrap_err();
        assert!(err.contains("not JSON"), "{err}");
        let err = JobOptions::parse(r#"{"faces": 10}"#).unwrap_err();
        assert!(err.contains("faces"), "{err}");
        let err = JobOptions::parse(r#"{"hull_resolution": 4096}"#).unwrap_err();
        assert!(err.contains("hull_resolution"), "{err}");
    }

    #[test]
    fn sv3d_needs_the_servers_weights() {
        let config = ServeConfig {
            work: PathBuf::from("work"),
            jobs: 1,
            token: None,
            max_upload: 1 << 20,
            weights: None,
            device: DeviceChoice::Cpu,
        };
        let o = JobOptions::parse(r#"{"generator": "sv3d"}"#).unwrap();
        let err = o.check_server(&config).unwrap_err();
        assert!(err.contains("--weights"), "{err}");
        // Without weights and without a generator named, the inflate baseline.
        let plan = JobOptions::default()
            .plan(Path::new("photo.png"), PathBuf::from("model.glb"), &config)
            .unwrap();
        assert!(plan.sv3d().is_none());
        assert_eq!(plan.export.out.as_deref(), Some(Path::new("model.glb")));
    }
}
