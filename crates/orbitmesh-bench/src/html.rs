//! report.html: the report for people. The table and the chart, and per object its input, the
//! sheet of the orbit, and the scan beside our mesh in two 3D viewers that turn together.
//!
//! One file that opens from disk: the viewer (the `<model-viewer>` `orbitmesh serve` vendors) is
//! inlined and each object's two GLBs are data URLs, because browsers refuse module scripts and
//! `fetch` from `file://` pages. The images stay files beside it, which `<img>` may load.

use std::path::Path;

use base64::Engine;
use orbitmesh_geom::TriMesh;
use orbitmesh_geom::io::write_glb;
use orbitmesh_pipeline::save;

use crate::Result;
use crate::report::Row;

/// The vendored viewer (crates/orbitmesh-serve/assets/vendor/README.md), the same file the
/// server's page uses.
const VIEWER: &str = include_str!("../../orbitmesh-serve/assets/vendor/model-viewer.min.js");

/// The faces each GLB of the report keeps: enough to judge a shape, small enough that a report
/// of many objects still opens.
const REPORT_FACES: usize = 20_000;

/// The two meshes of an object's viewers, in its folder.
pub const SCAN_GLB: &str = "scan.glb";
pub const MESH_GLB: &str = "mesh.glb";

/// Writes the scan and our mesh (both in the scan's normalised frame) as the GLBs of the report.
pub fn write_object_glbs(dir: &Path, scan: &TriMesh, mesh: &TriMesh) -> Result<()> {
    write_glb(&dir.join(SCAN_GLB), &scan.simplified(REPORT_FACES), 1.0)?;
    write_glb(&dir.join(MESH_GLB), &mesh.simplified(REPORT_FACES), 1.0)?;
    Ok(())
}

pub fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn data_url(path: &Path) -> Option<String> {
    let bytes = std::fs::read(path).ok()?;
    Some(format!(
        "data:model/gltf-binary;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    ))
}

/// Writes `out/report.html` for `rows`, whose objects' folders are `out/<name>`; `table` is the
/// report's table in HTML.
pub fn write_html(out: &Path, rows: &[Row], mode: &str, table: &str) -> Result<()> {
    let mut objects = String::new();
    for row in rows {
        let name = escape(&row.name);
        let dir = out.join(&row.name);
        let input = ["input/000.png", "oracle/000.png"]
            .into_iter()
            .find(|p| dir.join(p).is_file());
        objects += &format!("<section class=\"object\"><h2>{name}</h2>\n");
        if let Err(e) = &row.values {
            objects += &format!("<p class=\"error\">failed: {}</p>\n", escape(e));
        }
        objects += "<div class=\"images\">";
        if let Some(input) = input {
            objects += &format!(
                "<figure><img src=\"{name}/{input}\" alt=\"input\"><figcaption>input</figcaption></figure>"
            );
        }
        if dir.join("sheet.png").is_file() {
            objects += &format!(
                "<figure><img src=\"{name}/sheet.png\" alt=\"sheet\" class=\"sheet\"><figcaption>\
                 the orbit the 3D stages saw, then the scan and our mesh from the same cameras</figcaption></figure>"
            );
        }
        objects += "</div>\n";
        match (data_url(&dir.join(SCAN_GLB)), data_url(&dir.join(MESH_GLB))) {
            (Some(scan), Some(mesh)) => {
                objects += &format!(
                    "<div class=\"pair\"><figure><model-viewer src=\"{scan}\" camera-controls \
                     alt=\"the scan\"></model-viewer><figcaption>scan</figcaption></figure>\
                     <figure><model-viewer src=\"{mesh}\" camera-controls alt=\"our mesh\">\
                     </model-viewer><figcaption>orbitmesh</figcaption></figure></div>\n"
                )
            }
            _ => {
                objects +=
                    "<p>No meshes to view (an object benched before the report had them).</p>\n"
            }
        }
        objects += "</section>\n";
    }
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>orbitmesh bench</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 1100px; margin: 0 auto; padding: 1rem; color: #1d232a; }}
table {{ border-collapse: collapse; }} td, th {{ border: 1px solid #ccd; padding: 0.3rem 0.6rem; text-align: right; }}
td:first-child, th:first-child {{ text-align: left; }}
.object {{ border-top: 1px solid #dde; margin-top: 1.5rem; }}
.images {{ display: flex; gap: 1rem; align-items: flex-start; }} .images img {{ max-width: 200px; }} .images img.sheet {{ max-width: 820px; }}
.pair {{ display: grid; grid-template-columns: 1fr 1fr; gap: 1rem; }}
model-viewer {{ width: 100%; height: 360px; background: #eef0f3; border-radius: 8px; }}
figure {{ margin: 0; }} figcaption {{ font-size: 0.85rem; color: #555; text-align: center; }}
.error {{ color: #b91c1c; }}
</style>
<script type="module">{VIEWER}</script>
</head><body>
<h1>orbitmesh bench</h1>
<p>Orbit: {mode}. Metrics: the gso protocol of DESIGN.md. Each object's scan and our mesh turn together: move one, the other follows.</p>
{table}
<p><img src="chamfer.png" alt="per-object Chamfer" style="max-width: 100%"></p>
{objects}
<script type="module">
// Each pair of viewers keeps one camera: what a user does to one is done to the other.
for (const pair of document.querySelectorAll(".pair")) {{
  const [a, b] = pair.querySelectorAll("model-viewer");
  const follow = (from, to) => from.addEventListener("camera-change", (e) => {{
    if (e.detail.source !== "user-interaction") return;
    to.cameraOrbit = from.getCameraOrbit().toString();
    to.cameraTarget = from.getCameraTarget().toString();
    to.fieldOfView = `${{from.getFieldOfView()}}deg`;
    to.jumpCameraToGoal();
  }});
  follow(a, b);
  follow(b, a);
}}
</script>
</body></html>
"#,
        mode = escape(mode),
    );
    save(&out.join("report.html"), html.as_bytes())?;
    Ok(())
}
