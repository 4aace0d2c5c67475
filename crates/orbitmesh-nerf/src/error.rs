use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum NerfError {
    #[error(transparent)]
    Render(#[from] orbitmesh_render::RenderError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    #[error("training: {0}")]
    Training(String),
    #[error("{}: {message}", path.display())]
    Io { path: PathBuf, message: String },
}
