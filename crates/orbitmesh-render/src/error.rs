use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    #[error(transparent)]
    Geom(#[from] orbitmesh_geom::GeomError),
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("{}: cannot decode the image: {message}", path.display())]
    Image { path: PathBuf, message: String },
    #[error("image size {width}×{height} is out of range (1 to {max} pixels a side)")]
    Size { width: u32, height: u32, max: u32 },
    #[error("the mesh has no faces to render")]
    NoFaces,
    #[error("no GPU: {0}")]
    NoGpu(String),
    #[error("GPU rasterization failed: {0}")]
    Gpu(String),
}

impl RenderError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        RenderError::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
