//! Where the room is shown, and where lines come from.
//!
//! At a terminal, a line editor owns the bottom line (the prompt): room events are printed
//! above it, and one status line right above the prompt says who is typing. That line is
//! rewritten in place as people start and stop typing, and erased when nobody is, so typing
//! notices never pile up in the scrollback. Elsewhere (pipes, scripts, `--json`) every event
//! is one line on stdout and lines are read plainly from stdin.
//!
//! The line editor puts the terminal in raw mode while it reads a line, from a thread of its
//! own that cannot be interrupted. When the room ends while it waits (the group was deleted,
//! `/quit`), [`Screen::restore`] puts the terminal back the way it was found, so the shell the
//! user returns to echoes and edits lines again.

use std::io::{BufRead, IsTerminal, Write as _};

use rustyline::{ConditionalEventHandler, Event, EventContext, EventHandler, RepeatCount};
use tokio::sync::mpsc;

use super::{ChatEvent, Input};
use crate::output::json_line;

/// Cursor up one line, then erase that line.
const UP_AND_ERASE: &str = "\x1b[1A\x1b[2K";

/// Where room events are shown.
pub(super) enum Screen {
    /// Plain lines on stdout (human or JSON).
    Plain { json: bool },
    /// Above the line editor's prompt.
    Terminal {
        printer: Box<dyn rustyline::ExternalPrinter + Send>,
        /// The status line shown right above the prompt, if any.
        status: Option<String>,
        /// The terminal's settings before the line editor changed them.
        saved: Option<rustix::termios::Termios>,
    },
}

impl Screen {
    pub(super) fn show(&mut self, event: ChatEvent, human: String) {
        match self {
            Self::Plain { json: true } => println!("{}", json_line(&event)),
            Self::Plain { json: false } => println!("{human}"),
            Self::Terminal {
                printer, status, ..
            } => {
                // The status line stays last: the event takes its place and it follows.
                let text = match status {
                    Some(status) => format!("{UP_AND_ERASE}{human}\n{status}\n"),
                    None => format!("{human}\n"),
                };
                if printer.print(text).is_err() {
                    println!("{human}");
                }
            }
        }
    }

    /// Shows `line` as the status line (at a terminal), replacing the one shown; `None`
    /// erases it.
    pub(super) fn set_status(&mut self, line: Option<String>) {
        let Self::Terminal {
            printer, status, ..
        } = self
        else {
            return;
        };
        if *status == line {
            return;
        }
        let text = match (status.is_some(), &line) {
            (false, Some(new)) => format!("{new}\n"),
            (true, Some(new)) => format!("{UP_AND_ERASE}{new}\n"),
            // Erase it, and step back up so the prompt is redrawn where it stood: the editor
            // ends every print with a new line.
            (true, None) => format!("{UP_AND_ERASE}\x1b[1A\n"),
            (false, None) => return,
        };
        if printer.print(text).is_ok() {
            *status = line;
        }
    }

    pub(super) fn is_terminal(&self) -> bool {
        matches!(self, Self::Terminal { .. })
    }

    /// Leaves the terminal as it was found: the status line erased, the line editor's raw
    /// mode undone (its thread may still be waiting for a line), the cursor on a fresh line.
    /// What is shown after this goes straight to stdout: the editor's thread, which prints
    /// for the printer, may never run again before the process exits.
    pub(super) fn restore(&mut self) {
        self.set_status(None);
        if let Self::Terminal {
            saved: Some(saved), ..
        } = self
        {
            let _ = rustix::termios::tcsetattr(
                std::io::stdin(),
                rustix::termios::OptionalActions::Now,
                saved,
            );
            let mut stdout = std::io::stdout();
            let _ = stdout.write_all(b"\r\n");
            let _ = stdout.flush();
        }
        if self.is_terminal() {
            *self = Self::Plain { json: false };
        }
    }
}

/// The status line for the people typing now (names in the order they started).
pub(super) fn typing_line(names: &[&str]) -> Option<String> {
    let text = match names {
        [] => return None,
        [one] => format!("{one} is typing…"),
        [one, two] => format!("{one} and {two} are typing…"),
        [one, two, three] => format!("{one}, {two} and {three} are typing…"),
        [one, two, rest @ ..] => format!("{one}, {two} and {} others are typing…", rest.len()),
    };
    Some(format!("  {text}"))
}

/// Sends a typing signal for every key press that edits the line.
struct TypingSignal(mpsc::Sender<Input>);

impl ConditionalEventHandler for TypingSignal {
    fn handle(
        &self,
        evt: &Event,
        _: RepeatCount,
        _: bool,
        _: &EventContext,
    ) -> Option<rustyline::Cmd> {
        if let Some(rustyline::KeyEvent(rustyline::KeyCode::Char(_), _)) = evt.get(0) {
            let _ = self.0.try_send(Input::Typing);
        }
        None
    }
}

/// Starts the input half; returns where room events should be shown.
pub(super) fn start_input(tx: mpsc::Sender<Input>, json: bool) -> Screen {
    if !json && std::io::stdin().is_terminal() && std::io::stdout().is_terminal() {
        let saved = rustix::termios::tcgetattr(std::io::stdin()).ok();
        let (screen_tx, screen_rx) = std::sync::mpsc::channel();
        let editor_tx = tx.clone();
        std::thread::spawn(move || {
            let mut editor = match rustyline::DefaultEditor::new() {
                Ok(editor) => editor,
                Err(_) => {
                    let _ = screen_tx.send(None);
                    return;
                }
            };
            editor.bind_sequence(
                Event::Any,
                EventHandler::Conditional(Box::new(TypingSignal(editor_tx.clone()))),
            );
            let printer = editor.create_external_printer().ok();
            let ok = printer.is_some();
            let _ = screen_tx.send(printer);
            if !ok {
                return;
            }
            loop {
                match editor.readline("> ") {
                    Ok(line) => {
                        let _ = editor.add_history_entry(line.as_str());
                        // After /quit no line follows: reading another would put the
                        // terminal back in raw mode while the room restores it.
                        let quit = super::Typed::of(&line) == super::Typed::Quit;
                        if editor_tx.blocking_send(Input::Line(line)).is_err() || quit {
                            return;
                        }
                    }
                    // Ctrl-D, Ctrl-C, or the terminal went away.
                    Err(_) => {
                        let _ = editor_tx.blocking_send(Input::Leave);
                        return;
                    }
                }
            }
        });
        if let Ok(Some(printer)) = screen_rx.recv() {
            return Screen::Terminal {
                printer: Box::new(printer),
                status: None,
                saved,
            };
        }
    }
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            let Ok(line) = line else { break };
            if tx.blocking_send(Input::Line(line)).is_err() {
                return;
            }
        }
        let _ = tx.blocking_send(Input::Leave);
    });
    Screen::Plain { json }
}

#[cfg(test)]
mod tests {
    use super::typing_line;

    #[test]
    fn the_status_line_names_who_is_typing() {
        assert_eq!(typing_line(&[]), None);
        assert_eq!(typing_line(&["Ann"]).unwrap(), "  Ann is typing…");
        assert_eq!(
            typing_line(&["Ann", "Bob"]).unwrap(),
            "  Ann and Bob are typing…"
        );
        assert_eq!(
            typing_line(&["Ann", "Bob", "Cy"]).unwrap(),
            "  Ann, Bob and Cy are typing…"
        );
        assert_eq!(
            typing_line(&["Ann", "Bob", "Cy", "Di"]).unwrap(),
            "  Ann, Bob and 2 others are typing…"
        );
    }
}
