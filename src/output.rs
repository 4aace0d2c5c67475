//! Writing outputs: PNG encoding, atomic saves, and folders that appear whole or not at all.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbaImage};
use orbitmesh_geom::io::write_atomic;

/// RGBA PNG with fast compression: frames are many and large.
pub fn encode_png(img: &RgbaImage) -> Result<Vec<u8>> {
    let mut bytes = Vec::new();
    PngEncoder::new_with_quality(
        Cursor::new(&mut bytes),
        CompressionType::Fast,
        FilterType::Adaptive,
    )
    .write_image(
        img,
        img.width(),
        img.height(),
        image::ExtendedColorType::Rgba8,
    )?;
    Ok(bytes)
}

/// Writes through a temporary file renamed into place.
pub fn save(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| std::io::Write::write_all(w, bytes))?;
    Ok(())
}

/// An output folder written under a temporary name beside it and moved into place by `publish`,
/// so a failed command leaves neither an empty nor a partial folder. Dropped unpublished, the
/// temporary folder is removed.
pub struct StagedFolder {
    tmp: tempfile::TempDir,
    out: PathBuf,
}

impl StagedFolder {
    /// Stages `out` in its nearest existing ancestor (renames stay on one file system); folders
    /// above `out` that do not exist yet are made only when it is published.
    pub fn new(out: &Path) -> Result<Self> {
        let existing = out
            .ancestors()
            .skip(1)
            .find(|a| a.as_os_str().is_empty() || a.is_dir())
            .map(|a| {
                if a.as_os_str().is_empty() {
                    Path::new(".")
                } else {
                    a
                }
            })
            .unwrap_or(Path::new("."));
        let tmp = tempfile::Builder::new()
            .prefix(".orbitmesh-")
            .tempdir_in(existing)
            .with_context(|| format!("{}: cannot create a folder there", existing.display()))?;
        Ok(StagedFolder {
            tmp,
            out: out.to_path_buf(),
        })
    }

    /// Where to write.
    pub fn path(&self) -> &Path {
        self.tmp.path()
    }

    /// Moves the written folder to its name. Where a folder of that name exists, its entries of
    /// the same names are replaced and the others kept (a rerun of `render` into the same folder).
    pub fn publish(self) -> Result<()> {
        let out = &self.out;
        let fail = |what: &str| format!("{}: cannot {what}", out.display());
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent).with_context(|| fail("create its folder"))?;
        }
        if !out.exists() {
            let tmp = self.tmp.keep();
            return std::fs::rename(&tmp, out)
                .inspect_err(|_| {
                    let _ = std::fs::remove_dir_all(&tmp);
                })
                .with_context(|| fail("move the output into place"));
        }
        merge_into(self.tmp.path(), out).with_context(|| fail("move the output into place"))
    }
}

/// Moves every entry of `from` into `to`, replacing files and merging folders.
fn merge_into(from: &Path, to: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() && target.is_dir() {
            merge_into(&entry.path(), &target)?;
        } else {
            if target.is_dir() {
                std::fs::remove_dir_all(&target)?;
            }
            std::fs::rename(entry.path(), &target)?;
        }
    }
    Ok(())
}
