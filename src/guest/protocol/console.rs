//! Reading the appliance's serial console back: a pure, incremental parser
//! of the marker framing (see the [`probe`](super) module docs).
//!
//! Bytes go in as they arrive ([`ConsoleReader::feed`]), in chunks of any
//! size; the result does not depend on where the chunks split. Lines are
//! split on `\n`, trailing `\r`s dropped, invalid UTF-8 replaced; a line
//! longer than 64 KiB is cut into 64 KiB pieces (kept joined in a file's
//! content). Lines between a `begin` and its `end` marker are the file's
//! content, kernel messages that interleave included; everything else is
//! console noise, kept only in the [`tail`](ConsoleReader::tail).
//!
//! Between a `begin-gz` and its `end` marker the file comes gzip-compressed
//! and base64-encoded (busybox `gzip -c | base64`: a third of the bytes on a
//! serial line that carries about 14 KB/s). Lines of base64 characters are
//! the payload; any other line (a kernel message) is console noise. At
//! `end` the payload is decoded and unzipped into the file's content, its
//! bytes as the command wrote them (invalid UTF-8 replaced); a payload
//! that does not decode is a [`ConsoleError::Corrupt`] naming the file.

use std::collections::{BTreeMap, VecDeque};

use super::{Marker, Nonce};
use crate::capture::{CaptureSet, CapturedFile, StepError};

/// Longest line kept in one piece.
const MAX_LINE: usize = 64 * 1024;
/// Console lines kept for [`ConsoleReader::tail`].
const TAIL_LINES: usize = 200;
/// Console lines an error carries.
const ERROR_TAIL_LINES: usize = 30;
/// Most base64 text one compressed capture may take (the biggest capture,
/// dmesg, is about 15 KB of it).
const MAX_GZ_TEXT: usize = 16 << 20;
/// Most bytes one compressed capture may unzip to.
const MAX_GZ_CONTENT: u64 = 64 << 20;
/// What the kernel prints when it panics.
const PANIC_TEXT: &str = "Kernel panic - not syncing";

/// Something the console showed, in the order it showed it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConsoleEvent {
    /// The appliance's /init started (the kernel booted).
    InitStarted,
    /// A step of /init failed (`insmod`, `sriov`); it goes on.
    StepFailed(StepError),
    /// The output of this capture file starts.
    FileBegun(String),
    /// The output of this capture file is complete.
    FileDone(String),
    /// The nested step started, with this many assigned devices; the
    /// nested files follow.
    NestedStarted(u32),
    /// Every capture was printed (the guest powers off next, or, in shell
    /// mode, starts a shell).
    Done,
    /// Shell mode: an interactive shell now owns the console.
    ShellReady,
    /// The kernel panicked; the line that says so.
    KernelPanic(String),
    /// The agent waits for the host's word before the workloads.
    Gate,
    /// A line of a workload's output (`workload-<name>.log`), as it came.
    Output {
        /// The workload.
        workload: String,
        /// The line (without its newline).
        line: String,
    },
}

/// Why a console stream did not hold a complete capture. Each variant
/// carries the last console lines, which its message shows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConsoleError {
    /// The kernel panicked before the captures were done.
    #[error("guest kernel panicked: {line}{}", fmt_tail(tail))]
    KernelPanic {
        /// The panic line.
        line: String,
        /// The last console lines.
        tail: Vec<String>,
    },
    /// No `init` marker: the kernel did not get to /init, or it is not the
    /// probe appliance, or the nonce is not this boot's.
    #[error("the probe appliance's /init never started (no init marker with this nonce on the console){}", fmt_tail(tail))]
    NoInit {
        /// The last console lines.
        tail: Vec<String>,
    },
    /// The console ended inside a capture.
    #[error(
        "console ended inside capture {file} (no end marker){}",
        fmt_tail(tail)
    )]
    Truncated {
        /// The capture file that was being printed.
        file: String,
        /// The last console lines.
        tail: Vec<String>,
    },
    /// A compressed capture (`begin-gz`) whose payload is not valid base64
    /// of a gzip stream.
    #[error(
        "capture {file} came compressed but cannot be decoded: {why}{}",
        fmt_tail(tail)
    )]
    Corrupt {
        /// The capture file.
        file: String,
        /// What is wrong with it.
        why: String,
        /// The last console lines.
        tail: Vec<String>,
    },
    /// The console ended between captures, before the `done` marker.
    #[error(
        "console ended before the probe was done (after {} of the captures){}",
        done_count,
        fmt_tail(tail)
    )]
    NotDone {
        /// How many captures were complete.
        done_count: usize,
        /// The last console lines.
        tail: Vec<String>,
    },
}

fn fmt_tail(tail: &[String]) -> String {
    if tail.is_empty() {
        return "; the console was empty".to_string();
    }
    let mut s = String::from("; last console lines:");
    for line in tail {
        s.push_str("\n  | ");
        s.push_str(line);
    }
    s
}

/// become `.`.
fn printable(text: &str) -> String {
    text.chars()
        .map(|c| if c.is_control() && c != '\t' { '.' } else { c })
        .collect()
}

/// Decodes the standard base64 of busybox `base64` (whitespace between
/// lines ignored). With `partial` (the output was cut short), the whole
/// groups of four characters are decoded and a trailing fragment dropped.
fn base64_decode(text: &str, partial: bool) -> Result<Vec<u8>, String> {
    use base64::Engine as _;
    let mut chars: Vec<u8> = text.bytes().filter(|b| !b.is_ascii_whitespace()).collect();
    if partial {
        chars.truncate(chars.len() / 4 * 4);
    }
    base64::engine::general_purpose::STANDARD
        .decode(&chars)
        .map_err(|e| format!("not valid base64: {e}"))
}

/// Whether a console line can be base64 payload.
fn is_base64_line(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/' || b == b'=')
}

/// Unzips a base64 gzip payload. With `partial` (the output was cut short),
/// whatever prefix decodes is returned, never an error.
fn decode_gz(b64: &str, partial: bool) -> Result<Vec<u8>, String> {
    use std::io::Read;
    let zipped = match base64_decode(b64, partial) {
        Ok(z) => z,
        Err(_) if partial => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    let mut dec = flate2::read::GzDecoder::new(zipped.as_slice()).take(MAX_GZ_CONTENT + 1);
    match dec.read_to_end(&mut out) {
        Ok(_) if out.len() as u64 > MAX_GZ_CONTENT => {
            if partial {
                out.truncate(MAX_GZ_CONTENT as usize);
                Ok(out)
            } else {
                Err(format!("it unzips to more than {MAX_GZ_CONTENT} bytes"))
            }
        }
        Ok(_) => Ok(out),
        Err(_) if partial => Ok(out),
        Err(e) => Err(format!("gzip: {e}")),
    }
}

/// The capture being printed.
#[derive(Debug, Clone)]
enum Body {
    /// `begin`: its lines so far.
    Plain(String),
    /// `begin-gz`: its base64 text so far; `overflow` once it passed
    /// [`MAX_GZ_TEXT`] (the rest is dropped).
    Gz { b64: String, overflow: bool },
}

/// Reads one boot's console stream into a [`CaptureSet`], incrementally.
/// Never panics, whatever the bytes.
#[derive(Debug, Clone)]
pub struct ConsoleReader {
    /// `::nestlab:<nonce>:`
    prefix: String,
    /// The current line so far (no newline yet).
    pending: Vec<u8>,
    /// The last console lines, printable.
    tail: VecDeque<String>,
    /// The capture being printed: name and content so far.
    open: Option<(String, Body)>,
    /// The first compressed capture that did not decode, and why.
    corrupt: Option<(String, String)>,
    /// A capture the console ended inside (set by `finish`).
    truncated: Option<String>,
    set: CaptureSet,
    init_seen: bool,
    done_seen: bool,
    /// The first panic line, if it came before `done`.
    panic: Option<String>,
}

impl ConsoleReader {
    /// A reader for the boot whose kernel command line carried
    /// `nestlab.nonce=<nonce>`; markers with any other nonce are text.
    pub fn new(nonce: &Nonce) -> Self {
        ConsoleReader {
            prefix: format!("::nestlab:{nonce}:"),
            pending: Vec::new(),
            tail: VecDeque::with_capacity(TAIL_LINES),
            open: None,
            corrupt: None,
            truncated: None,
            set: CaptureSet::default(),
            init_seen: false,
            done_seen: false,
            panic: None,
        }
    }

    /// Takes the next bytes of the console, returns what they completed.
    /// A line is only looked at once its newline has arrived (or at
    /// [`finish`](Self::finish)).
    pub fn feed(&mut self, bytes: &[u8]) -> Vec<ConsoleEvent> {
        let mut events = Vec::new();
        let mut rest = bytes;
        while !rest.is_empty() {
            let room = MAX_LINE.saturating_sub(self.pending.len()).max(1);
            let window = &rest[..rest.len().min(room)];
            match window.iter().position(|&b| b == b'\n') {
                Some(i) => {
                    self.pending.extend_from_slice(&window[..i]);
                    rest = &rest[i + 1..];
                    let line = std::mem::take(&mut self.pending);
                    self.line(&line, true, &mut events);
                }
                None => {
                    self.pending.extend_from_slice(window);
                    rest = &rest[window.len()..];
                    if self.pending.len() >= MAX_LINE {
                        let line = std::mem::take(&mut self.pending);
                        self.line(&line, false, &mut events);
                    }
                }
            }
        }
        events
    }

    /// Whether the `init` marker was seen.
    pub fn init_started(&self) -> bool {
        self.init_seen
    }

    /// Whether the `done` marker was seen.
    pub fn is_done(&self) -> bool {
        self.done_seen
    }

    /// The captures complete so far (and any cut short by a later `begin`
    /// or `done`, with no exit code), by file name.
    pub fn files(&self) -> &BTreeMap<String, CapturedFile> {
        &self.set.files
    }

    /// Everything read so far: files, failed steps, uptimes.
    pub fn captured(&self) -> &CaptureSet {
        &self.set
    }

    /// The name of the capture being printed now, if any.
    pub fn current_file(&self) -> Option<&str> {
        self.open.as_ref().map(|(name, _)| name.as_str())
    }

    /// The last `n` console lines (at most 200 are kept), the unfinished
    /// current line last; control characters shown as `.`.
    pub fn tail(&self, n: usize) -> Vec<String> {
        let mut lines: Vec<String> = self.tail.iter().cloned().collect();
        if !self.pending.is_empty() {
            lines.push(printable(&String::from_utf8_lossy(&self.pending)));
        }
        let skip = lines.len().saturating_sub(n);
        lines.split_off(skip)
    }

    /// Ends the stream: takes the unfinished last line as a line, then
    /// returns the capture if the `done` marker came.
    ///
    /// # Errors
    /// [`ConsoleError::KernelPanic`] when the kernel panicked before `done`,
    /// [`ConsoleError::NoInit`] without an `init` marker,
    /// [`ConsoleError::Corrupt`] when a compressed capture did not decode,
    /// [`ConsoleError::Truncated`] when the console ended inside a capture,
    /// [`ConsoleError::NotDone`] when it ended between captures. What was
    /// read stays available through [`files`](Self::files).
    pub fn finish(&mut self) -> Result<CaptureSet, ConsoleError> {
        if !self.pending.is_empty() {
            let line = std::mem::take(&mut self.pending);
            self.line(&line, false, &mut Vec::new());
        }
        if let Some(name) = self.current_file().map(str::to_string) {
            self.close(None);
            self.truncated = Some(name);
        }
        let tail = self.tail(ERROR_TAIL_LINES);
        if let Some(line) = &self.panic {
            return Err(ConsoleError::KernelPanic {
                line: line.clone(),
                tail,
            });
        }
        if !self.init_seen {
            return Err(ConsoleError::NoInit { tail });
        }
        if let Some((file, why)) = &self.corrupt {
            return Err(ConsoleError::Corrupt {
                file: file.clone(),
                why: why.clone(),
                tail,
            });
        }
        if let Some(file) = &self.truncated {
            return Err(ConsoleError::Truncated {
                file: file.clone(),
                tail,
            });
        }
        if !self.done_seen {
            let done_count = self
                .set
                .files
                .values()
                .filter(|f| f.exit_code.is_some())
                .count();
            return Err(ConsoleError::NotDone { done_count, tail });
        }
        Ok(self.set.clone())
    }

    fn line(&mut self, raw: &[u8], terminated: bool, events: &mut Vec<ConsoleEvent>) {
        let mut bytes = raw;
        if terminated {
            while let [rest @ .., b'\r'] = bytes {
                bytes = rest;
            }
        }
        let text = String::from_utf8_lossy(bytes);
        // The payload of a compressed capture: kept out of the tail.
        if let Some((_, Body::Gz { .. })) = &self.open {
            if is_base64_line(&text) {
                self.append(&text, terminated);
                return;
            }
        }
        if self.tail.len() == TAIL_LINES {
            self.tail.pop_front();
        }
        self.tail.push_back(printable(&text));

        // Inside a workload's output, only a kernel message (`[ 12.3] ...`)
        // is a panic: a test may well print the words.
        let in_workload = self
            .current_file()
            .is_some_and(|f| crate::capture::workload_of(f).is_some());
        if let Some(at) = text
            .find(PANIC_TEXT)
            .filter(|_| !in_workload || text.trim_start().starts_with('['))
        {
            let line = printable(text[at..].trim_end());
            if self.panic.is_none() && !self.done_seen {
                self.panic = Some(line.clone());
            }
            events.push(ConsoleEvent::KernelPanic(line));
        }

        if let Some(at) = text.find(self.prefix.as_str()) {
            if let Some(marker) = Marker::parse(&text[at + self.prefix.len()..]) {
                if self.marker(marker, &text[..at], events) {
                    return;
                }
            }
        }
        if let Some(w) = self.current_file().and_then(crate::capture::workload_of) {
            events.push(ConsoleEvent::Output {
                workload: w.to_string(),
                line: printable(&text),
            });
        }
        self.append(&text, terminated);
    }

    /// Appends text to the open capture, if any: a plain one takes every
    /// line, a compressed one only base64 text (other lines are console
    /// noise).
    fn append(&mut self, text: &str, terminated: bool) {
        match &mut self.open {
            Some((_, Body::Plain(content))) => {
                content.push_str(text);
                if terminated {
                    content.push('\n');
                }
            }
            Some((_, Body::Gz { b64, overflow })) if is_base64_line(text) => {
                if b64.len() + text.len() > MAX_GZ_TEXT {
                    *overflow = true;
                } else if !*overflow {
                    b64.push_str(text);
                }
            }
            _ => {}
        }
    }

    /// Closes the open capture with an exit code (None: cut short) and
    /// returns its name; a compressed one is decoded first, and one that
    /// does not decode is not kept (returns None; `finish` reports it).
    fn close(&mut self, exit_code: Option<i32>) -> Option<String> {
        let (name, body) = self.open.take()?;
        let content = match body {
            Body::Plain(content) => content,
            Body::Gz { b64, overflow } => {
                let decoded = if overflow && exit_code.is_some() {
                    Err(format!("more than {MAX_GZ_TEXT} bytes of base64"))
                } else {
                    decode_gz(&b64, exit_code.is_none())
                };
                match decoded {
                    Ok(bytes) => String::from_utf8_lossy(&bytes).into_owned(),
                    Err(why) => {
                        if self.corrupt.is_none() {
                            self.corrupt = Some((name, why));
                        }
                        return None;
                    }
                }
            }
        };
        self.set
            .files
            .insert(name.clone(), CapturedFile { content, exit_code });
        Some(name)
    }

    /// Acts on a marker; `before` is the text before it on its line, the
    /// end of an output that had no final newline. Returns false when the
    /// marker does not fit (an `end` for another file) and the line is text.
    fn marker(&mut self, marker: Marker<'_>, before: &str, events: &mut Vec<ConsoleEvent>) -> bool {
        if let Marker::End { file, .. } = marker {
            if self.current_file() != Some(file) {
                return false;
            }
        }
        self.append(before, false);
        match marker {
            Marker::Init(uptime) => {
                if !self.init_seen {
                    self.init_seen = true;
                    self.set.init_uptime = uptime;
                    events.push(ConsoleEvent::InitStarted);
                }
            }
            Marker::Error { step, detail } => {
                let e = StepError {
                    step: step.to_string(),
                    detail: printable(detail),
                };
                self.set.step_errors.push(e.clone());
                events.push(ConsoleEvent::StepFailed(e));
            }
            Marker::Begin(file) => {
                self.close(None);
                self.open = Some((file.to_string(), Body::Plain(String::new())));
                events.push(ConsoleEvent::FileBegun(file.to_string()));
            }
            Marker::BeginGz(file) => {
                self.close(None);
                self.open = Some((
                    file.to_string(),
                    Body::Gz {
                        b64: String::new(),
                        overflow: false,
                    },
                ));
                events.push(ConsoleEvent::FileBegun(file.to_string()));
            }
            Marker::End { code, .. } => {
                if let Some(name) = self.close(Some(code)) {
                    events.push(ConsoleEvent::FileDone(name));
                }
            }
            Marker::Done(uptime) => {
                self.close(None);
                if !self.done_seen {
                    self.done_seen = true;
                    self.set.done_uptime = uptime;
                    events.push(ConsoleEvent::Done);
                }
            }
            Marker::Nested(count) => {
                self.set.nested = true;
                events.push(ConsoleEvent::NestedStarted(count));
            }
            Marker::Shell => events.push(ConsoleEvent::ShellReady),
            // A heartbeat is output like any other: it keeps the runner's
            // quiet-console clock from running out.
            Marker::Alive => {}
            Marker::Gate => {
                self.set.workloads = true;
                events.push(ConsoleEvent::Gate);
            }
        }
        true
    }
}

#[cfg(test)]
#[path = "console_tests.rs"]
mod tests;
