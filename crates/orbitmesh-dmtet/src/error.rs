use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum DmtetError {
    #[error(transparent)]
    Render(#[from] orbitmesh_render::RenderError),
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// The coarse mesh cannot start a refinement (the caller knows its file).
    #[error("the coarse mesh {0}")]
    Coarse(String),
    /// Every tetrahedron ended up on one side of the surface.
    #[error(
        "the surface vanished at step {step}: every grid vertex is {side} (try fewer steps or a lower learning rate)"
    )]
    Vanished { step: usize, side: &'static str },
    #[error("refinement: {0}")]
    Refine(String),
}
