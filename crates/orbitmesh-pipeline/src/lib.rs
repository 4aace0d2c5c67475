//! The orbitmesh pipeline as a library.
//!
//! For now it owns the work folder: one folder per stage, written under a temporary name and
//! renamed into place with a `stage.json` record ([`StageRecord`]) whose fingerprint is the
//! stage's serialised settings and its inputs' content hashes ([`fingerprint`]), so a rerun skips
//! every stage whose settings and inputs are unchanged ([`StageRun`], [`is_current`]); the lock
//! that keeps two runs off one work folder ([`lock_work_folder`]); and writing outputs whole or
//! not at all ([`save`], [`StagedFolder`]).
//!
//! It also holds what a run reports as it goes: one [`Event`] type (stage started, skipped,
//! finished; a training step; a frame written; a warning), emitted through one callback
//! ([`OnEvent`]) whose answer ([`Flow`]) can stop the run at the next step.
//!
//! The stages themselves are here ([`stages`]: prepare, orbit, coarse, fine), with the
//! [`Plan`] of a run (every stage's settings, made from a [`Preset`] and [`Overrides`]) and its
//! one entry point, [`run`], which the command line's `mesh` and `bench`, and any other front
//! end, call.
//!
//! The library neither prints nor parses command lines; its errors are [`PipelineError`], each
//! naming the file it is about.

mod error;
mod event;
mod output;
mod plan;
mod run;
pub mod stages;
mod work;

pub use error::{PipelineError, Result, one_line};
pub use event::{Event, Flow, OnEvent, Stage};
pub use output::{StagedFolder, encode_png, make_folder, save, save_json};
pub use plan::{
    CoarseChoice, ExportConfig, FINE_TEXTURE, FineConfig, GeneratorConfig, MeshFrame, OrbitConfig,
    OrbitSource, Overrides, Photo, Plan, Precision, Preset, segmenter_device, tensor_device,
};
pub use run::{Outputs, run, run_stage};
pub use stages::coarse::CoarseMethod;
pub use work::{
    STAGE_RECORD, StageRecord, StageRun, files_in, fingerprint, is_current, lock_work_folder,
    read_stage_record, same_fingerprint, write_stage_record,
};
