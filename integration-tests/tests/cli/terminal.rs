//! `quickchat chat` at a real terminal: each user's CLI runs on a pseudo-terminal, keys are
//! typed into it, and what it draws is replayed into a terminal emulator (`vt100`), so the
//! assertions are about the screen a person would see, not about escape sequences.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::process::{Child, ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rustix::pty::{OpenptFlags, grantpt, openpt, ptsname, unlockpt};
use rustix::termios::{LocalModes, tcgetattr};

use crate::helpers::{TestServer, User, WAIT};

const ROWS: u16 = 30;
const COLS: u16 = 100;

/// A `quickchat` process on a pseudo-terminal, and the screen it has drawn.
struct Terminal {
    child: Child,
    master: std::fs::File,
    /// The terminal's side the process holds, kept to read its settings after it exits.
    slave: OwnedFd,
    screen: Arc<Mutex<vt100::Parser>>,
    raw: Arc<Mutex<Vec<u8>>>,
}

impl Terminal {
    fn spawn(user: &User, args: &[&str]) -> Self {
        let master = openpt(OpenptFlags::RDWR | OpenptFlags::NOCTTY).expect("a pseudo-terminal");
        grantpt(&master).unwrap();
        unlockpt(&master).unwrap();
        let name = ptsname(&master, Vec::new()).unwrap();
        let slave: OwnedFd = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(name.to_str().unwrap())
            .expect("the terminal's other side")
            .into();
        let size = rustix::termios::Winsize {
            ws_row: ROWS,
            ws_col: COLS,
            ws_xpixel: 0,
            ws_ypixel: 0,
        };
        rustix::termios::tcsetwinsize(&slave, size).unwrap();
        let stdio = |fd: &OwnedFd| Stdio::from(fd.try_clone().unwrap());
        let child = user
            .command()
            .args(args)
            .env("TERM", "xterm-256color")
            .stdin(stdio(&slave))
            .stdout(stdio(&slave))
            .stderr(stdio(&slave))
            .spawn()
            .expect("quickchat starts");
        let master = std::fs::File::from(master);
        let screen = Arc::new(Mutex::new(vt100::Parser::new(ROWS, COLS, 0)));
        let raw = Arc::new(Mutex::new(Vec::new()));
        let mut reader = master.try_clone().unwrap();
        let (into_screen, into_raw) = (screen.clone(), raw.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = reader.read(&mut buf) {
                if n == 0 {
                    break;
                }
                into_screen.lock().unwrap().process(&buf[..n]);
                into_raw.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Self {
            child,
            master,
            slave,
            screen,
            raw,
        }
    }

    /// The visible screen, one string per row, trailing blanks trimmed.
    fn rows(&self) -> Vec<String> {
        let parser = self.screen.lock().unwrap();
        parser
            .screen()
            .rows(0, COLS)
            .map(|row| row.trim_end().to_owned())
            .collect()
    }

    /// Waits until `check` holds for the screen; panics with the screen otherwise.
    fn wait_for(&self, what: &str, check: impl Fn(&[String]) -> bool) -> Vec<String> {
        let deadline = Instant::now() + WAIT;
        loop {
            let rows = self.rows();
            if check(&rows) {
                return rows;
            }
            if Instant::now() > deadline {
                panic!(
                    "the screen never showed {what}:\n{}",
                    self.rows().join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn shows(&self, text: &str) -> Vec<String> {
        self.wait_for(text, |rows| rows.iter().any(|r| r.contains(text)))
    }

    /// Types keys, as a person would (no Enter unless `keys` has `\r`).
    fn type_keys(&mut self, keys: &str) {
        for key in keys.chars() {
            write!(self.master, "{key}").unwrap();
            self.master.flush().unwrap();
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn exits_by_itself(&mut self) -> ExitStatus {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                std::thread::sleep(Duration::from_millis(200));
                return status;
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                panic!("quickchat did not exit:\n{}", self.rows().join("\n"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether the terminal echoes and edits lines (what a shell expects to get back).
    fn is_cooked(&self) -> bool {
        let modes = tcgetattr(&self.slave).unwrap().local_modes;
        modes.contains(LocalModes::ICANON) && modes.contains(LocalModes::ECHO)
    }

    fn raw_output(&self) -> String {
        String::from_utf8_lossy(&self.raw.lock().unwrap()).into_owned()
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn room(server: &TestServer) -> (User, User, String) {
    let alice = User::new(server);
    alice.register("alice@example.com", "Alice");
    let (id, link) = alice.create_group("Book club", "s3cret");
    let bob = User::new(server);
    bob.join(&link, "Bob", "s3cret");
    (alice, bob, id)
}

fn count(rows: &[String], text: &str) -> usize {
    rows.iter().filter(|r| r.contains(text)).count()
}

#[test]
fn who_is_typing_is_one_status_line_that_clears_itself() {
    let server = TestServer::start();
    let (alice, bob, id) = room(&server);
    let a = Terminal::spawn(&alice, &["chat", &id]);
    a.shows("you are Alice");
    let mut b = Terminal::spawn(&bob, &["chat", &id]);
    a.shows("Bob is online");
    b.shows("you are Bob");

    // Bob types for a while: Alice sees one status line, however many signals arrive.
    for _ in 0..3 {
        b.type_keys("hello");
        std::thread::sleep(Duration::from_millis(900));
        b.type_keys(&"\x7f".repeat(5));
    }
    let rows = a.shows("Bob is typing…");
    assert_eq!(count(&rows, "Bob is typing…"), 1, "{}", rows.join("\n"));

    // Bob sends: the message takes the status line's place.
    b.type_keys("hello there\r");
    let rows = a.wait_for("Bob's message without the typing line", |rows| {
        count(rows, "hello there") == 1 && count(rows, "is typing") == 0
    });
    let message = rows.iter().position(|r| r.contains("hello there")).unwrap();
    assert!(
        rows[message + 1].starts_with('>'),
        "the prompt follows the message:\n{}",
        rows.join("\n")
    );

    // Bob types and stops: the line goes away by itself.
    b.type_keys("one more");
    a.shows("Bob is typing…");
    a.wait_for("the typing line gone after Bob stopped", |rows| {
        count(rows, "is typing") == 0
    });
    assert_eq!(
        count(&a.rows(), "hello there"),
        1,
        "nothing piled up:\n{}",
        a.rows().join("\n")
    );
    assert!(
        a.raw_output().matches("Bob is typing").count() >= 2,
        "the line was drawn for each burst"
    );
}

#[test]
fn a_deleted_group_ends_the_terminal_chat_by_itself_and_gives_the_terminal_back() {
    let server = TestServer::start();
    let (alice, bob, id) = room(&server);
    let mut b = Terminal::spawn(&bob, &["chat", &id]);
    b.shows("you are Bob");
    b.type_keys("half a thou");
    alice.ok(&["group", "delete", &id, "--yes"]);
    let status = b.exits_by_itself();
    assert_eq!(status.code(), Some(3), "{}", b.rows().join("\n"));
    b.shows("The group was deleted.");
    assert!(
        b.is_cooked(),
        "the terminal is left echoing and editing lines"
    );
}

#[test]
fn quitting_gives_the_terminal_back() {
    let server = TestServer::start();
    let (_alice, bob, id) = room(&server);
    let mut b = Terminal::spawn(&bob, &["chat", &id]);
    b.shows("you are Bob");
    b.type_keys("/quit\r");
    let status = b.exits_by_itself();
    assert_eq!(status.code(), Some(0), "{}", b.rows().join("\n"));
    b.shows("you left the room");
    assert!(
        b.is_cooked(),
        "the terminal is left echoing and editing lines"
    );
}
