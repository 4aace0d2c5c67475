// The page of `orbitmesh serve`: posts a photo to the API, follows the job's server-sent events
// (the pipeline's own events, one JSON object each) and shows the mesh in the vendored viewer.

const $ = (id) => document.getElementById(id);
const FINAL = ["done", "failed", "cancelled"];
let chosen = null;
let current = null;

async function api(path, options) {
  const response = await fetch(path, options);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
  return body;
}

const fileUrl = (id, name) => `api/jobs/${id}/files/${name}`;

async function init() {
  try {
    const config = await api("api/config");
    $("generator-label").hidden = !config.sv3d;
    const isnet = $("segmenter").querySelector('option[value="isnet"]');
    if (!config.isnet) {
      isnet.disabled = true;
      isnet.textContent += " (not installed on the server)";
    }
    $("server-note").textContent = config.sv3d
      ? "This server has SV3D's weights."
      : "This server has no SV3D weights: orbits come from the weight-free inflate baseline, which guesses the back of the object from its silhouette.";
  } catch (e) {
    $("server-note").textContent = `The server did not answer: ${e.message}`;
  }
  const drop = $("drop");
  $("image").addEventListener("change", () => choose($("image").files[0]));
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) choose(e.dataTransfer.files[0]);
  });
  $("job-form").addEventListener("submit", submit);
  $("resume").addEventListener("click", async () => {
    if (!current) return;
    const id = current.id;
    try { await api(`api/jobs/${id}/resume`, { method: "POST" }); open(id); } catch (e) { $("job-error").textContent = e.message; }
  });
  $("cancel").addEventListener("click", async () => {
    if (!current) return;
    try { await api(`api/jobs/${current.id}`, { method: "DELETE" }); } catch (e) { $("job-error").textContent = e.message; }
  });
  window.addEventListener("hashchange", openFromHash);
  await refreshJobs();
  openFromHash();
}

function choose(file) {
  if (!file) return;
  chosen = file;
  $("preview").src = URL.createObjectURL(file);
  $("preview").hidden = false;
  $("drop-text").textContent = `${file.name} (${(file.size / 1e6).toFixed(1)} MB)`;
  $("submit").disabled = false;
}

async function submit(event) {
  event.preventDefault();
  $("form-error").textContent = "";
  if (!chosen) return;
  const options = { preset: $("preset").value, segmenter: $("segmenter").value, format: $("format").value };
  if (!$("generator-label").hidden) options.generator = $("generator").value;
  const form = new FormData();
  form.append("image", chosen, chosen.name);
  form.append("options", JSON.stringify(options));
  $("submit").disabled = true;
  try {
    const { id } = await api("api/jobs", { method: "POST", body: form });
    location.hash = `job=${id}`;
    await refreshJobs();
  } catch (e) {
    $("form-error").textContent = e.message;
  } finally {
    $("submit").disabled = false;
  }
}

function openFromHash() {
  const match = location.hash.match(/job=(\w+)/);
  if (match && (!current || current.id !== match[1])) open(match[1]);
}

function resetView(id) {
  $("job").hidden = false;
  $("job-title").textContent = `Job ${id}`;
  $("job-error").textContent = "";
  $("warnings").replaceChildren();
  $("frames").replaceChildren();
  $("downloads").replaceChildren();
  $("prepared").hidden = true;
  const viewer = $("viewer");
  viewer.hidden = true;
  viewer.removeAttribute("src");
  for (const li of $("stages").children) {
    li.dataset.state = "waiting";
    li.querySelector(".detail").textContent = "";
  }
  setState("queued");
}

function open(id) {
  if (current) current.source.close();
  resetView(id);
  const source = new EventSource(`api/jobs/${id}/events`);
  current = { id, source };
  let opened = false;
  // A stream that reconnects starts again from the job's first event.
  source.onopen = () => { if (opened) resetView(id); opened = true; };
  source.onmessage = (message) => handle(id, JSON.parse(message.data));
  // The server's last event: the job is over and every event was sent.
  source.addEventListener("end", () => { source.close(); refreshJobs(); });
  for (const a of $("jobs").querySelectorAll("a")) a.classList.toggle("current", a.dataset.id === id);
}

function stageItem(stage) {
  return $("stages").querySelector(`li[data-stage="${stage}"]`);
}

function setState(state, error) {
  $("job-state").textContent = state;
  document.body.dataset.jobState = state;
  $("cancel").hidden = FINAL.includes(state);
  $("resume").hidden = !["failed", "cancelled"].includes(state);
  if (state === "failed") $("job-error").textContent = `Failed: ${error}`;
  if (state === "cancelled") $("job-error").textContent = "Cancelled. Its work folder is kept: resumed, it skips the stages it finished.";
}

function handle(id, event) {
  if (!current || current.id !== id) return;
  const li = event.stage ? stageItem(event.stage) : null;
  const detail = li && li.querySelector(".detail");
  switch (event.event) {
    case "stage_started":
      li.dataset.state = "running";
      break;
    case "stage_skipped":
      li.dataset.state = "skipped";
      if (event.stage === "prepare") showPrepared(id);
      break;
    case "stage_finished":
      li.dataset.state = "done";
      detail.textContent = `done in ${event.seconds.toFixed(1)} s`;
      if (event.stage === "prepare") showPrepared(id);
      break;
    case "step": {
      const parts = [`${event.step}/${event.total}`];
      if (event.loss != null) parts.push(`loss ${event.loss.toFixed(5)}`);
      if (event.psnr != null) parts.push(`PSNR ${event.psnr.toFixed(1)} dB`);
      if (event.detail) parts.push(event.detail);
      detail.textContent = parts.join(", ");
      break;
    }
    case "resumed":
      detail.textContent = `resumed at step ${event.step}`;
      break;
    case "frame": {
      const img = document.createElement("img");
      img.src = fileUrl(id, event.path);
      img.alt = `frame ${event.index}`;
      img.dataset.index = event.index;
      const old = $("frames").querySelector(`img[data-index="${event.index}"]`);
      if (old) old.replaceWith(img); else $("frames").append(img);
      break;
    }
    case "warning": {
      const item = document.createElement("li");
      item.textContent = event.message;
      $("warnings").append(item);
      break;
    }
    case "job":
      setState(event.state, event.error);
      if (event.state === "done") showResult(id);
      if (event.state === "queued") $("job-error").textContent = "";
      break;
  }
}

function showPrepared(id) {
  $("prepared-img").src = fileUrl(id, "prepared.png");
  $("mask-img").src = fileUrl(id, "mask.png");
  $("prepared").hidden = false;
}

async function showResult(id) {
  const viewer = $("viewer");
  viewer.hidden = false;
  viewer.src = fileUrl(id, "model.glb");
  const links = [["model.glb", "GLB"], ["model.zip", "OBJ (zip)"]].map(([name, label]) => {
    const a = document.createElement("a");
    a.href = fileUrl(id, name);
    a.download = `orbitmesh-${id}-${name}`;
    a.textContent = `Download ${label}`;
    return a;
  });
  $("downloads").replaceChildren(...links);
}

async function refreshJobs() {
  let jobs;
  try { jobs = await api("api/jobs"); } catch { return; }
  const items = jobs.reverse().map((job) => {
    const a = document.createElement("a");
    a.href = `#job=${job.id}`;
    a.dataset.id = job.id;
    a.classList.toggle("current", current && current.id === job.id);
    const when = new Date(job.created * 1000).toLocaleString();
    for (const [cls, text] of [["id", job.id], ["", job.file_name || "(no name)"], ["", job.options.preset], ["job-state", job.state], ["", when]]) {
      const span = document.createElement("span");
      if (cls) span.className = cls;
      if (cls === "job-state") span.dataset.state = job.state;
      span.textContent = text;
      a.append(span);
    }
    const li = document.createElement("li");
    li.append(a);
    return li;
  });
  $("jobs").replaceChildren(...items);
  if (!jobs.length) $("jobs").textContent = "No jobs yet.";
}

setInterval(refreshJobs, 5000);
init();
