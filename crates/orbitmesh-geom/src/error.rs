use std::path::{Path, PathBuf};

/// Everything that can go wrong reading, checking or writing a mesh. Every variant names the file,
/// so a CLI can print it on one line without adding context.
#[derive(Debug, thiserror::Error)]
pub enum GeomError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: not a readable {format} file: {message}", path.display())]
    Parse {
        path: PathBuf,
        format: &'static str,
        message: String,
    },
    #[error("{}: unknown mesh format (expected .obj, .ply, .ply.gz, .off, .off.gz, .glb or a GSO object folder)", path.display())]
    UnknownFormat { path: PathBuf },
    #[error("{}: the mesh has no faces", path.display())]
    EmptyMesh { path: PathBuf },
    #[error("{}: face {face} refers to vertex {index}, but the mesh has {vertices} vertices", path.display())]
    IndexOutOfRange {
        path: PathBuf,
        face: usize,
        index: u64,
        vertices: usize,
    },
    #[error("{}: vertex {vertex} has a non-finite coordinate (NaN or infinity)", path.display())]
    NonFinite { path: PathBuf, vertex: usize },
    #[error("{}: {message}", path.display())]
    Invalid { path: PathBuf, message: String },
    /// A texture could not be laid out or baked (no file involved yet).
    #[error("texture: {0}")]
    Texture(String),
}

impl GeomError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        GeomError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    pub(crate) fn parse(path: &Path, format: &'static str, message: impl ToString) -> Self {
        // Parsers' messages may span lines; errors here are printed on one.
        let message = message.to_string();
        let mut message = message
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
        let lower = message.to_lowercase();
        if (lower.contains("end of file") || lower.contains("fill whole buffer"))
            && !lower.contains("truncated")
        {
            message = format!("truncated: {message}");
        }
        GeomError::Parse {
            path: path.to_path_buf(),
            format,
            message,
        }
    }

    /// The file the error is about, if any.
    pub fn path(&self) -> Option<&Path> {
        Some(match self {
            GeomError::Io { path, .. }
            | GeomError::Parse { path, .. }
            | GeomError::UnknownFormat { path }
            | GeomError::EmptyMesh { path }
            | GeomError::IndexOutOfRange { path, .. }
            | GeomError::NonFinite { path, .. }
            | GeomError::Invalid { path, .. } => path,
            GeomError::Texture(_) => return None,
        })
    }
}

pub type Result<T, E = GeomError> = std::result::Result<T, E>;
