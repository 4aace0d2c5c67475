use std::path::{Path, PathBuf};

/// Everything that can go wrong keeping the work folder and writing outputs. A variant about a
/// file names it, and its cause is its source only (not repeated in its message), so a command
/// line prints the chain on one line with each part said once.
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    /// A file or folder that could not be read, made, locked, replaced or moved; `problem` says
    /// which ("cannot read the folder").
    #[error("{}: {problem}", path.display())]
    Io {
        path: PathBuf,
        problem: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// Another run holds the work folder's lock (`path`).
    #[error("{}: another orbitmesh run holds this work folder's lock; wait for it to end or use \
             another work folder", path.display())]
    Locked { path: PathBuf },
    /// A mesh file read or written (or a file written through a temporary one); orbitmesh-geom's
    /// error names it.
    #[error(transparent)]
    Mesh(#[from] orbitmesh_geom::GeomError),
    /// A bad input or setting: `path` is the file it is about (the input, or the stage folder
    /// whose settings are wrong).
    #[error("{}: {message}", path.display())]
    Input { path: PathBuf, message: String },
    /// A setting out of its range, not about any file.
    #[error("{0}")]
    Invalid(String),
    /// The photo, its mask or the segmenter (orbitmesh-segment's error names the file).
    #[error(transparent)]
    Prepare(#[from] orbitmesh_segment::PrepareError),
    /// The orbit's generator failed on the prepared image at `path`.
    #[error("{}", path.display())]
    Generator {
        path: PathBuf,
        #[source]
        source: orbitmesh_orbit::OrbitError,
    },
    /// Frames imported from elsewhere.
    #[error(transparent)]
    Frames(#[from] orbitmesh_orbit::OrbitError),
    /// Cameras, orbits, rasterizing.
    #[error(transparent)]
    Render(#[from] orbitmesh_render::RenderError),
    /// The coarse stage (the hull or the NeRF).
    #[error(transparent)]
    Nerf(#[from] orbitmesh_nerf::NerfError),
    /// The fine stage.
    #[error(transparent)]
    Dmtet(#[from] orbitmesh_dmtet::DmtetError),
    /// SV3D's weights or model, for the fine stage's guidance.
    #[error(transparent)]
    Sv3d(#[from] orbitmesh_sv3d::Sv3dError),
    /// An image that cannot be encoded as a PNG (in memory, before any file).
    #[error("cannot encode the image as a PNG")]
    Png(#[source] image::ImageError),
    /// A stage record (or another JSON file) that cannot be written as JSON.
    #[error("{}: cannot write as JSON", path.display())]
    Record {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A stage's settings that cannot be written as JSON, for its fingerprint.
    #[error("cannot write the stage's settings as JSON")]
    Settings(#[source] serde_json::Error),
    /// The front end answered [`crate::Flow::Stop`] at a step: the stage ended there without
    /// publishing its folder, so a rerun resumes at that stage.
    #[error("stopped on request; the work folder resumes from here")]
    Cancelled,
}

impl PipelineError {
    /// Makes a [`PipelineError::Io`] about `path` from its cause, for `map_err`.
    pub(crate) fn io(path: &Path, problem: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| PipelineError::Io {
            path,
            problem,
            source,
        }
    }

    /// Makes a [`PipelineError::Input`] about `path`.
    pub fn input(path: &Path, message: impl Into<String>) -> Self {
        PipelineError::Input {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }

    /// The file or folder the error is about, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PipelineError::Io { path, .. }
            | PipelineError::Locked { path }
            | PipelineError::Record { path, .. } => Some(path),
            PipelineError::Input { path, .. } | PipelineError::Generator { path, .. } => Some(path),
            PipelineError::Mesh(e) => e.path(),
            _ => None,
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;

/// An error and its causes on one line, each said once: the libraries' errors name their file
/// and show their source, so the plain chain would repeat the source's text.
pub fn one_line(error: &(dyn std::error::Error + 'static)) -> String {
    let mut line = String::new();
    let mut cause = Some(error);
    while let Some(e) = cause {
        let text = e.to_string().replace('\n', " ");
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
        cause = e.source();
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_the_message_already_shows_is_said_once() {
        let full = std::io::Error::from_raw_os_error(28);
        let error = PipelineError::io(Path::new("out.obj"), "cannot write")(full);
        assert_eq!(
            one_line(&error),
            "out.obj: cannot write: No space left on device (os error 28)"
        );
        let record = PipelineError::Record {
            path: PathBuf::from("stage.json"),
            source: serde_json::from_str::<u8>("x").unwrap_err(),
        };
        assert_eq!(
            one_line(&record),
            "stage.json: cannot write as JSON: expected value at line 1 column 1"
        );
    }
}
