//! The work folder (DESIGN.md): one folder per stage, written into `<stage>.tmp` and renamed into
//! place with a `stage.json` record holding the stage's fingerprint, timing, version and details,
//! so a rerun whose settings and inputs are unchanged skips the stage. One mechanism for every
//! stage: [`StageRun::begin`] says whether the stage must run and gives the folder to write,
//! [`StageRun::publish`] records it and moves it into place.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::time::Instant;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::{PipelineError, Result};
use crate::output::save;

/// The name of a stage's record in its folder.
pub const STAGE_RECORD: &str = "stage.json";

/// What a stage's output depends on: `{"settings": …, "inputs": [{"name", "bytes", "sha256"}]}`,
/// the settings as serde writes them and each input file's name (its last component), size and
/// SHA-256, in the order given. A missing or unreadable input is an error naming it.
///
/// The inputs' contents, not their paths and modification times: a file touched without a change
/// (a copy that keeps its bytes, a checkout, a backup restored) or the same file in another place
/// keeps the stage current, and a file whose bytes changed reruns it whatever its time says. The
/// cost is reading each input once per run: a few seconds for SV3D's 4.7 GB checkpoint, small
/// beside the stage it guards, and milliseconds for a photo or a previous stage's record.
pub fn fingerprint(settings: &impl Serialize, inputs: &[&Path]) -> Result<Value> {
    let settings = serde_json::to_value(settings).map_err(PipelineError::Settings)?;
    let inputs = inputs
        .iter()
        .copied()
        .map(input_fingerprint)
        .collect::<Result<Vec<Value>>>()?;
    Ok(json!({ "settings": settings, "inputs": inputs }))
}

/// One input's name, size and SHA-256, read in 1 MiB pieces.
fn input_fingerprint(path: &Path) -> Result<Value> {
    const PROBLEM: &str = "cannot read the stage's input";
    let file = File::open(path).map_err(PipelineError::io(path, PROBLEM))?;
    let mut hasher = Sha256::new();
    let bytes = std::io::copy(&mut BufReader::with_capacity(1 << 20, file), &mut hasher)
        .map_err(PipelineError::io(path, PROBLEM))?;
    let sha256: String = hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    Ok(json!({ "name": name, "bytes": bytes, "sha256": sha256 }))
}

/// The files of a folder, sorted, to fingerprint a folder given as input.
pub fn files_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(PipelineError::io(dir, "cannot read the folder"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    Ok(files)
}

/// Locks the work folder `dir` for one run, until the returned file is dropped (or the process
/// ends, however it ends): two runs on one folder would replace each other's stage folders. A
/// second run refuses at once, naming the lock, rather than waiting an unknown time.
pub fn lock_work_folder(dir: &Path) -> Result<File> {
    let path = dir.join(".lock");
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(PipelineError::io(
            &path,
            "cannot open the work folder's lock",
        ))?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(PipelineError::Locked { path }),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(PipelineError::io(&path, "cannot lock the work folder")(e))
        }
    }
}

/// A finished stage's `stage.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StageRecord {
    /// The stage's name ("prepare", "orbit", …).
    pub stage: String,
    /// The orbitmesh version that ran it.
    pub orbitmesh: String,
    /// What its output depends on ([`fingerprint`]).
    pub fingerprint: Value,
    /// Seconds its work took.
    pub seconds: f64,
    /// What the stage says of its work (the generator, frame counts, …).
    pub details: Value,
}

impl StageRecord {
    /// The record of a stage this version of orbitmesh ran.
    pub fn new(stage: &str, fingerprint: Value, details: Value, seconds: f64) -> Self {
        StageRecord {
            stage: stage.to_string(),
            orbitmesh: env!("CARGO_PKG_VERSION").to_string(),
            fingerprint,
            seconds,
            details,
        }
    }
}

/// Writes `dir/stage.json` (through a temporary file renamed into place).
pub fn write_stage_record(dir: &Path, record: &StageRecord) -> Result<()> {
    let path = dir.join(STAGE_RECORD);
    let text = serde_json::to_string_pretty(record).map_err(|source| PipelineError::Record {
        path: path.clone(),
        source,
    })?;
    save(&path, text.as_bytes())
}

/// The record in `dir/stage.json`, or `None` where there is none or it is damaged: either way
/// the stage runs again.
pub fn read_stage_record(dir: &Path) -> Option<StageRecord> {
    let bytes = std::fs::read(dir.join(STAGE_RECORD)).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// Whether `stored`, a fingerprint read back from a file, is `fingerprint`. Compared as read
/// back: serde_json parses a float's shortest text to the nearest value only with its
/// `float_roundtrip` feature, so an f32 setting (0.6f32 is 0.6000000238418579) can read back a
/// bit off what was written; parsing the same text gives the same value, and the same settings
/// write the same text.
pub fn same_fingerprint(stored: &Value, fingerprint: &Value) -> bool {
    serde_json::from_str::<Value>(&fingerprint.to_string()).is_ok_and(|read| read == *stored)
}

/// Whether `dir` holds a finished stage with this fingerprint and all of `outputs`.
pub fn is_current(dir: &Path, fingerprint: &Value, outputs: &[&str]) -> bool {
    read_stage_record(dir).is_some_and(|record| same_fingerprint(&record.fingerprint, fingerprint))
        && outputs.iter().all(|o| dir.join(o).exists())
}

/// A stage being run: its work is written into `<dir>.tmp`, which [`StageRun::publish`] moves to
/// `dir` with its record. A run that ends before publishing (an error, Ctrl-C, a kill) leaves
/// `dir` as it was; the next [`StageRun::begin`] clears its temporary folder, and the next
/// [`StageRun::resume_or_begin`] of the same fingerprint goes on in it.
#[derive(Debug)]
pub struct StageRun {
    dir: PathBuf,
    tmp: PathBuf,
    stage: String,
    fingerprint: Value,
    started: Instant,
}

/// In a stage's temporary folder: the fingerprint it is being made for, so that a stage that
/// checkpoints its own work (the NeRF) resumes from it after an interruption, and only then.
const PENDING: &str = "pending.json";

impl StageRun {
    /// `None` when `dir` is current (the stage is skipped); otherwise clears `<dir>.tmp`, makes
    /// it anew and starts the stage's clock.
    pub fn begin(
        dir: &Path,
        stage: &str,
        fingerprint: &Value,
        outputs: &[&str],
    ) -> Result<Option<StageRun>> {
        Self::open(dir, stage, fingerprint, outputs, false)
    }

    /// As [`StageRun::begin`], but a `<dir>.tmp` left by an interrupted run of the same
    /// fingerprint is kept as it is, with the checkpoints the stage wrote into it.
    pub fn resume_or_begin(
        dir: &Path,
        stage: &str,
        fingerprint: &Value,
        outputs: &[&str],
    ) -> Result<Option<StageRun>> {
        Self::open(dir, stage, fingerprint, outputs, true)
    }

    fn open(
        dir: &Path,
        stage: &str,
        fingerprint: &Value,
        outputs: &[&str],
        resume: bool,
    ) -> Result<Option<StageRun>> {
        if is_current(dir, fingerprint, outputs) {
            return Ok(None);
        }
        let tmp = dir.with_extension("tmp");
        let pending = |tmp: &Path| -> Option<Value> {
            serde_json::from_slice(&std::fs::read(tmp.join(PENDING)).ok()?).ok()
        };
        let kept = resume && pending(&tmp).is_some_and(|p| same_fingerprint(&p, fingerprint));
        if !kept {
            if tmp.exists() {
                std::fs::remove_dir_all(&tmp).map_err(PipelineError::io(
                    &tmp,
                    "cannot clear the old temporary folder",
                ))?;
            }
            std::fs::create_dir_all(&tmp)
                .map_err(PipelineError::io(&tmp, "cannot create the folder"))?;
            let json = serde_json::to_vec(fingerprint).map_err(PipelineError::Settings)?;
            save(&tmp.join(PENDING), &json)?;
        }
        Ok(Some(StageRun {
            dir: dir.to_path_buf(),
            tmp,
            stage: stage.to_string(),
            fingerprint: fingerprint.clone(),
            started: Instant::now(),
        }))
    }

    /// The folder the stage's work goes into.
    pub fn path(&self) -> &Path {
        &self.tmp
    }

    /// Writes the stage's record (with `details`, the stage's own account of its work) into its
    /// folder, then replaces `dir` with it. Returns the seconds since [`StageRun::begin`]. A
    /// caller that stops on a signal holds it off around this call, so that no stage folder is
    /// left half replaced.
    pub fn publish(self, details: Value) -> Result<f64> {
        let seconds = self.started.elapsed().as_secs_f64();
        let record = StageRecord::new(&self.stage, self.fingerprint, details, seconds);
        write_stage_record(&self.tmp, &record)?;
        std::fs::remove_file(self.tmp.join(PENDING)).map_err(PipelineError::io(
            &self.tmp,
            "cannot remove the pending record",
        ))?;
        if self.dir.exists() {
            std::fs::remove_dir_all(&self.dir).map_err(PipelineError::io(
                &self.dir,
                "cannot replace the old stage output",
            ))?;
        }
        std::fs::rename(&self.tmp, &self.dir).map_err(PipelineError::io(
            &self.dir,
            "cannot move the stage output into place",
        ))?;
        Ok(seconds)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, SystemTime};

    fn settings() -> Value {
        json!({ "steps": 300, "resolution": [576, 576], "name": "prepare" })
    }

    #[test]
    fn a_touched_input_keeps_its_fingerprint() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("photo.png");
        std::fs::write(&input, b"the same bytes").unwrap();
        let before = fingerprint(&settings(), &[&input]).unwrap();

        // The same bytes written again, an hour later by the clock.
        std::fs::write(&input, b"the same bytes").unwrap();
        let later = SystemTime::now() + Duration::from_secs(3600);
        let file = File::options().write(true).open(&input).unwrap();
        file.set_modified(later).unwrap();
        drop(file);
        let modified = std::fs::metadata(&input).unwrap().modified().unwrap();
        assert!(
            modified > SystemTime::now() + Duration::from_secs(1800),
            "the modification time moved"
        );
        assert_eq!(fingerprint(&settings(), &[&input]).unwrap(), before);

        // One byte changed, the size the same.
        std::fs::write(&input, b"the same byteS").unwrap();
        assert_ne!(fingerprint(&settings(), &[&input]).unwrap(), before);
        // The settings count too.
        assert_ne!(
            fingerprint(&json!({ "steps": 301 }), &[&input]).unwrap(),
            before
        );
    }

    #[test]
    fn a_copy_in_another_folder_keeps_its_fingerprint() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let original = a.path().join("sv3d_p.safetensors");
        // Over one read buffer, so the content is hashed in more than one piece.
        let bytes: Vec<u8> = (0..(3 << 19) + 17).map(|i: u32| (i % 251) as u8).collect();
        std::fs::write(&original, &bytes).unwrap();
        let copy = b.path().join("sv3d_p.safetensors");
        std::fs::copy(&original, &copy).unwrap();
        let fp = fingerprint(&settings(), &[&original]).unwrap();
        assert_eq!(fingerprint(&settings(), &[&copy]).unwrap(), fp);
        assert_eq!(fp["settings"], settings());
        assert_eq!(fp["inputs"][0]["name"], "sv3d_p.safetensors");
        assert_eq!(fp["inputs"][0]["bytes"], bytes.len() as u64);
        let whole: String = Sha256::digest(&bytes)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(fp["inputs"][0]["sha256"], whole.as_str());
    }

    #[test]
    fn the_content_hash_is_sha256_in_hex() {
        let dir = tempfile::tempdir().unwrap();
        let input = dir.path().join("abc.txt");
        std::fs::write(&input, b"abc").unwrap();
        let fp = fingerprint(&json!(null), &[&input]).unwrap();
        assert_eq!(
            fp["inputs"][0]["sha256"],
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_missing_input_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("photo.png");
        let err = fingerprint(&settings(), &[&missing]).unwrap_err();
        assert!(matches!(err, PipelineError::Io { .. }), "{err:?}");
        assert_eq!(err.path(), Some(missing.as_path()));
        assert_eq!(
            err.to_string(),
            format!("{}: cannot read the stage's input", missing.display())
        );
    }

    #[test]
    fn only_a_whole_record_with_the_same_fingerprint_and_outputs_is_current() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let input = d.join("input.png");
        std::fs::write(&input, b"pixels").unwrap();
        let fp = fingerprint(&settings(), &[&input]).unwrap();
        assert!(!is_current(d, &fp, &[]), "no record");
        std::fs::write(d.join(STAGE_RECORD), b"{\"stage\": \"prep").unwrap();
        assert!(read_stage_record(d).is_none());
        assert!(!is_current(d, &fp, &[]), "a damaged record");

        let record = StageRecord::new("prepare", fp.clone(), json!({ "frames": 21 }), 1.5);
        write_stage_record(d, &record).unwrap();
        assert_eq!(read_stage_record(d), Some(record));
        // The layout tests and tools read: these keys and no others.
        let written: Value =
            serde_json::from_slice(&std::fs::read(d.join(STAGE_RECORD)).unwrap()).unwrap();
        let mut keys: Vec<&str> = written
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            ["details", "fingerprint", "orbitmesh", "seconds", "stage"]
        );
        assert_eq!(written["details"]["frames"], 21);

        std::fs::write(d.join("prepared.png"), b"png").unwrap();
        assert!(is_current(d, &fp, &["prepared.png"]));
        assert!(
            !is_current(d, &fp, &["prepared.png", "crop.json"]),
            "an output missing"
        );
        let other = fingerprint(&json!({ "steps": 301 }), &[&input]).unwrap();
        assert!(!is_current(d, &other, &["prepared.png"]), "other settings");
    }

    #[test]
    fn a_published_stage_replaces_the_old_folder_and_leaves_no_temporary_one() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("coarse");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("old.obj"), b"old").unwrap();
        // What a killed run left is cleared first.
        let tmp = work.path().join("coarse.tmp");
        std::fs::create_dir(&tmp).unwrap();
        std::fs::write(tmp.join("partial.obj"), b"partial").unwrap();

        let fp = fingerprint(&settings(), &[]).unwrap();
        let run = StageRun::begin(&dir, "coarse", &fp, &["hull.obj"])
            .unwrap()
            .expect("an old folder without a record is not current");
        assert_eq!(run.path(), tmp.as_path());
        assert!(tmp.is_dir() && !tmp.join("partial.obj").exists());
        std::fs::write(run.path().join("hull.obj"), b"new").unwrap();
        let seconds = run.publish(json!({ "faces": 12 })).unwrap();
        assert!(seconds >= 0.0);

        assert!(!tmp.exists(), "no temporary folder left");
        assert!(!dir.join("old.obj").exists(), "the old folder replaced");
        assert_eq!(std::fs::read(dir.join("hull.obj")).unwrap(), b"new");
        let record = read_stage_record(&dir).unwrap();
        assert_eq!(record.stage, "coarse");
        assert_eq!(record.fingerprint, fp);
        assert_eq!(record.details["faces"], 12);
        assert!(
            StageRun::begin(&dir, "coarse", &fp, &["hull.obj"])
                .unwrap()
                .is_none(),
            "now current"
        );
    }

    #[test]
    fn f32_settings_written_and_read_back_are_the_same_fingerprint() {
        let work = tempfile::tempdir().unwrap();
        // f32 weights like the fine stage's: some of them read back a bit off by plain comparison.
        let weights = [0.6f32, 0.01, 0.005, 0.03, 0.08, 0.15, 1e-3, 0.85];
        let settings = json!({ "weights": weights, "rate": 0.08 });
        let fp = fingerprint(&settings, &[]).unwrap();
        let run = StageRun::begin(work.path(), "fine", &fp, &[])
            .unwrap()
            .unwrap();
        run.publish(json!({})).unwrap();
        assert!(is_current(work.path(), &fp, &[]));
    }

    #[test]
    fn an_interrupted_stage_resumes_in_its_folder_only_for_the_same_fingerprint() {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("coarse");
        let tmp = work.path().join("coarse.tmp");
        let fp = fingerprint(&settings(), &[]).unwrap();
        let other = fingerprint(&json!({ "steps": 301 }), &[]).unwrap();
        let checkpoint = tmp.join("checkpoint.json");
        // A run that checkpointed, then was killed (dropped unpublished).
        let run = StageRun::resume_or_begin(&dir, "coarse", &fp, &[]).unwrap();
        std::fs::write(checkpoint.clone(), b"step 60").unwrap();
        drop(run);
        let run = StageRun::resume_or_begin(&dir, "coarse", &fp, &[]).unwrap();
        assert!(checkpoint.is_file(), "the same fingerprint resumes");
        drop(run);
        let run = StageRun::begin(&dir, "coarse", &fp, &[]).unwrap();
        assert!(!checkpoint.exists(), "begin starts afresh");
        std::fs::write(checkpoint.clone(), b"step 60").unwrap();
        drop(run);
        let run = StageRun::resume_or_begin(&dir, "coarse", &other, &[]).unwrap();
        assert!(!checkpoint.exists(), "other settings start afresh");
        run.unwrap().publish(json!({})).unwrap();
        assert!(
            !dir.join(PENDING).exists(),
            "the pending record is not published"
        );
    }

    #[test]
    fn a_held_lock_refuses_a_second_run_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let _held = lock_work_folder(dir.path()).unwrap();
        let err = lock_work_folder(dir.path()).unwrap_err();
        assert!(matches!(err, PipelineError::Locked { .. }), "{err:?}");
        assert_eq!(err.path(), Some(dir.path().join(".lock").as_path()));
    }
}
