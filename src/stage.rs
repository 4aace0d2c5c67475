//! Stage bookkeeping for the work folder (DESIGN.md): each stage writes its folder through a
//! temporary one renamed into place, with a `stage.json` holding its settings, timing, version and
//! a fingerprint of its inputs, so a rerun with unchanged inputs and settings skips it.

use std::path::Path;
use std::time::{Instant, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};

use crate::output::save;

/// Settings plus each input file's path, size and modification time.
pub fn fingerprint(settings: &Value, inputs: &[&Path]) -> Value {
    let files: Vec<Value> = inputs
        .iter()
        .map(|p| {
            let meta = std::fs::metadata(p).ok();
            let modified = meta
                .as_ref()
                .and_then(|m| m.modified().ok())
                .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                .map(|d| d.as_nanos().to_string());
            json!({ "path": p, "bytes": meta.map(|m| m.len()), "modified_ns": modified })
        })
        .collect();
    json!({ "settings": settings, "inputs": files })
}

/// The files of a folder, sorted, to fingerprint a folder given as input.
pub fn files_in(dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .with_context(|| format!("{}: cannot read the folder", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Locks the work folder `dir` for one run, until the returned file is dropped (or the process
/// ends, however it ends): two runs on one folder would replace each other's stage folders. A
/// second run refuses at once, naming the lock, rather than waiting an unknown time.
pub fn lock_work_folder(dir: &Path) -> Result<std::fs::File> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("{}: cannot open the work folder's lock", path.display()))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "{}: another orbitmesh run holds this work folder's lock; wait for it to end or give \
             another --work",
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("{}: cannot lock the work folder", path.display()))
        }
    }
}

/// Whether `dir` holds a finished stage with this fingerprint and all of `outputs`.
pub fn is_current(dir: &Path, fingerprint: &Value, outputs: &[&str]) -> bool {
    let Ok(bytes) = std::fs::read(dir.join("stage.json")) else {
        return false;
    };
    let Ok(old) = serde_json::from_slice::<Value>(&bytes) else {
        return false;
    };
    old.get("fingerprint") == Some(fingerprint) && outputs.iter().all(|o| dir.join(o).exists())
}

pub fn write_stage_json(
    dir: &Path,
    stage: &str,
    fingerprint: &Value,
    extra: Value,
    seconds: f64,
) -> Result<()> {
    let record = json!({
        "stage": stage,
        "orbitmesh": env!("CARGO_PKG_VERSION"),
        "fingerprint": fingerprint,
        "seconds": seconds,
        "details": extra,
    });
    save(
        &dir.join("stage.json"),
        serde_json::to_string_pretty(&record)?.as_bytes(),
    )
}

/// Runs `work` into `<dir>.tmp`, then replaces `dir` with it, unless `dir` is current. Returns
/// the seconds spent, or `None` when skipped.
pub fn run_stage(
    dir: &Path,
    stage: &str,
    fingerprint: &Value,
    outputs: &[&str],
    work: impl FnOnce(&Path) -> Result<Value>,
) -> Result<Option<f64>> {
    if is_current(dir, fingerprint, outputs) {
        return Ok(None);
    }
    let tmp = dir.with_extension("tmp");
    if tmp.exists() {
        std::fs::remove_dir_all(&tmp)
            .with_context(|| format!("{}: cannot clear the old temporary folder", tmp.display()))?;
    }
    std::fs::create_dir_all(&tmp)
        .with_context(|| format!("{}: cannot create the folder", tmp.display()))?;
    let started = Instant::now();
    let extra = work(&tmp)?;
    let seconds = started.elapsed().as_secs_f64();
    write_stage_json(&tmp, stage, fingerprint, extra, seconds)?;
    crate::interrupt::finish_first(|| -> Result<()> {
        if dir.exists() {
            std::fs::remove_dir_all(dir).with_context(|| {
                format!("{}: cannot replace the old stage output", dir.display())
            })?;
        }
        std::fs::rename(&tmp, dir)
            .with_context(|| format!("{}: cannot move the stage output into place", dir.display()))
    })?;
    Ok(Some(seconds))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A damaged or hostile stage.json only makes the stage run again: no panic, and no more
    /// memory than its size warrants (`scripts/fuzz.sh` runs more cases).
    #[test]
    fn fuzzed_stage_json_is_read_or_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let settings = json!({ "steps": 300, "resolution": [576, 576], "name": "prepare" });
        let fp = fingerprint(&settings, &[&dir.path().join("input.png")]);
        write_stage_json(dir.path(), "prepare", &fp, json!({ "frames": 21 }), 1.5).unwrap();
        assert!(is_current(dir.path(), &fp, &[]), "the seed record is current");
        let path = dir.path().join("stage.json");
        let seed = std::fs::read(&path).unwrap();
        orbitmesh_fuzz::fuzz(
            "stage.json",
            &seed,
            |bytes| {
                std::fs::write(&path, bytes).unwrap();
                path.clone()
            },
            |bytes| orbitmesh_fuzz::small_bound(bytes.len()),
            |_| {
                is_current(dir.path(), &fp, &[]);
                Ok(())
            },
        );
    }
}
