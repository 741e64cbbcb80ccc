//! The progress bar (on a terminal), or one line per step (anywhere else, e.g. CI).

use indicatif::{ProgressBar, ProgressStyle};

pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    pub fn new(steps: u64) -> Self {
        let bar = ProgressBar::new(steps);
        bar.set_style(
            ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} {wide_msg}")
                .expect("valid template")
                .progress_chars("=> "),
        );
        Self { bar }
    }

    /// A new step begins.
    pub fn step(&self, what: &str) {
        self.bar.inc(1);
        self.bar.set_message(what.to_owned());
        if self.bar.is_hidden() {
            eprintln!(
                "[{}/{}] {what}",
                self.bar.position(),
                self.bar.length().unwrap_or(0)
            );
        }
    }

    /// A line above the bar.
    pub fn note(&self, line: &str) {
        if self.bar.is_hidden() {
            eprintln!("      {line}");
        } else {
            self.bar.println(format!("  {line}"));
        }
    }

    /// Steps that will not happen (a sweep stopped early, a scenario failed).
    pub fn skip(&self, steps: u64) {
        self.bar.inc(steps);
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

impl Progress {
    /// Moves the bar to `position` (a scenario ended, whatever steps it took).
    pub fn reach(&self, position: u64) {
        self.bar.set_position(position);
    }
}
