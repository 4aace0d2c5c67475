//! Reading PyTorch-trained weights (SV3D's checkpoints, the IS-Net segmenter) from safetensors, by
//! the checkpoint's own tensor names.
//!
//! SV3D's official files are 9.4 GB; they are memory-mapped and each tensor is
//! converted to f32 only when a module asks for it. Modules ask through [`Params`], a view of the
//! file under a name prefix (`model.diffusion_model.input_blocks.1.0`), giving the shape they expect.
//! Problems (a missing tensor, a wrong shape, an unsupported dtype) are collected rather than
//! raised at the first one, so one run names every problem; [`Weights::finish`] reports them, and
//! the tensors under the loaded prefixes that no module asked for.

use std::cell::RefCell;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::path::{Path, PathBuf};

use burn::tensor::{Device, FloatDType, Tensor, TensorData};
use memmap2::Mmap;
use safetensors::tensor::{Dtype, Metadata};

/// What can be wrong with a weights file.
#[derive(Debug, thiserror::Error)]
pub enum WeightsError {
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: not a readable safetensors file: {reason}", path.display())]
    Format { path: PathBuf, reason: String },
    /// Tensors missing, mis-shaped or unexpected: every one, not only the first.
    #[error("{}", tensors_message(path, problems))]
    Tensors {
        path: PathBuf,
        problems: Vec<String>,
    },
}

/// At most this many problems are listed (a file of another model would list hundreds).
const LISTED_PROBLEMS: usize = 12;

/// One problem on one line; several listed one per line under the file's name.
fn tensors_message(path: &Path, problems: &[String]) -> String {
    match problems {
        [one] => format!("{}: {one}", path.display()),
        _ => {
            let mut listed = problems[..problems.len().min(LISTED_PROBLEMS)].join("\n  ");
            if problems.len() > LISTED_PROBLEMS {
                listed += &format!("\n  … and {} more", problems.len() - LISTED_PROBLEMS);
            }
            format!(
                "{}: {} problems with the weights:\n  {listed}",
                path.display(),
                problems.len(),
            )
        }
    }
}

struct Stored {
    dtype: Dtype,
    shape: Vec<usize>,
    start: usize,
    end: usize,
}

enum Source {
    File {
        path: PathBuf,
        bytes: Mmap,
        tensors: HashMap<String, Stored>,
    },
    /// No file: modules get placeholder tensors and the names and shapes they asked for are
    /// recorded, so a full-size model's parameter list can be checked without 9 GB of memory.
    ShapesOnly,
}

/// A weights file (or the shapes-only stand-in) and what has been read from it.
pub struct Weights {
    source: Source,
    device: Device,
    /// The float type tensors are handed to modules in (f32 unless [`Weights::with_dtype`]).
    dtype: FloatDType,
    requested: RefCell<Vec<(String, Vec<usize>)>>,
    problems: RefCell<Vec<String>>,
}

impl Weights {
    /// Memory-maps a safetensors file and reads its header.
    pub fn open(path: &Path, device: &Device) -> Result<Self, WeightsError> {
        let io = |source| WeightsError::Io {
            path: path.to_path_buf(),
            source,
        };
        let file = std::fs::File::open(path).map_err(io)?;
        // SAFETY: the mapping is read-only; a file changed under a running process would give
        // wrong numbers, not memory unsafety beyond what reading any file concurrently risks.
        let bytes = unsafe { Mmap::map(&file) }.map_err(io)?;
        let format = |reason: String| WeightsError::Format {
            path: path.to_path_buf(),
            reason,
        };
        let (header_len, metadata): (usize, Metadata) =
            safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| format(e.to_string()))?;
        let data_start = 8 + header_len;
        let mut tensors = HashMap::new();
        for (name, info) in metadata.tensors() {
            let (start, end) = info.data_offsets;
            if data_start + end > bytes.len() {
                return Err(format(format!(
                    "tensor {name} runs past the end of the file"
                )));
            }
            tensors.insert(
                name,
                Stored {
                    dtype: info.dtype,
                    shape: info.shape.clone(),
                    start: data_start + start,
                    end: data_start + end,
                },
            );
        }
        Ok(Self {
            source: Source::File {
                path: path.to_path_buf(),
                bytes,
                tensors,
            },
            device: device.clone(),
            dtype: FloatDType::F32,
            requested: RefCell::default(),
            problems: RefCell::default(),
        })
    }

    /// The same file, its tensors handed to modules in `dtype` (f16 halves a model's memory on
    /// a GPU); they are read as f32 and converted on the device.
    pub fn with_dtype(self, dtype: FloatDType) -> Self {
        Self { dtype, ..self }
    }

    /// No file: records the names and shapes modules ask for (see [`Weights::requested`]).
    pub fn shapes_only(device: &Device) -> Self {
        Self {
            source: Source::ShapesOnly,
            device: device.clone(),
            dtype: FloatDType::F32,
            requested: RefCell::default(),
            problems: RefCell::default(),
        }
    }

    /// The whole file, to be narrowed with [`Params::at`].
    pub fn root(&self) -> Params<'_> {
        Params {
            weights: self,
            prefix: String::new(),
        }
    }

    /// Every tensor asked for so far, by full name, with the shape asked for.
    pub fn requested(&self) -> Vec<(String, Vec<usize>)> {
        self.requested.borrow().clone()
    }

    /// The file's tensor names (none for the shapes-only stand-in).
    pub fn names(&self) -> Vec<String> {
        match &self.source {
            Source::File { tensors, .. } => tensors.keys().cloned().collect(),
            Source::ShapesOnly => Vec::new(),
        }
    }

    /// A tensor's shape as stored, if the file has it.
    pub fn shape(&self, name: &str) -> Option<Vec<usize>> {
        match &self.source {
            Source::File { tensors, .. } => tensors.get(name).map(|t| t.shape.clone()),
            Source::ShapesOnly => None,
        }
    }

    /// One tensor converted to f32, with its shape as stored.
    pub fn read(&self, name: &str) -> Result<(Vec<f32>, Vec<usize>), String> {
        let Source::File { bytes, tensors, .. } = &self.source else {
            return Err("no weights file".into());
        };
        let stored = tensors
            .get(name)
            .ok_or_else(|| format!("{name}: missing"))?;
        let raw = &bytes[stored.start..stored.end];
        let values: Vec<f32> = match stored.dtype {
            Dtype::F32 => raw
                .chunks_exact(4)
                .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
                .collect(),
            Dtype::F16 => raw
                .chunks_exact(2)
                .map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            Dtype::BF16 => raw
                .chunks_exact(2)
                .map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32())
                .collect(),
            other => {
                return Err(format!("{name}: dtype {other:?} is not a float type"));
            }
        };
        // The file's pages are read once: dropped from memory now, they do not count twice
        // (mapped and converted) while a 9 GB model loads.
        #[cfg(unix)]
        // SAFETY: the mapping is private and read-only; MADV_DONTNEED on it only drops pages
        // that a later read faults back in from the file, unchanged.
        let _ = unsafe {
            bytes.unchecked_advise_range(
                memmap2::UncheckedAdvice::DontNeed,
                stored.start,
                stored.end - stored.start,
            )
        };
        let count: usize = stored.shape.iter().product();
        if values.len() != count {
            return Err(format!(
                "{name}: {} values stored for shape {:?}",
                values.len(),
                stored.shape
            ));
        }
        Ok((values, stored.shape.clone()))
    }

    /// Ends loading: an error listing every problem met, and every tensor whose name starts with
    /// one of `scopes` that no module asked for (tensors outside them, such as the CLIP text
    /// tower's leftovers in the official files, are not the model's business).
    pub fn finish(&self, scopes: &[&str]) -> Result<(), WeightsError> {
        let mut problems = self.problems.borrow().clone();
        if let Source::File { tensors, .. } = &self.source {
            let asked: BTreeSet<String> = self
                .requested
                .borrow()
                .iter()
                .map(|(n, _)| n.clone())
                .collect();
            let mut unexpected: Vec<&String> = tensors
                .keys()
                .filter(|k| scopes.iter().any(|s| k.starts_with(s)) && !asked.contains(*k))
                .collect();
            unexpected.sort();
            problems.extend(unexpected.into_iter().map(|k| format!("{k}: unexpected")));
        }
        if problems.is_empty() {
            return Ok(());
        }
        let path = match &self.source {
            Source::File { path, .. } => path.clone(),
            Source::ShapesOnly => PathBuf::from("(no file)"),
        };
        Err(WeightsError::Tensors { path, problems })
    }

    fn tensor<const D: usize>(&self, name: String, shape: [usize; D]) -> Tensor<D> {
        self.requested
            .borrow_mut()
            .push((name.clone(), shape.to_vec()));
        let placeholder = |dims: [usize; D]| Tensor::<D>::zeros(dims, &self.device);
        if let Source::ShapesOnly = self.source {
            return placeholder([1; D]);
        }
        let load = |values| {
            Tensor::<D>::from_data(TensorData::new(values, shape), &self.device).cast(self.dtype)
        };
        match self.read(&name) {
            Ok((values, stored)) if stored == shape => load(values),
            // A 0-d scalar (e.g. a mix factor) stored where a 1-element tensor is asked for.
            Ok((values, stored)) if stored.is_empty() && shape.iter().product::<usize>() == 1 => {
                load(values)
            }
            Ok((_, stored)) => {
                self.problems
                    .borrow_mut()
                    .push(format!("{name}: shape {stored:?}, expected {shape:?}"));
                placeholder(shape)
            }
            Err(problem) => {
                self.problems.borrow_mut().push(problem);
                placeholder(shape)
            }
        }
    }
}

/// The part of a weights file under one name prefix.
#[derive(Clone)]
pub struct Params<'a> {
    weights: &'a Weights,
    prefix: String,
}

impl<'a> Params<'a> {
    /// The part under `prefix.part`.
    pub fn at(&self, part: impl Display) -> Params<'a> {
        let prefix = if self.prefix.is_empty() {
            part.to_string()
        } else {
            format!("{}.{part}", self.prefix)
        };
        Params {
            weights: self.weights,
            prefix,
        }
    }

    /// The tensor `prefix.name`, which must have `shape`. A missing or mis-shaped tensor is
    /// recorded for [`Weights::finish`] and a zero tensor of `shape` stands in for it.
    pub fn tensor<const D: usize>(&self, name: &str, shape: [usize; D]) -> Tensor<D> {
        self.weights.tensor(self.at(name).prefix, shape)
    }

    /// The device the tensors are loaded on.
    pub fn device(&self) -> &Device {
        &self.weights.device
    }

    /// The float type the tensors are loaded in.
    pub fn dtype(&self) -> FloatDType {
        self.weights.dtype
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;

    fn write(path: &Path, tensors: &[(&str, Vec<usize>)]) {
        let data: Vec<(String, Vec<u8>, Vec<usize>)> = tensors
            .iter()
            .map(|(name, shape)| {
                let n: usize = shape.iter().product();
                let bytes = (0..n).flat_map(|i| (i as f32).to_le_bytes()).collect();
                (name.to_string(), bytes, shape.clone())
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> = data
            .iter()
            .map(|(name, bytes, shape)| {
                let view =
                    safetensors::tensor::TensorView::new(Dtype::F32, shape.clone(), bytes).unwrap();
                (name.clone(), view)
            })
            .collect();
        safetensors::serialize_to_file(views, None, path).unwrap();
    }

    #[test]
    fn every_problem_is_named_and_good_tensors_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        write(
            &path,
            &[
                ("m.a.weight", vec![2, 3]),
                ("m.b.weight", vec![4]),
                ("m.extra", vec![1]),
                ("other.x", vec![1]),
            ],
        );
        let device = Device::flex();
        let weights = Weights::open(&path, &device).unwrap();
        let m = weights.root().at("m");
        let a = m.at("a").tensor("weight", [2, 3]);
        let values: Vec<f32> = a.into_data().try_to_vec().unwrap();
        assert_eq!(values, [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]);
        m.at("b").tensor("weight", [5]);
        m.at("c").tensor("weight", [1]);
        let Err(WeightsError::Tensors { problems, .. }) = weights.finish(&["m."]) else {
            panic!("problems expected");
        };
        assert_eq!(
            problems,
            [
                "m.b.weight: shape [4], expected [5]",
                "m.c.weight: missing",
                "m.extra: unexpected"
            ]
        );
    }

    #[test]
    fn truncated_or_foreign_files_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("w.safetensors");
        write(&path, &[("t", vec![64])]);
        let bytes = std::fs::read(&path).unwrap();
        let device = Device::flex();
        for (what, cut) in [("header", 20), ("data", bytes.len() - 8)] {
            std::fs::write(&path, &bytes[..cut]).unwrap();
            let err = Weights::open(&path, &device)
                .err()
                .unwrap_or_else(|| panic!("{what}: opened"));
            assert!(matches!(err, WeightsError::Format { .. }), "{what}: {err}");
            assert!(err.to_string().contains("w.safetensors"), "{err}");
        }
        std::fs::write(&path, b"not safetensors at all").unwrap();
        assert!(matches!(
            Weights::open(&path, &device),
            Err(WeightsError::Format { .. })
        ));
        let missing = Weights::open(&dir.path().join("none.safetensors"), &device)
            .err()
            .unwrap();
        assert!(matches!(missing, WeightsError::Io { .. }), "{missing}");
    }
}
