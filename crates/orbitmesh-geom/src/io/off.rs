use std::path::Path;

use crate::error::{GeomError, Result};
use crate::mesh::TriMesh;

/// Reads (C/N/ST)OFF text files: positions and faces; per-vertex extras and face colours are
/// skipped. `bytes` are already ungzipped.
pub(super) fn read_off(path: &Path, bytes: &[u8]) -> Result<TriMesh> {
    let err = |m: String| GeomError::parse(path, "OFF", m);
    let text = std::str::from_utf8(bytes).map_err(|_| err("not UTF-8 text".into()))?;
    let mut lines = text
        .lines()
        .map(|l| l.split('#').next().unwrap_or("").trim())
        .filter(|l| !l.is_empty());
    let first = lines
        .next()
        .ok_or_else(|| err("the file is empty".into()))?;
    // The keyword may share its line with the counts ("OFF 8 6 0").
    let counts_line = match first.split_whitespace().next() {
        Some(k) if k.ends_with("OFF") => {
            let rest = first[k.len()..].trim();
            if rest.is_empty() {
                lines.next().ok_or_else(|| err("no counts line".into()))?
            } else {
                rest
            }
        }
        _ => first,
    };
    let counts: Vec<usize> = counts_line
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .map_err(|_| err(format!("bad counts line {counts_line:?}")))?;
    let (nv, nf) = match counts[..] {
        [nv, nf, ..] => (nv, nf),
        _ => return Err(err(format!("bad counts line {counts_line:?}"))),
    };
    let mut mesh = TriMesh::default();
    for i in 0..nv {
        let line = lines
            .next()
            .ok_or_else(|| err(format!("truncated: {nv} vertices declared, {i} present")))?;
        let c: Vec<f32> = line
            .split_whitespace()
            .take(3)
            .map(str::parse)
            .collect::<Result<_, _>>()
            .map_err(|_| err(format!("vertex {i}: bad coordinates {line:?}")))?;
        match c[..] {
            [x, y, z] => mesh.positions.push([x, y, z]),
            _ => return Err(err(format!("vertex {i}: fewer than three coordinates"))),
        }
    }
    for i in 0..nf {
        let line = lines
            .next()
            .ok_or_else(|| err(format!("truncated: {nf} faces declared, {i} present")))?;
        let mut fields = line.split_whitespace().map(str::parse::<i64>);
        let bad = || err(format!("face {i}: bad indices {line:?}"));
        let n = fields.next().and_then(|r| r.ok()).ok_or_else(bad)?;
        let idx: Vec<i64> = fields
            .take(n.max(0) as usize)
            .collect::<Result<_, _>>()
            .map_err(|_| bad())?;
        if idx.len() != n as usize || n < 3 {
            return Err(bad());
        }
        let idx: Vec<u32> = idx
            .into_iter()
            .map(|v| u32::try_from(v).map_err(|_| bad()))
            .collect::<Result<_>>()?;
        for k in 1..idx.len() - 1 {
            mesh.faces.push([idx[0], idx[k], idx[k + 1]]);
        }
    }
    Ok(mesh)
}
