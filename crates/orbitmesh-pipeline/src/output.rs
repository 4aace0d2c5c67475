//! Writing outputs: PNG encoding, atomic saves, and folders that appear whole or not at all.

use std::io::Cursor;
use std::path::{Path, PathBuf};

use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::{ImageEncoder, RgbaImage};
use orbitmesh_geom::io::write_atomic;

use crate::error::{PipelineError, Result};

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
    )
    .map_err(PipelineError::Png)?;
    Ok(bytes)
}

/// Writes through a temporary file renamed into place.
pub fn save(path: &Path, bytes: &[u8]) -> Result<()> {
    write_atomic(path, |w| std::io::Write::write_all(w, bytes))?;
    Ok(())
}

/// Writes `value` as pretty JSON through a temporary file renamed into place.
pub fn save_json(path: &Path, value: &impl serde::Serialize) -> Result<()> {
    let text = serde_json::to_string_pretty(value).map_err(|source| PipelineError::Record {
        path: path.to_path_buf(),
        source,
    })?;
    save(path, text.as_bytes())
}

/// Makes `dir` and its parents.
pub fn make_folder(dir: &Path) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(PipelineError::io(dir, "cannot create the folder"))
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
            .map_err(PipelineError::io(existing, "cannot create a folder there"))?;
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
        if let Some(parent) = out.parent().filter(|p| !p.as_os_str().is_empty()) {
            std::fs::create_dir_all(parent)
                .map_err(PipelineError::io(out, "cannot create its folder"))?;
        }
        if !out.exists() {
            let tmp = self.tmp.keep();
            return std::fs::rename(&tmp, out)
                .inspect_err(|_| {
                    let _ = std::fs::remove_dir_all(&tmp);
                })
                .map_err(PipelineError::io(out, "cannot move the output into place"));
        }
        merge_into(self.tmp.path(), out)
            .map_err(PipelineError::io(out, "cannot move the output into place"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_staged_folder_appears_whole_and_merges_into_an_existing_one() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("new/frames");
        let staged = StagedFolder::new(&out).unwrap();
        save(&staged.path().join("000.png"), b"first").unwrap();
        assert!(!out.exists(), "nothing before publish");
        staged.publish().unwrap();
        assert_eq!(std::fs::read(out.join("000.png")).unwrap(), b"first");

        std::fs::write(out.join("kept.txt"), b"kept").unwrap();
        let staged = StagedFolder::new(&out).unwrap();
        save(&staged.path().join("000.png"), b"second").unwrap();
        staged.publish().unwrap();
        assert_eq!(std::fs::read(out.join("000.png")).unwrap(), b"second");
        assert_eq!(std::fs::read(out.join("kept.txt")).unwrap(), b"kept");
        let left: Vec<String> = std::fs::read_dir(dir.path().join("new"))
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(left, ["frames"], "no temporary folder left");
    }

    #[test]
    fn an_encoded_png_decodes_to_the_same_pixels() {
        let img = RgbaImage::from_fn(5, 3, |x, y| {
            image::Rgba([x as u8 * 40, y as u8 * 60, 7, 200])
        });
        let decoded = image::load_from_memory(&encode_png(&img).unwrap())
            .unwrap()
            .to_rgba8();
        assert_eq!(decoded, img);
    }
}
