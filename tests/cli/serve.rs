//! `orbitmesh serve`: the real server on a loopback port, driven through its HTTP API as a
//! script or Blender would drive it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use ureq::Agent;

use crate::common::command;

const STAGES: [&str; 5] = ["prepare", "orbit", "coarse", "fine", "export"];

/// A server process on a free loopback port, killed when dropped.
pub struct ServerProcess {
    pub child: Child,
    pub url: String,
}

impl ServerProcess {
    /// Starts `orbitmesh serve` on `work` (CPU, port chosen by the system) and waits for the line
    /// with its address.
    pub fn start(work: &Path, extra: &[&str]) -> ServerProcess {
        let mut child = command()
            .args([
                "serve",
                "--addr",
                "127.0.0.1:0",
                "--device",
                "cpu",
                "--work",
            ])
            .arg(work)
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("the orbitmesh binary runs");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .split_whitespace()
            .find(|w| w.starts_with("http://"))
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .trim_end_matches('/')
            .to_string();
        ServerProcess { child, url }
    }

    /// The server's peak resident memory so far, in MB (Linux).
    pub fn peak_rss_mb(&self) -> Option<f64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).ok()?;
        let kb: f64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))?
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb / 1024.0)
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An HTTP client that returns 4xx and 5xx answers rather than failing on them.
pub fn client() -> Agent {
    Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(600)))
        .build()
        .into()
}

pub fn example_photo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("data/examples/bunny.png")
}

/// Posts `image` with `options` as the page does (a multipart form) and returns the job's id.
pub fn post_job(client: &Agent, url: &str, image: &Path, options: &str) -> String {
    let boundary = "----orbitmesh-test-boundary";
    let name = image.file_name().unwrap().to_string_lossy();
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"{name}\"\r\n\
         Content-Type: image/png\r\n\r\n"
    )
    .into_bytes();
    body.extend(std::fs::read(image).unwrap());
    body.extend(
        format!(
            "\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"options\"\r\n\r\n\
             {options}\r\n--{boundary}--\r\n"
        )
        .into_bytes(),
    );
    let mut response = client
        .post(format!("{url}/api/jobs"))
        .header(
            "Content-Type",
            format!("multipart/form-data; boundary={boundary}"),
        )
        .send(&body[..])
        .unwrap();
    let status = response.status().as_u16();
    let body: Value = response.body_mut().read_json().unwrap();
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// Follows the job's server-sent events until `stop` says so or the stream ends (its `end`
/// event, after a finished job's last); returns them.
pub fn follow_events(
    client: &Agent,
    url: &str,
    id: &str,
    stop: impl Fn(&Value) -> bool,
) -> Vec<Value> {
    let response = client
        .get(format!("{url}/api/jobs/{id}/events"))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let mut events = Vec::new();
    for line in BufReader::new(response.into_body().into_reader()).lines() {
        let line = line.unwrap();
        // The server's last event, after a finished job's last line.
        if line == "event: end" {
            break;
        }
        if let Some(data) = line.strip_prefix("data: ") {
            let event: Value = serde_json::from_str(data).unwrap();
            let done = stop(&event);
            events.push(event);
            if done {
                break;
            }
        }
    }
    events
}

pub fn get_json(client: &Agent, url: &str, path: &str) -> Value {
    let mut response = client.get(format!("{url}{path}")).call().unwrap();
    response.body_mut().read_json().unwrap()
}

fn get_bytes(client: &Agent, url: &str, path: &str) -> Vec<u8> {
    let mut response = client.get(format!("{url}{path}")).call().unwrap();
    assert_eq!(response.status().as_u16(), 200, "{path}");
    response
        .body_mut()
        .with_config()
        .limit(200 << 20)
        .read_to_vec()
        .unwrap()
}

fn finished_stages(events: &[Value]) -> Vec<&str> {
    events
        .iter()
        .filter(|e| e["event"] == "stage_finished")
        .filter_map(|e| e["stage"].as_str())
        .collect()
}

/// A server on a new work folder (in the returned folder, to keep while it runs) and the id of
/// the job of bunny.png with `options` posted to it.
fn server_with_a_job(options: &str) -> (tempfile::TempDir, ServerProcess, Agent, String) {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("work"), &[]);
    let client = client();
    let id = post_job(&client, &server.url, &example_photo(), options);
    (dir, server, client, id)
}

/// Asserts that a job stopped in its fine stage, then queued again (after a restart, or resumed),
/// is done, and that its second run skipped the stages the first finished and ran the rest.
fn assert_went_on_from_the_fine_stage(events: &[Value]) {
    assert_eq!(events.last().unwrap()["state"], "done", "{events:?}");
    let again = events
        .iter()
        .rposition(|e| e["event"] == "job" && e["state"] == "queued")
        .unwrap();
    let skipped: Vec<&str> = events[again..]
        .iter()
        .filter(|e| e["event"] == "stage_skipped")
        .filter_map(|e| e["stage"].as_str())
        .collect();
    assert_eq!(skipped, ["prepare", "orbit", "coarse"]);
    assert_eq!(finished_stages(&events[again..]), ["fine", "export"]);
}

#[test]
fn a_photo_posted_to_the_api_streams_every_stage_and_downloads_as_a_valid_glb() {
    let (dir, server, client, id) = server_with_a_job(r#"{"preset": "fast", "format": "glb"}"#);
    let events = follow_events(&client, &server.url, &id, |_| false);
    assert_eq!(finished_stages(&events), STAGES, "{events:?}");
    assert_eq!(
        events.last().unwrap(),
        &json!({"event": "job", "state": "done", "error": null})
    );
    // The fine stage's steps, with their losses, and the orbit's 21 frames, each fetchable.
    assert!(
        events
            .iter()
            .any(|e| e["event"] == "step" && e["stage"] == "fine" && e["loss"].is_number())
    );
    let frames: Vec<&str> = events
        .iter()
        .filter(|e| e["event"] == "frame")
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(frames.len(), 21, "{frames:?}");
    let frame = get_bytes(
        &client,
        &server.url,
        &format!("/api/jobs/{id}/files/{}", frames[20]),
    );
    assert_eq!(image::load_from_memory(&frame).unwrap().width(), 256);

    let status = get_json(&client, &server.url, &format!("/api/jobs/{id}"));
    assert_eq!(status["state"], "done");
    assert_eq!(status["result"], "model.glb");
    let glb = get_bytes(
        &client,
        &server.url,
        &format!("/api/jobs/{id}/files/model.glb"),
    );
    assert_eq!(&glb[..4], b"glTF");
    let glb_path = dir.path().join("from-the-api.glb");
    std::fs::write(&glb_path, &glb).unwrap();
    let mesh = orbitmesh_geom::read_mesh(&glb_path).unwrap().mesh;
    assert!(mesh.faces.len() > 1000, "{} faces", mesh.faces.len());
    crate::engines::assert_engine_ready(&glb_path);
    // The OBJ with its material and texture, zipped.
    let zip = get_bytes(
        &client,
        &server.url,
        &format!("/api/jobs/{id}/files/model.zip"),
    );
    let archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    let mut names: Vec<&str> = archive.file_names().collect();
    names.sort();
    assert!(
        names.contains(&"model.obj") && names.contains(&"model.mtl"),
        "{names:?}"
    );
    assert!(names.iter().any(|n| n.ends_with(".png")), "{names:?}");
}

#[test]
fn a_server_killed_mid_job_finishes_it_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let client = client();
    let id = {
        let server = ServerProcess::start(&work, &[]);
        let id = post_job(
            &client,
            &server.url,
            &example_photo(),
            r#"{"preset": "fast"}"#,
        );
        // Killed (SIGKILL: no chance to tidy up) in the middle of the fine stage.
        let before = follow_events(&client, &server.url, &id, |e| {
            e["event"] == "step" && e["stage"] == "fine" && e["step"].as_u64() >= Some(10)
        });
        assert_eq!(finished_stages(&before), ["prepare", "orbit", "coarse"]);
        id
    };
    let server = ServerProcess::start(&work, &[]);
    let listed = get_json(&client, &server.url, "/api/jobs");
    assert_eq!(listed[0]["id"], id.as_str());
    let events = follow_events(&client, &server.url, &id, |_| false);
    assert_went_on_from_the_fine_stage(&events);
    let glb = get_bytes(
        &client,
        &server.url,
        &format!("/api/jobs/{id}/files/model.glb"),
    );
    assert_eq!(&glb[..4], b"glTF");
}

#[test]
fn a_cancelled_job_stops_at_its_next_step_and_resumes_from_its_stage_folders() {
    let (_dir, server, client, id) = server_with_a_job(r#"{"preset": "fast"}"#);
    follow_events(&client, &server.url, &id, |e| {
        e["event"] == "step" && e["stage"] == "fine" && e["step"].as_u64() >= Some(5)
    });
    let mut response = client
        .delete(format!("{}/api/jobs/{id}", server.url))
        .call()
        .unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.body_mut().read_json().unwrap();
    assert_eq!(body["cancelling"], true);
    let events = follow_events(&client, &server.url, &id, |_| false);
    assert_eq!(events.last().unwrap()["state"], "cancelled", "{events:?}");
    assert_eq!(finished_stages(&events), ["prepare", "orbit", "coarse"]);
    let status = get_json(&client, &server.url, &format!("/api/jobs/{id}"));
    assert_eq!(status["state"], "cancelled");
    assert!(
        !status["files"]
            .as_array()
            .unwrap()
            .contains(&json!("model.glb"))
    );

    let response = client
        .post(format!("{}/api/jobs/{id}/resume", server.url))
        .send_empty()
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let events = follow_events(&client, &server.url, &id, |_| false);
    assert_went_on_from_the_fine_stage(&events);
}

#[test]
fn twenty_jobs_posted_at_once_all_finish_in_order_with_bounded_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("work"), &["--jobs", "1"]);
    let client = client();
    // Quick jobs (no fine stage, a coarse hull): the queue is what is tested.
    let options = r#"{"preset": "fast", "fine_steps": 0, "hull_resolution": 48}"#;
    let mut ids: Vec<String> = std::thread::scope(|scope| {
        let posts: Vec<_> = (0..20)
            .map(|_| scope.spawn(|| post_job(&client, &server.url, &example_photo(), options)))
            .collect();
        posts.into_iter().map(|p| p.join().unwrap()).collect()
    });
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 20);
    let started = Instant::now();
    let mut most_running = 0;
    let jobs = loop {
        let jobs = get_json(&client, &server.url, "/api/jobs");
        let jobs = jobs.as_array().unwrap().clone();
        let running = jobs.iter().filter(|j| j["state"] == "running").count();
        most_running = most_running.max(running);
        if jobs.iter().all(|j| j["finished"].is_number()) {
            break jobs;
        }
        assert!(started.elapsed() < Duration::from_secs(300), "{jobs:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(jobs.len(), 20);
    assert!(jobs.iter().all(|j| j["state"] == "done"), "{jobs:?}");
    assert!(
        most_running <= 1,
        "{most_running} jobs ran at once with --jobs 1"
    );
    // Finished in the order they were posted (ids are given in that order).
    let listed: Vec<&str> = jobs.iter().map(|j| j["id"].as_str().unwrap()).collect();
    assert_eq!(listed, ids);
    let finished: Vec<f64> = jobs
        .iter()
        .map(|j| j["finished"].as_f64().unwrap())
        .collect();
    assert!(finished.windows(2).all(|w| w[0] <= w[1]), "{finished:?}");
    if let Some(mb) = server.peak_rss_mb() {
        eprintln!(
            "20 jobs in {:.1} s, peak RSS of the server {mb:.0} MB",
            started.elapsed().as_secs_f64()
        );
        assert!(mb < 1500.0, "peak RSS {mb:.0} MB");
    }
}

/// The page in a real browser: headless Chromium (Debian's `chromium` and `chromium-driver`,
/// driven through WebDriver by `python3-selenium`) uploads a photo and waits for the job; the
/// stage list must show every stage done, the orbit's frames must appear, a photo with no
/// object must end in a job the page shows failed with its error, and the 3D viewer must show
/// the mesh (a screenshot of it far from one flat colour; kept as
/// `target/tmp/serve-page-viewer.png`). Skipped, with a line, without those packages; CI sets
/// ORBITMESH_REQUIRE_BROWSER_TESTS=1, so there a skip fails.
#[test]
fn the_page_in_headless_chromium_makes_a_mesh_and_shows_it() {
    // Debian's Python, which Debian's python3-selenium is installed for (a `python3` earlier on
    // the PATH, such as pyenv's, may not have it).
    let python = "/usr/bin/python3";
    let selenium = std::process::Command::new(python)
        .args(["-c", "import selenium"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !(selenium
        && Path::new("/usr/bin/chromium").exists()
        && Path::new("/usr/bin/chromedriver").exists())
    {
        let line = "skipped the browser test: install Debian's chromium, chromium-driver and \
                    python3-selenium (.ci/run does)";
        if std::env::var("ORBITMESH_REQUIRE_BROWSER_TESTS").is_ok_and(|v| v == "1") {
            panic!("{line}, and ORBITMESH_REQUIRE_BROWSER_TESTS=1 forbids skipping");
        }
        eprintln!("{line}");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("work"), &[]);
    let screenshot = Path::new(env!("CARGO_TARGET_TMPDIR")).join("serve-page-viewer.png");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/serve_page.py");
    // A plain white photo: no object in it, so its job fails in the prepare stage.
    let blank = dir.path().join("blank.png");
    image::RgbImage::from_pixel(64, 64, image::Rgb([255, 255, 255]))
        .save(&blank)
        .unwrap();
    let run = std::process::Command::new(python)
        .arg(script)
        .arg(&server.url)
        .arg(example_photo())
        .arg(&screenshot)
        .arg(&blank)
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&run.stdout);
    assert!(
        run.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let report: Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(report["state"], "done", "{report}");
    for stage in STAGES {
        assert_eq!(report["stages"][stage], "done", "{report}");
    }
    assert_eq!(report["frames"], 21, "{report}");
    assert!(report["prepared"].as_u64() > Some(0), "{report}");
    assert_eq!(report["downloads"].as_array().unwrap().len(), 2, "{report}");
    assert_eq!(report["jobs_listed"], 1, "{report}");
    // A server without SV3D's weights offers no SV3D.
    assert_eq!(report["sv3d_choice_shown"], false, "{report}");
    // A failed job says so, with why.
    assert_eq!(report["failed_state"], "failed", "{report}");
    let error = report["failed_error"].as_str().unwrap();
    assert!(
        error.starts_with("Failed: ") && error.contains("mask is empty"),
        "{report}"
    );
    // The viewer is one flat colour until the mesh is drawn in it.
    let shot = image::open(&screenshot).unwrap().to_luma8();
    let n = shot.pixels().len() as f64;
    let mean = shot.pixels().map(|p| p.0[0] as f64).sum::<f64>() / n;
    let variance = shot
        .pixels()
        .map(|p| (p.0[0] as f64 - mean).powi(2))
        .sum::<f64>()
        / n;
    eprintln!(
        "viewer screenshot {}: {}×{}, luminance variance {variance:.1}",
        screenshot.display(),
        shot.width(),
        shot.height()
    );
    assert!(
        variance > 50.0,
        "the viewer looks blank (variance {variance:.1})"
    );
}

#[test]
fn serve_refuses_an_address_other_machines_reach_without_a_token() {
    let dir = tempfile::tempdir().unwrap();
    let work = dir.path().join("work");
    let run = crate::common::orbitmesh(&[
        "serve",
        "--addr",
        "0.0.0.0:0",
        "--work",
        work.to_str().unwrap(),
    ]);
    crate::common::assert_input_error(&run, "--token");
    assert!(!work.exists());
}

#[test]
fn ctrl_c_stops_the_server_at_once_with_a_job_running_and_its_stream_open() {
    let (_dir, mut server, client, id) = server_with_a_job(r#"{"preset": "fast"}"#);
    // A page's stream stays open while its job runs.
    let stream = client
        .get(format!("{}/api/jobs/{id}/events", server.url))
        .call()
        .unwrap();
    let started = Instant::now();
    while get_json(&client, &server.url, &format!("/api/jobs/{id}"))["progress"]["stage"] != "fine"
    {
        assert!(started.elapsed() < Duration::from_secs(120));
        std::thread::sleep(Duration::from_millis(100));
    }
    let interrupted = std::process::Command::new("kill")
        .args(["-INT", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(interrupted.success());
    let asked = Instant::now();
    let status = loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            break status;
        }
        assert!(
            asked.elapsed() < Duration::from_secs(10),
            "still running 10 s after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(status.code(), Some(130));
    drop(stream);
}
