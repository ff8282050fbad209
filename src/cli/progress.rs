//! A progress bar for hashing, drawn only when stderr is a terminal (CI logs stay clean).
use std::io::IsTerminal;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::manifest::HashProgress;

/// Hashing progress on stderr, in bytes.
pub struct HashBar {
    bar: Option<ProgressBar>,
    label: &'static str,
}

impl HashBar {
    /// A bar when stderr is a TTY; otherwise nothing is drawn.
    pub fn new(label: &'static str) -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:30}] {bytes}/{total_bytes} {binary_bytes_per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        HashBar { bar, label }
    }
}

impl HashProgress for HashBar {
    fn begin(&self, files: usize, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.set_length(bytes);
            bar.set_message(format!("{} {files} files", self.label));
        }
    }

    fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    fn warning(&self, message: &str) {
        match &self.bar {
            Some(bar) => bar.suspend(|| eprintln!("signet: warning: {message}")),
            None => eprintln!("signet: warning: {message}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
