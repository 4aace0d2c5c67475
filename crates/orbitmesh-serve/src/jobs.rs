//! The jobs: their folders and records, the queue, and the threads that run them through the
//! pipeline.

use std::collections::{BTreeMap, VecDeque};
use std::fs::OpenOptions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use orbitmesh_pipeline::{
    Event, Flow, PipelineError, Stage, lock_work_folder, one_line, save, save_json,
};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::options::JobOptions;
use crate::{ServeConfig, ServeError};

/// Where a job is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    /// Waiting for a job thread.
    Queued,
    Running,
    /// Its files are there.
    Done,
    Failed,
    /// Stopped on request; its stage folders are kept.
    Cancelled,
}

impl JobState {
    /// Its name, as the API writes it.
    pub fn name(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Done => "done",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// Whether the job will not change any more.
    pub fn is_final(self) -> bool {
        matches!(
            self,
            JobState::Done | JobState::Failed | JobState::Cancelled
        )
    }
}

/// A job's `job.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct JobRecord {
    pub id: String,
    /// When it was posted, in seconds since 1970.
    pub created: f64,
    /// The name the photo was uploaded with (shown only).
    pub file_name: String,
    /// The photo's file in the job's folder (`input.png`, `input.jpg`, `input.webp`).
    pub input: String,
    pub options: JobOptions,
    pub state: JobState,
    pub error: Option<String>,
    pub finished: Option<f64>,
}

/// Where a running job is, for its status: the stage and its last step.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Progress {
    pub stage: Option<Stage>,
    pub step: Option<u64>,
    pub total: Option<u64>,
}

const RECORD: &str = "job.json";
/// One event per line, as the events endpoint streams them.
pub const EVENTS: &str = "events.jsonl";
/// The pipeline's work folder inside a job's folder.
const RUN: &str = "run";
/// Copies of the orbit's frames as they are written (the pipeline's own move with its folder).
const FRAMES: &str = "frames";

/// One job.
pub struct Job {
    pub id: String,
    pub dir: PathBuf,
    record: Mutex<JobRecord>,
    progress: Mutex<Progress>,
    cancel: AtomicBool,
    /// Counts the lines written to `events.jsonl`, so the event streams wake for each.
    lines: watch::Sender<u64>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A job thread that panicked has had its job marked failed; its data is still whole.
    mutex.lock().unwrap_or_else(|e| e.into_inner())
}

fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

impl Job {
    fn new(dir: PathBuf, record: JobRecord) -> Job {
        Job {
            id: record.id.clone(),
            dir,
            record: Mutex::new(record),
            progress: Mutex::default(),
            cancel: AtomicBool::new(false),
            lines: watch::channel(0).0,
        }
    }

    pub fn record(&self) -> JobRecord {
        lock(&self.record).clone()
    }

    pub fn state(&self) -> JobState {
        lock(&self.record).state
    }

    pub fn progress(&self) -> Progress {
        lock(&self.progress).clone()
    }

    /// A receiver that changes with every line written to the job's events.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.lines.subscribe()
    }

    /// The files of the job a client may fetch by name: the photo (`input`), the prepared image
    /// and its mask, the orbit's frames (`frames/000.png`…) and the results. Anything else, a
    /// path above the job's folder included, is not a file of the job.
    pub fn file(&self, name: &str) -> Option<PathBuf> {
        let path = match name {
            "input" => self.dir.join(&lock(&self.record).input),
            "prepared.png" | "mask.png" => self.dir.join(RUN).join("prepare").join(name),
            "model.glb" | "model.zip" => self.dir.join(name),
            _ => {
                let frame = name.strip_prefix("frames/")?.strip_suffix(".png")?;
                if frame.len() != 3 || !frame.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                self.dir.join(FRAMES).join(format!("{frame}.png"))
            }
        };
        path.is_file().then_some(path)
    }

    /// Appends one event to `events.jsonl` and wakes its streams.
    fn append(&self, event: &Value) {
        let path = self.dir.join(EVENTS);
        let line = format!("{event}\n");
        // An event that cannot be written is lost to the page, not to the run.
        if let Ok(mut file) = OpenOptions::new().create(true).append(true).open(&path) {
            let _ = file.write_all(line.as_bytes());
        }
        self.lines.send_modify(|n| *n += 1);
    }

    /// Sets the state (with its error): writes `job.json`, appends the job's own event, and only
    /// then changes the state streams go by, so a finished job's last line is always there when
    /// its stream sees it finished.
    fn set_state(&self, state: JobState, error: Option<String>) {
        let mut record = self.record();
        record.state = state;
        record.error = error.clone();
        record.finished = state.is_final().then(now);
        // The record on disk is what a restarted server goes by.
        let _ = save_json(&self.dir.join(RECORD), &record);
        self.append(&json!({ "event": "job", "state": state, "error": error }));
        *lock(&self.record) = record;
        self.lines.send_modify(|n| *n += 1);
    }
}

/// Every job of the work folder, the queue and what the job threads need.
pub struct Jobs {
    /// `<work>/jobs`.
    dir: PathBuf,
    /// Held while the server runs: a second server on the same work folder would run its jobs
    /// too.
    _lock: std::fs::File,
    config: ServeConfig,
    all: Mutex<BTreeMap<String, Arc<Job>>>,
    queue: Mutex<VecDeque<Arc<Job>>>,
    wake: Condvar,
}

impl Jobs {
    /// Reads the jobs of `config.work` and queues again, in the order they were posted, those
    /// a previous server left queued or running.
    pub fn open(config: &ServeConfig) -> Result<Arc<Jobs>, ServeError> {
        let dir = config.work.join("jobs");
        std::fs::create_dir_all(&dir).map_err(ServeError::io(
            &dir,
            "cannot make the work folder's jobs folder",
        ))?;
        // The pipeline's own lock, on the server's work folder.
        let lock = lock_work_folder(&config.work).map_err(|e| ServeError::Invalid(one_line(&e)))?;
        let mut all = BTreeMap::new();
        let mut queue = VecDeque::new();
        let entries =
            std::fs::read_dir(&dir).map_err(ServeError::io(&dir, "cannot read the jobs folder"))?;
        for entry in entries.filter_map(|e| e.ok()) {
            let path = entry.path();
            // A job being made when a server stopped is in a temporary folder (`.<id>.tmp`).
            if entry.file_name().to_string_lossy().starts_with('.') {
                let _ = std::fs::remove_dir_all(&path);
                continue;
            }
            let Some(record) = std::fs::read(path.join(RECORD))
                .ok()
                .and_then(|b| serde_json::from_slice::<JobRecord>(&b).ok())
            else {
                continue;
            };
            let job = Arc::new(Job::new(path, record));
            if !job.state().is_final() {
                queue.push_back(job.clone());
            }
            all.insert(job.id.clone(), job);
        }
        queue.make_contiguous().sort_by(|a, b| a.id.cmp(&b.id));
        for job in &queue {
            job.set_state(JobState::Queued, None);
        }
        Ok(Arc::new(Jobs {
            dir,
            _lock: lock,
            config: config.clone(),
            all: Mutex::new(all),
            queue: Mutex::new(queue),
            wake: Condvar::new(),
        }))
    }

    /// Starts `n` threads, each running the queue's jobs one after the other.
    pub fn start_workers(self: &Arc<Self>, n: usize) {
        for i in 0..n {
            let jobs = self.clone();
            std::thread::Builder::new()
                .name(format!("orbitmesh-job-{i}"))
                .spawn(move || {
                    loop {
                        let job = jobs.next();
                        jobs.run(&job);
                    }
                })
                .expect("a thread can be started");
        }
    }

    fn next(&self) -> Arc<Job> {
        let mut queue = lock(&self.queue);
        loop {
            if let Some(job) = queue.pop_front() {
                return job;
            }
            queue = self.wake.wait(queue).unwrap_or_else(|e| e.into_inner());
        }
    }

    pub fn get(&self, id: &str) -> Option<Arc<Job>> {
        lock(&self.all).get(id).cloned()
    }

    /// Every job, oldest first.
    pub fn list(&self) -> Vec<Arc<Job>> {
        lock(&self.all).values().cloned().collect()
    }

    pub fn counts(&self) -> Vec<(JobState, usize)> {
        let mut counts = BTreeMap::new();
        for job in self.list() {
            *counts.entry(job.state()).or_insert(0) += 1;
        }
        counts.into_iter().collect()
    }

    /// Makes a job of a checked photo and options (its folder written under a temporary name,
    /// then renamed) and queues it.
    pub fn create(
        &self,
        file_name: &str,
        bytes: &[u8],
        extension: &str,
        options: JobOptions,
    ) -> Result<Arc<Job>, ServeError> {
        let mut all = lock(&self.all);
        // Numbers in the order jobs come, so the folders sort as the queue does.
        let next = all
            .keys()
            .filter_map(|id| id.parse::<u64>().ok())
            .max()
            .map_or(1, |n| n + 1);
        let id = format!("{next:06}");
        let dir = self.dir.join(&id);
        let tmp = self.dir.join(format!(".{id}.tmp"));
        let _ = std::fs::remove_dir_all(&tmp);
        std::fs::create_dir_all(&tmp)
            .map_err(ServeError::io(&tmp, "cannot make the job's folder"))?;
        let input = format!("input.{extension}");
        let record = JobRecord {
            id: id.clone(),
            created: now(),
            file_name: file_name.to_string(),
            input: input.clone(),
            options,
            state: JobState::Queued,
            error: None,
            finished: None,
        };
        let written = save(&tmp.join(&input), bytes)
            .and_then(|()| save_json(&tmp.join(RECORD), &record))
            .map_err(|e| ServeError::Io {
                path: tmp.clone(),
                problem: "cannot write the job's files",
                source: std::io::Error::other(one_line(&e)),
            });
        if let Err(e) = written.and_then(|()| {
            std::fs::rename(&tmp, &dir)
                .map_err(ServeError::io(&dir, "cannot make the job's folder"))
        }) {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e);
        }
        let job = Arc::new(Job::new(dir, record));
        job.append(&json!({ "event": "job", "state": JobState::Queued, "error": null }));
        all.insert(id, job.clone());
        // Queued before the next job can be numbered, so the queue keeps the ids' order.
        lock(&self.queue).push_back(job.clone());
        drop(all);
        self.wake.notify_one();
        Ok(job)
    }

    /// Cancels a job: a queued one leaves the queue at once, a running one stops at its next
    /// step (its stage folders stay, resumable). Returns the state it was in.
    pub fn cancel(&self, job: &Arc<Job>) -> JobState {
        let mut queue = lock(&self.queue);
        let state = job.state();
        match state {
            JobState::Queued => {
                queue.retain(|j| j.id != job.id);
                drop(queue);
                job.set_state(JobState::Cancelled, None);
            }
            JobState::Running => job.cancel.store(true, Ordering::SeqCst),
            _ => {}
        }
        state
    }

    /// Queues a cancelled or failed job again (at the end of the queue): its run goes on from
    /// its stage folders. Returns the state it was in; only those two change.
    pub fn resume(&self, job: &Arc<Job>) -> JobState {
        let all = lock(&self.all);
        let state = job.state();
        if matches!(state, JobState::Cancelled | JobState::Failed) {
            job.cancel.store(false, Ordering::SeqCst);
            job.set_state(JobState::Queued, None);
            lock(&self.queue).push_back(job.clone());
            drop(all);
            self.wake.notify_one();
        }
        state
    }

    /// Runs one job through the pipeline and publishes its files.
    fn run(&self, job: &Arc<Job>) {
        if job.state() != JobState::Queued {
            return;
        }
        job.set_state(JobState::Running, None);
        let outcome =
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_pipeline(job)));
        let (state, error) = match outcome {
            Ok(Ok(())) => (JobState::Done, None),
            Ok(Err(JobError::Cancelled)) => (JobState::Cancelled, None),
            Ok(Err(JobError::Failed(message))) => (JobState::Failed, Some(message)),
            Err(_) => (
                JobState::Failed,
                Some("internal error: the job's thread panicked (a bug; please report it)".into()),
            ),
        };
        *lock(&job.progress) = Progress::default();
        job.set_state(state, error);
    }

    fn run_pipeline(&self, job: &Job) -> Result<(), JobError> {
        let record = job.record();
        let glb = job.dir.join("model.glb");
        let plan = record
            .options
            .plan(&job.dir.join(&record.input), glb.clone(), &self.config)
            .map_err(JobError::Failed)?;
        let frames = job.dir.join(FRAMES);
        let _ = std::fs::create_dir_all(&frames);
        let outputs = orbitmesh_pipeline::run(&plan, &job.dir.join(RUN), &mut |event| {
            self.on_event(job, &frames, event);
            if job.cancel.load(Ordering::SeqCst) {
                Flow::Stop
            } else {
                Flow::Continue
            }
        });
        let outputs = match outputs {
            Ok(outputs) => outputs,
            Err(PipelineError::Cancelled) => return Err(JobError::Cancelled),
            Err(e) => return Err(JobError::Failed(one_line(&e))),
        };
        write_obj_zip(&outputs.mesh, &job.dir.join("model.zip"))
            .map_err(|e| JobError::Failed(format!("model.zip: {e}")))
    }

    /// What the job's events say of an event of the pipeline: the same JSON, with the paths a
    /// client cannot use made names it can fetch (a frame's copy in `frames/`), and nothing of
    /// the publishing of a folder, which concerns only the process.
    fn on_event(&self, job: &Job, frames: &Path, event: &Event) {
        {
            let mut progress = lock(&job.progress);
            match event {
                Event::StageStarted { stage } => {
                    *progress = Progress {
                        stage: Some(*stage),
                        ..Progress::default()
                    }
                }
                Event::Step {
                    stage, step, total, ..
                } => {
                    *progress = Progress {
                        stage: Some(*stage),
                        step: Some(*step),
                        total: Some(*total),
                    }
                }
                _ => {}
            }
        }
        let mut value = match event {
            Event::Publishing { .. } => return,
            _ => serde_json::to_value(event).unwrap_or(Value::Null),
        };
        match event {
            Event::Frame { index, path, .. } => {
                let name = format!("{index:03}.png");
                if std::fs::copy(path, frames.join(&name)).is_err() {
                    return;
                }
                value["path"] = json!(format!("{FRAMES}/{name}"));
            }
            Event::Resumed { .. } => value["from"] = json!(job.id),
            _ => {}
        }
        job.append(&value);
    }
}

enum JobError {
    Cancelled,
    Failed(String),
}

/// Writes the mesh as OBJ, MTL and texture into a temporary folder and zips them into `path`
/// (through a temporary file renamed into place).
fn write_obj_zip(mesh: &orbitmesh_geom::TriMesh, path: &Path) -> Result<(), String> {
    let folder = tempfile::tempdir().map_err(|e| e.to_string())?;
    orbitmesh_geom::io::write_mesh(&folder.path().join("model.obj"), mesh)
        .map_err(|e| one_line(&e))?;
    let parent = path.parent().unwrap_or(Path::new("."));
    let mut tmp = tempfile::NamedTempFile::new_in(parent).map_err(|e| e.to_string())?;
    {
        let mut zip = zip::ZipWriter::new(tmp.as_file_mut());
        let options = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        let mut files: Vec<PathBuf> = std::fs::read_dir(folder.path())
            .map_err(|e| e.to_string())?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        files.sort();
        for file in files {
            let name = file
                .file_name()
                .and_then(|n| n.to_str())
                .ok_or("a file name that is not UTF-8")?;
            zip.start_file(name, options).map_err(|e| e.to_string())?;
            let bytes = std::fs::read(&file).map_err(|e| e.to_string())?;
            zip.write_all(&bytes).map_err(|e| e.to_string())?;
        }
        zip.finish().map_err(|e| e.to_string())?;
    }
    tmp.persist(path).map_err(|e| e.error.to_string())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use orbitmesh_render::DeviceChoice;

    #[test]
    fn one_server_per_work_folder() {
        let dir = tempfile::tempdir().unwrap();
        let config = ServeConfig {
            work: dir.path().join("work"),
            jobs: 1,
            token: None,
            max_upload: 1 << 20,
            weights: None,
            device: DeviceChoice::Cpu,
        };
        let first = Jobs::open(&config).unwrap();
        let err = Jobs::open(&config).err().unwrap().to_string();
        assert!(err.contains("another orbitmesh run"), "{err}");
        drop(first);
        assert!(Jobs::open(&config).is_ok());
    }
}
