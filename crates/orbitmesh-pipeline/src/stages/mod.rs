//! The stage functions: each writes one stage's outputs into the folder it is given (the work
//! folder's `<stage>.tmp`, or a command's staged output folder) and returns what its
//! `stage.json` keeps.

pub mod coarse;
pub mod export;
pub mod fine;
pub mod orbit;
pub mod prepare;
pub mod scan;
