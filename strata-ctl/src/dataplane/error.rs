//! Data-plane failures, each naming what was being done: a map or program
//! operation that failed without saying which map would leave an operator
//! guessing.

/// A data-plane operation that failed, with what it was.
#[derive(Debug, thiserror::Error)]
pub enum DatapathError {
    /// Loading (and verifying) the object failed.
    #[error("loading the eBPF object: {0}")]
    Load(#[from] aya::EbpfError),
    /// A program operation failed.
    #[error("{what}: {source}")]
    Program {
        /// What was being done.
        what: String,
        /// aya's error.
        source: aya::programs::ProgramError,
    },
    /// A map operation failed.
    #[error("{what}: {source}")]
    Map {
        /// What was being done.
        what: String,
        /// aya's error.
        source: aya::maps::MapError,
    },
    /// A pinned program link could not be opened or replaced.
    #[error("{what}: {source}")]
    Link {
        /// What was being done.
        what: String,
        /// aya's error.
        source: aya::programs::links::LinkError,
    },
    /// A program link could not be pinned.
    #[error("{what}: {source}")]
    Pin {
        /// What was being done.
        what: String,
        /// aya's error.
        source: aya::pin::PinError,
    },
    /// A file-system operation on the pin directory failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        source: std::io::Error,
    },
}

/// Wraps a map error with what was being done.
pub(crate) fn map_err(what: impl Into<String>) -> impl FnOnce(aya::maps::MapError) -> DatapathError {
    let what = what.into();
    move |source| DatapathError::Map { what, source }
}
