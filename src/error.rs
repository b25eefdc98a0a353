//! The library's error type: every message is one line that names the file (and line or
//! tensor) and says what was expected.

use std::path::Path;

/// Errors raised by the library.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Bad user input: a file, a flag, a checkpoint that does not match its config.
    #[error("{0}")]
    Input(String),
    /// An I/O failure on a named path. The OS error is part of the message and deliberately
    /// not a `source`, so that printing the error chain does not repeat it.
    #[error("{path}: {cause}")]
    Io {
        /// The file or folder.
        path: String,
        /// The underlying error.
        cause: std::io::Error,
    },
    /// A data file that cannot be read as expected (names file and line).
    #[error(transparent)]
    Data(#[from] crate::data::DataError),
    /// Training stopped on Ctrl-C after saving its state.
    #[error(
        "interrupted at step {step}/{total}: the training state is saved; continue with `prefix-subspace train --resume {dir}`"
    )]
    Interrupted {
        /// Steps done.
        step: usize,
        /// Steps planned.
        total: usize,
        /// The run directory.
        dir: String,
    },
    /// A libtorch failure.
    #[error("libtorch: {0}")]
    Torch(#[from] tch::TchError),
}

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io { path: path.display().to_string(), cause: source }
    }
}

/// Result with the library's error.
pub type Result<T, E = Error> = std::result::Result<T, E>;
