//! The HTTP API and its router: every error is a status and `{"error": "…"}` naming the problem.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;

use axum::extract::multipart::MultipartRejection;
use axum::extract::{DefaultBodyLimit, Multipart, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use futures_util::Stream;
use serde_json::{Value, json};
use tokio::sync::watch;

use crate::ServeConfig;
use crate::jobs::{EVENTS, Job, JobState, Jobs};
use crate::options::JobOptions;
use crate::page;
use crate::upload::{Rejected, check_file_name, check_image};

#[derive(Clone)]
struct App {
    jobs: Arc<Jobs>,
    config: Arc<ServeConfig>,
}

/// An error as the API answers it.
pub struct ApiError {
    status: StatusCode,
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError {
            status,
            message: message.into(),
        }
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::NOT_FOUND, message)
    }

    fn bad(message: impl Into<String>) -> Self {
        ApiError::new(StatusCode::BAD_REQUEST, message)
    }
}

impl From<Rejected> for ApiError {
    fn from(rejected: Rejected) -> Self {
        match rejected {
            Rejected::Unsupported(m) => ApiError::new(StatusCode::UNSUPPORTED_MEDIA_TYPE, m),
            Rejected::Invalid(m) => ApiError::bad(m),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({ "error": self.message }))).into_response()
    }
}

/// The cookie the page gets when it is opened with `?token=`, so its own requests (scripts,
/// images, the viewer's model, the event stream) carry the token.
const TOKEN_COOKIE: &str = "orbitmesh_token";

pub fn router(jobs: Arc<Jobs>, config: Arc<ServeConfig>) -> Router {
    // The multipart body is the photo, the options and the parts' headers.
    let body_limit = config.max_upload + (64 << 10);
    let app = App { jobs, config };
    Router::new()
        .route("/", get(page::index))
        .route("/assets/{name}", get(page::asset))
        .route("/api/config", get(server_config))
        .route("/api/jobs", get(list).post(create))
        .route("/api/jobs/{id}", get(status).delete(cancel))
        .route("/api/jobs/{id}/resume", post(resume))
        .route("/api/jobs/{id}/events", get(events))
        .route("/api/jobs/{id}/files/{*name}", get(file))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such page or API route") })
        .layer(DefaultBodyLimit::max(body_limit))
        .layer(middleware::from_fn_with_state(app.clone(), require_token))
        .with_state(app)
}

/// Lets a request through if the server has no token or the request carries it (as a
/// `Bearer` header, the page's cookie or a `token` query parameter, which also sets the cookie).
async fn require_token(State(app): State<App>, request: Request, next: Next) -> Response {
    let Some(token) = app.config.token.as_deref() else {
        return next.run(request).await;
    };
    let headers = request.headers();
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    let cookie = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|c| c.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
        .next();
    let query = request
        .uri()
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .find_map(|p| p.strip_prefix("token="));
    let matches = |given: Option<&str>| given.is_some_and(|g| same_secret(g, token));
    if matches(bearer) || matches(cookie) {
        return next.run(request).await;
    }
    if matches(query) {
        let mut response = next.run(request).await;
        if let Ok(value) = HeaderValue::from_str(&format!(
            "{TOKEN_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
        )) {
            response.headers_mut().insert(header::SET_COOKIE, value);
        }
        return response;
    }
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "this server needs its token: an `Authorization: Bearer TOKEN` header, or open the page \
         as /?token=TOKEN",
    )
    .into_response()
}

/// Compares two secrets in a time that does not depend on where they first differ.
fn same_secret(given: &str, token: &str) -> bool {
    given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// What the page needs to know of the server: whether it can run SV3D and IS-Net.
async fn server_config(State(app): State<App>) -> Json<Value> {
    Json(json!({
        "sv3d": app.config.weights.is_some(),
        "isnet": orbitmesh_segment::install::installed().is_some(),
        "max_upload": app.config.max_upload,
        "jobs": app.config.jobs,
    }))
}

fn job_or_404(app: &App, id: &str) -> Result<Arc<Job>, ApiError> {
    app.jobs
        .get(id)
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no job `{id}`")))
}

/// A job as the API shows it.
fn summary(job: &Job) -> Value {
    let record = job.record();
    let files: Vec<&str> = [
        "input",
        "prepared.png",
        "mask.png",
        "model.glb",
        "model.zip",
    ]
    .into_iter()
    .filter(|name| job.file(name).is_some())
    .collect();
    json!({
        "id": record.id,
        "state": record.state,
        "created": record.created,
        "finished": record.finished,
        "file_name": record.file_name,
        "options": record.options,
        "error": record.error,
        "progress": job.progress(),
        "result": (record.state == JobState::Done).then(|| record.options.format.file_name()),
        "files": files,
    })
}

async fn list(State(app): State<App>) -> Json<Value> {
    Json(Value::Array(
        app.jobs
            .list()
            .iter()
            .map(|j| summary(j.as_ref()))
            .collect(),
    ))
}

async fn status(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    Ok(Json(summary(job_or_404(&app, &id)?.as_ref())))
}

/// `POST /api/jobs`: a multipart form with an `image` part and an optional `options` part.
async fn create(
    State(app): State<App>,
    multipart: Result<Multipart, MultipartRejection>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let mut multipart = multipart.map_err(|e| {
        ApiError::bad(format!(
            "send a multipart/form-data body with an `image` part ({})",
            e.body_text()
        ))
    })?;
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "image: the upload is over this server's limit of {} bytes (--max-upload)",
                app.config.max_upload
            ),
        )
    };
    let part_error = |e: axum::extract::multipart::MultipartError| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            too_large()
        } else {
            ApiError::bad(format!(
                "the multipart body is malformed ({})",
                e.body_text()
            ))
        }
    };
    let mut image = None;
    let mut options = None;
    while let Some(field) = multipart.next_field().await.map_err(part_error)? {
        match field.name() {
            Some("image") if image.is_none() => {
                let name = field.file_name().unwrap_or_default().to_string();
                image = Some((name, field.bytes().await.map_err(part_error)?));
            }
            Some("options") if options.is_none() => {
                options = Some(field.text().await.map_err(part_error)?);
            }
            Some(name @ ("image" | "options")) => {
                return Err(ApiError::bad(format!("two `{name}` parts; send one")));
            }
            other => {
                return Err(ApiError::bad(format!(
                    "unknown part `{}`: send `image` and, optionally, `options`",
                    other.unwrap_or_default()
                )));
            }
        }
    }
    let (file_name, bytes) =
        image.ok_or_else(|| ApiError::bad("no `image` part: send the photo as `image`"))?;
    check_file_name(&file_name)?;
    if bytes.len() > app.config.max_upload {
        return Err(too_large());
    }
    let options = JobOptions::parse(options.as_deref().unwrap_or("{}")).map_err(ApiError::bad)?;
    options
        .check_server(&app.config)
        .map_err(|m| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m))?;
    // Decoding a large photo takes a while: off the threads that answer requests.
    let checked = bytes.clone();
    let format = tokio::task::spawn_blocking(move || check_image(&checked))
        .await
        .map_err(|_| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "the check panicked"))??;
    let extension = format.extensions_str()[0];
    let jobs = app.jobs.clone();
    let job =
        tokio::task::spawn_blocking(move || jobs.create(&file_name, &bytes, extension, options))
            .await
            .map_err(|_| {
                ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "making the job panicked")
            })?
            .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok((StatusCode::CREATED, Json(json!({ "id": job.id }))))
}

/// `DELETE /api/jobs/{id}`: a queued job is cancelled at once, a running one at its next step.
async fn cancel(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let job = job_or_404(&app, &id)?;
    match app.jobs.cancel(&job) {
        JobState::Queued => Ok((
            StatusCode::OK,
            Json(json!({ "id": id, "state": "cancelled" })),
        )),
        JobState::Running => Ok((
            StatusCode::ACCEPTED,
            Json(json!({ "id": id, "state": "running", "cancelling": true })),
        )),
        done => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!("job `{id}` is already {}", done.name()),
        )),
    }
}

/// `POST /api/jobs/{id}/resume`: a cancelled or failed job queued again, to go on from its
/// stage folders.
async fn resume(State(app): State<App>, Path(id): Path<String>) -> Result<Json<Value>, ApiError> {
    let job = job_or_404(&app, &id)?;
    match app.jobs.resume(&job) {
        JobState::Cancelled | JobState::Failed => Ok(Json(json!({ "id": id, "state": "queued" }))),
        other => Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "job `{id}` is {}: only a cancelled or failed job resumes",
                other.name()
            ),
        )),
    }
}

/// `GET /api/jobs/{id}/files/{name}`: one of the job's files ([`Job::file`]).
async fn file(
    State(app): State<App>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let job = job_or_404(&app, &id)?;
    let path = job.file(&name).ok_or_else(|| {
        ApiError::new(
            StatusCode::NOT_FOUND,
            format!(
                "job `{id}` has no file `{}` (yet); its files are input, prepared.png, mask.png, \
                 frames/NNN.png, model.glb and model.zip",
                name.escape_default()
            ),
        )
    })?;
    let bytes = tokio::fs::read(&path)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, format!("{name}: {e}")))?;
    let mut headers = HeaderMap::new();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(&path)),
    );
    if name.starts_with("model.")
        && let Ok(value) = HeaderValue::from_str(&format!("attachment; filename=\"{name}\""))
    {
        headers.insert(header::CONTENT_DISPOSITION, value);
    }
    Ok((headers, bytes).into_response())
}

fn content_type(path: &std::path::Path) -> &'static str {
    match path.extension().and_then(|e| e.to_str()) {
        Some("glb") => "model/gltf-binary",
        Some("zip") => "application/zip",
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => "application/octet-stream",
    }
}

/// `GET /api/jobs/{id}/events`: the job's events as server-sent events, from its first; once
/// the job is over and every line is sent, an `end` event, and the stream ends.
async fn events(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<Sse<impl Stream<Item = Result<SseEvent, Infallible>>>, ApiError> {
    let job = job_or_404(&app, &id)?;
    let tail = Tail {
        path: job.dir.join(EVENTS),
        offset: 0,
        pending: VecDeque::new(),
        lines: job.subscribe(),
        job,
        done: false,
        ended: false,
    };
    let stream = futures_util::stream::unfold(tail, |mut tail| async move {
        loop {
            if let Some(line) = tail.pending.pop_front() {
                return Some((Ok(SseEvent::default().data(line)), tail));
            }
            if tail.done {
                // One `end` event, so a page closes its stream rather than reconnect to it.
                if tail.ended {
                    return None;
                }
                tail.ended = true;
                return Some((Ok(SseEvent::default().event("end").data("{}")), tail));
            }
            // Seen before the file is read: a line written after this wakes `changed`.
            tail.lines.borrow_and_update();
            let finished = tail.job.state().is_final();
            tail.read_new_lines();
            if tail.pending.is_empty() && (finished || tail.lines.changed().await.is_err()) {
                tail.done = true;
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()))
}

/// The part of a job's `events.jsonl` a stream has not sent yet.
struct Tail {
    path: PathBuf,
    offset: u64,
    pending: VecDeque<String>,
    lines: watch::Receiver<u64>,
    job: Arc<Job>,
    done: bool,
    ended: bool,
}

impl Tail {
    /// Reads the complete lines written since the last read.
    fn read_new_lines(&mut self) {
        let Ok(mut file) = std::fs::File::open(&self.path) else {
            return;
        };
        let mut text = String::new();
        if file.seek(SeekFrom::Start(self.offset)).is_err()
            || file.read_to_string(&mut text).is_err()
        {
            return;
        }
        let Some(end) = text.rfind('\n') else {
            return;
        };
        self.offset += end as u64 + 1;
        self.pending.extend(
            text[..end]
                .lines()
                .filter(|l| !l.is_empty())
                .map(str::to_string),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::body::Body;
    use axum::http::Request as HttpRequest;
    use http_body_util::BodyExt;
    use image::{ImageFormat, Luma, Rgba, RgbaImage};
    use orbitmesh_render::DeviceChoice;
    use tower::ServiceExt;

    /// A router over a work folder in a temporary folder, with no job threads: jobs stay queued.
    fn router_in(parent: &std::path::Path, token: Option<&str>, max_upload: usize) -> Router {
        let config = ServeConfig {
            work: parent.join("work"),
            jobs: 1,
            token: token.map(str::to_string),
            max_upload,
            weights: None,
            device: DeviceChoice::Cpu,
        };
        let jobs = Jobs::open(&config).unwrap();
        router(jobs, Arc::new(config))
    }

    fn png(width: u32, height: u32) -> Vec<u8> {
        let mut bytes = Vec::new();
        RgbaImage::from_pixel(width, height, Rgba([200, 10, 10, 255]))
            .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
            .unwrap();
        bytes
    }

    /// `parts` as a multipart/form-data body: (name, file name, bytes).
    fn multipart(parts: &[(&str, Option<&str>, &[u8])]) -> HttpRequest<Body> {
        let boundary = "orbitmeshboundary7MA4YWxk";
        let mut body = Vec::new();
        for (name, file_name, bytes) in parts {
            body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
            let disposition = match file_name {
                Some(f) => format!("form-data; name=\"{name}\"; filename=\"{f}\""),
                None => format!("form-data; name=\"{name}\""),
            };
            body.extend_from_slice(
                format!("Content-Disposition: {disposition}\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(bytes);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        HttpRequest::post("/api/jobs")
            .header(
                header::CONTENT_TYPE,
                format!("multipart/form-data; boundary={boundary}"),
            )
            .body(Body::from(body))
            .unwrap()
    }

    async fn send(router: &Router, request: HttpRequest<Body>) -> (StatusCode, Value) {
        let response = router.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }

    fn get(uri: &str) -> HttpRequest<Body> {
        HttpRequest::get(uri).body(Body::empty()).unwrap()
    }

    /// Every file under `dir`, relative to it.
    fn files_under(dir: &std::path::Path) -> Vec<String> {
        let mut files = Vec::new();
        let mut stack = vec![dir.to_path_buf()];
        while let Some(d) = stack.pop() {
            for entry in std::fs::read_dir(&d).unwrap().filter_map(|e| e.ok()) {
                let path = entry.path();
                if path.is_dir() {
                    stack.push(path);
                } else {
                    files.push(path.strip_prefix(dir).unwrap().display().to_string());
                }
            }
        }
        files.sort();
        files
    }

    #[tokio::test]
    async fn bad_uploads_get_a_4xx_naming_the_problem_and_the_server_stays_up() {
        let parent = tempfile::tempdir().unwrap();
        let router = router_in(parent.path(), None, 1_000_000);
        let photo = png(64, 48);
        // A PNG of 400 kB that decodes to 81 MB: a decompression bomb.
        let bomb = {
            let mut bytes = Vec::new();
            image::GrayImage::from_pixel(9000, 9000, Luma([0]))
                .write_to(&mut std::io::Cursor::new(&mut bytes), ImageFormat::Png)
                .unwrap();
            bytes
        };
        assert!(bomb.len() < 1_000_000, "{} bytes", bomb.len());
        let huge_header = crate::upload::tests::png_header_claiming(60_000);
        let big = vec![0x89u8; 1_200_000];
        let cases: Vec<(&str, HttpRequest<Body>, StatusCode, &str)> = vec![
            (
                "not an image",
                multipart(&[("image", Some("a.png"), b"GIF89a, or not")]),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not a PNG",
            ),
            (
                "0 bytes",
                multipart(&[("image", Some("a.png"), b"")]),
                StatusCode::BAD_REQUEST,
                "empty",
            ),
            (
                "over the limit",
                multipart(&[("image", Some("a.png"), &big)]),
                StatusCode::PAYLOAD_TOO_LARGE,
                "over this server's limit",
            ),
            (
                "a decompression bomb",
                multipart(&[("image", Some("bomb.png"), &bomb)]),
                StatusCode::BAD_REQUEST,
                "9000×9000",
            ),
            (
                "a 60000² header",
                multipart(&[("image", Some("h.png"), &huge_header)]),
                StatusCode::BAD_REQUEST,
                "60000×60000",
            ),
            (
                "a file name with ../",
                multipart(&[("image", Some("../../evil.png"), &photo)]),
                StatusCode::BAD_REQUEST,
                "names a folder",
            ),
            (
                "unknown options",
                multipart(&[
                    ("image", Some("a.png"), &photo),
                    ("options", None, br#"{"preset":"fast","colour":"red"}"#),
                ]),
                StatusCode::BAD_REQUEST,
                "unknown option `colour`",
            ),
            (
                "options that are not JSON",
                multipart(&[("image", Some("a.png"), &photo), ("options", None, b"fast")]),
                StatusCode::BAD_REQUEST,
                "not JSON",
            ),
            (
                "SV3D without weights",
                multipart(&[
                    ("image", Some("a.png"), &photo),
                    ("options", None, br#"{"generator":"sv3d"}"#),
                ]),
                StatusCode::UNPROCESSABLE_ENTITY,
                "--weights",
            ),
            (
                "no image part",
                multipart(&[("options", None, b"{}")]),
                StatusCode::BAD_REQUEST,
                "no `image` part",
            ),
            (
                "an unknown part",
                multipart(&[("image", Some("a.png"), &photo), ("extra", None, b"x")]),
                StatusCode::BAD_REQUEST,
                "unknown part `extra`",
            ),
            (
                "not multipart",
                HttpRequest::post("/api/jobs")
                    .header(header::CONTENT_TYPE, "application/json")
                    .body(Body::from("{}"))
                    .unwrap(),
                StatusCode::BAD_REQUEST,
                "multipart",
            ),
            (
                "a missing job",
                get("/api/jobs/999999"),
                StatusCode::NOT_FOUND,
                "no job `999999`",
            ),
            (
                "a missing route",
                get("/api/nothing"),
                StatusCode::NOT_FOUND,
                "no such",
            ),
        ];
        for (what, request, status, says) in cases {
            let (got, body) = send(&router, request).await;
            assert_eq!(got, status, "{what}: {body}");
            let error = body["error"]
                .as_str()
                .unwrap_or_else(|| panic!("{what}: {body}"));
            assert!(error.contains(says), "{what}: {error}");
            // Alive, and no job was made.
            let (ok, list) = send(&router, get("/api/jobs")).await;
            assert_eq!(ok, StatusCode::OK, "{what}");
            assert_eq!(list, json!([]), "{what}");
        }
        // Nothing written but the server's lock and the (empty) jobs folder.
        assert_eq!(files_under(parent.path()), ["work/.lock"]);
        assert!(parent.path().join("work/jobs").is_dir());
    }

    #[tokio::test]
    async fn a_job_is_made_queued_and_only_its_own_files_are_served() {
        let parent = tempfile::tempdir().unwrap();
        let router = router_in(parent.path(), None, 1 << 20);
        let photo = png(64, 48);
        let mut ids = Vec::new();
        for name in ["first.png", "second.png"] {
            let (status, body) = send(
                &router,
                multipart(&[
                    ("image", Some(name), &photo),
                    ("options", None, br#"{"preset":"fast"}"#),
                ]),
            )
            .await;
            assert_eq!(status, StatusCode::CREATED, "{body}");
            ids.push(body["id"].as_str().unwrap().to_string());
        }
        assert_eq!(ids, ["000001", "000002"]);
        let (status, job) = send(&router, get("/api/jobs/000001")).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(job["state"], "queued");
        assert_eq!(job["file_name"], "first.png");
        assert_eq!(job["options"]["preset"], "fast");
        assert_eq!(job["files"], json!(["input"]));
        // Its photo, byte for byte.
        let response = router
            .clone()
            .oneshot(get("/api/jobs/000001/files/input"))
            .await
            .unwrap();
        assert_eq!(response.headers()[header::CONTENT_TYPE], "image/png");
        let bytes = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes.as_ref(), photo.as_slice());
        // Another job's file through `..`, a file outside the jobs, a file not there yet.
        for uri in [
            "/api/jobs/000001/files/../000002/files/input",
            "/api/jobs/000001/files/%2e%2e%2f000002%2finput.png",
            "/api/jobs/000001/files/..%2f..%2fjob.json",
            "/api/jobs/000001/files/frames/..%2f..%2f000002%2finput.png",
            "/api/jobs/000001/files/job.json",
            "/api/jobs/000001/files/model.glb",
            "/api/jobs/000001/files/frames/001.png",
        ] {
            let (status, body) = send(&router, get(uri)).await;
            assert!(status == StatusCode::NOT_FOUND, "{uri}: {status} {body}");
        }
        // Cancelling: queued at once; then it is over.
        let delete = |id: &str| {
            HttpRequest::delete(format!("/api/jobs/{id}"))
                .body(Body::empty())
                .unwrap()
        };
        let (status, body) = send(&router, delete("000002")).await;
        assert_eq!(
            (status, body["state"].clone()),
            (StatusCode::OK, json!("cancelled"))
        );
        let (status, body) = send(&router, delete("000002")).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"]
                .as_str()
                .unwrap()
                .contains("already cancelled")
        );
        // A cancelled job resumes (queued again); a queued one does not.
        let resume = |id: &str| {
            HttpRequest::post(format!("/api/jobs/{id}/resume"))
                .body(Body::empty())
                .unwrap()
        };
        let (status, body) = send(&router, resume("000001")).await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"].as_str().unwrap().contains("is queued"),
            "{body}"
        );
        // Its events end with its end.
        let response = router
            .clone()
            .oneshot(get("/api/jobs/000002/events"))
            .await
            .unwrap();
        let text = String::from_utf8(
            response
                .into_body()
                .collect()
                .await
                .unwrap()
                .to_bytes()
                .to_vec(),
        )
        .unwrap();
        let events: Vec<Value> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            events,
            [
                json!({"event": "job", "state": "queued", "error": null}),
                json!({"event": "job", "state": "cancelled", "error": null}),
                json!({}),
            ]
        );
        assert!(text.contains("event: end\n"), "{text}");
        // Resumed, it is queued again, behind the others.
        let (status, body) = send(&router, resume("000002")).await;
        assert_eq!(
            (status, body["state"].clone()),
            (StatusCode::OK, json!("queued"))
        );
        let (_, job) = send(&router, get("/api/jobs/000002")).await;
        assert_eq!(job["state"], "queued");
    }

    #[tokio::test]
    async fn with_a_token_every_request_needs_it() {
        let parent = tempfile::tempdir().unwrap();
        let router = router_in(parent.path(), Some("s3cret"), 1 << 20);
        for uri in ["/", "/api/jobs", "/assets/app.js", "/api/jobs?token=wrong"] {
            let (status, body) = send(&router, get(uri)).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{uri}");
            assert!(body["error"].as_str().unwrap().contains("token"));
        }
        let with_header = HttpRequest::get("/api/jobs")
            .header(header::AUTHORIZATION, "Bearer s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&router, with_header).await.0, StatusCode::OK);
        // The page opened with the token sets the cookie its own requests then carry.
        let response = router.clone().oneshot(get("/?token=s3cret")).await.unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let cookie = response.headers()[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .to_string();
        assert!(cookie.starts_with("orbitmesh_token=s3cret;"), "{cookie}");
        let with_cookie = HttpRequest::get("/assets/app.js")
            .header(header::COOKIE, "other=1; orbitmesh_token=s3cret")
            .body(Body::empty())
            .unwrap();
        assert_eq!(send(&router, with_cookie).await.0, StatusCode::OK);
    }
}
