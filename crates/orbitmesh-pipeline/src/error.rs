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
    /// A file written through a temporary one; orbitmesh-geom's error names it.
    #[error(transparent)]
    Write(#[from] orbitmesh_geom::GeomError),
    /// An image that cannot be encoded as a PNG (in memory, before any file).
    #[error("cannot encode the image as a PNG")]
    Png(#[source] image::ImageError),
    /// A stage record that cannot be written as JSON.
    #[error("{}: cannot write the stage record", path.display())]
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

    /// The file or folder the error is about, where there is one.
    pub fn path(&self) -> Option<&Path> {
        match self {
            PipelineError::Io { path, .. }
            | PipelineError::Locked { path }
            | PipelineError::Record { path, .. } => Some(path),
            PipelineError::Write(e) => Some(e.path()),
            PipelineError::Png(_) | PipelineError::Settings(_) | PipelineError::Cancelled => None,
        }
    }
}

pub type Result<T, E = PipelineError> = std::result::Result<T, E>;
