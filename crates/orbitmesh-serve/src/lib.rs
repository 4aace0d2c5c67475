//! `orbitmesh serve` as a library: the pipeline ([`orbitmesh_pipeline::run`]) behind an HTTP API
//! and a web page served from the binary.
//!
//! A job is a photo and its options. It lives in its own folder of the work folder
//! (`jobs/<id>/`: `job.json`, the photo, `events.jsonl`, the pipeline's stage folders under
//! `run/`, the orbit's frames as they are written under `frames/`, and at the end `model.glb` and
//! `model.zip`), so a restarted server lists every job and resumes the unfinished ones from their
//! stage folders. Jobs wait in one queue and run on `jobs` threads of their own; the requests
//! are served by axum on tokio. Every event of a run is one line of `events.jsonl`, which the
//! events endpoint streams as server-sent events from its first line, so a page opened late (or
//! reopened after a restart) sees the whole run.
//!
//! The library neither prints nor parses command lines; its errors are [`ServeError`].

mod api;
mod jobs;
mod options;
mod page;
mod upload;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use orbitmesh_render::DeviceChoice;

pub use jobs::JobState;
pub use options::JobOptions;

/// How a server runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    /// The work folder: one folder per job under `jobs/`.
    pub work: PathBuf,
    /// Jobs run at once; the rest wait in the order they came.
    pub jobs: usize,
    /// The token every request must carry (a `Bearer` header, the `token` query parameter, or
    /// the cookie the page sets), if any.
    pub token: Option<String>,
    /// The largest upload in bytes.
    pub max_upload: usize,
    /// SV3D's weights, which jobs may then ask for (`"generator": "sv3d"`).
    pub weights: Option<PathBuf>,
    /// Where jobs rasterize and run their tensors.
    pub device: DeviceChoice,
}

/// What can keep a server from starting.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The work folder or a job's files could not be read or written.
    #[error("{}: {problem}", path.display())]
    Io {
        path: PathBuf,
        problem: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// A setting that cannot work (a public address without a token, no job threads).
    #[error("{0}")]
    Invalid(String),
}

impl ServeError {
    fn io(path: &std::path::Path, problem: &'static str) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_path_buf();
        move |source| ServeError::Io {
            path,
            problem,
            source,
        }
    }
}

/// Refuses an address other machines can reach unless requests need a token: the API runs jobs
/// and writes files, which nobody else should be able to do on a user's machine.
pub fn check_address(addr: &SocketAddr, token: Option<&str>) -> Result<(), ServeError> {
    if !addr.ip().is_loopback() && token.is_none_or(str::is_empty) {
        return Err(ServeError::Invalid(format!(
            "{addr} can be reached from other machines: give --token TOKEN (every request must \
             then carry it), or bind 127.0.0.1"
        )));
    }
    Ok(())
}

/// A server: its jobs (loaded from the work folder, the unfinished ones queued again, and the
/// threads that run them) and the router of its page and API.
pub struct Server {
    jobs: Arc<jobs::Jobs>,
    config: Arc<ServeConfig>,
}

impl Server {
    /// Opens the work folder (made if need be), lists its jobs, queues again those a previous
    /// server left queued or running, and starts the job threads.
    pub fn open(config: ServeConfig) -> Result<Server, ServeError> {
        if config.jobs == 0 {
            return Err(ServeError::Invalid("--jobs must be at least 1".into()));
        }
        let jobs = jobs::Jobs::open(&config)?;
        jobs.start_workers(config.jobs);
        Ok(Server {
            jobs,
            config: Arc::new(config),
        })
    }

    /// The page and the API.
    pub fn router(&self) -> axum::Router {
        api::router(self.jobs.clone(), self.config.clone())
    }

    /// How many jobs there are in each state, for the line a front end prints at the start.
    pub fn counts(&self) -> Vec<(JobState, usize)> {
        self.jobs.counts()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_public_address_needs_a_token() {
        let public: SocketAddr = "0.0.0.0:7860".parse().unwrap();
        let loopback: SocketAddr = "127.0.0.1:7860".parse().unwrap();
        let loopback6: SocketAddr = "[::1]:7860".parse().unwrap();
        assert!(check_address(&loopback, None).is_ok());
        assert!(check_address(&loopback6, None).is_ok());
        let err = check_address(&public, None).unwrap_err().to_string();
        assert!(err.contains("--token"), "{err}");
        assert!(check_address(&public, Some("")).is_err());
        assert!(check_address(&public, Some("s3cret")).is_ok());
    }
}
