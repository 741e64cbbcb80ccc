//! Validated domain types. A request is parsed into these at the boundary; after that no
//! handler sees a raw string. Each `parse` returns a [`FieldViolation`] whose description is
//! the sentence shown to the user.

mod code_grant;
mod group;
mod identity;
mod message;
pub mod text;

pub use code_grant::CodeGrant;
pub use group::{GroupTitle, MemberName, Passcode, name_key};
pub use identity::{DisplayName, Email, Password};
pub use message::{ClientMessageId, MessageBody};

/// One invalid field of a request: the field's name as in the `.proto`, and a human message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    pub field: &'static str,
    pub description: String,
}

impl FieldViolation {
    pub fn new(field: &'static str, description: impl Into<String>) -> Self {
        Self {
            field,
            description: description.into(),
        }
    }
}

/// Collects the violations of a whole request so that the client learns about every bad
/// field at once, not one per round trip.
#[derive(Debug, Default)]
pub struct Violations(Vec<FieldViolation>);

impl Violations {
    pub fn new() -> Self {
        Self::default()
    }

    /// Keeps the parsed value, or records why it failed.
    pub fn check<T>(&mut self, parsed: Result<T, FieldViolation>) -> Option<T> {
        match parsed {
            Ok(value) => Some(value),
            Err(violation) => {
                self.0.push(violation);
                None
            }
        }
    }

    /// `Ok(())` when nothing failed, otherwise every violation (the API answers them as one
    /// `INVALID_ARGUMENT`).
    pub fn finish(self) -> Result<(), Invalid> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(Invalid(self.0))
        }
    }
}

/// A request with invalid fields, each with its reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid(pub Vec<FieldViolation>);

/// Length of `s` in characters (what a person counts), not bytes.
fn char_len(s: &str) -> usize {
    s.chars().count()
}

/// Checks `text` against the label rules ([`text::check_label`]), worded for `label`.
fn check_label(field: &'static str, label: &str, value: &str) -> Result<(), FieldViolation> {
    text::check_label(value).map_err(|fault| {
        FieldViolation::new(field, format!("{label} must not contain {}.", fault.what()))
    })
}

/// A display name: trimmed, 1 to 64 characters, a label by the text rules (no control,
/// direction-override or invisible characters). Shared by account names and member names,
/// which differ only in their field and wording.
fn parse_name(field: &'static str, label: &str, raw: &str) -> Result<String, FieldViolation> {
    use unicode_normalization::UnicodeNormalization;
    // One spelling of every name (NFC): what is shown is what is compared.
    let normalized: String = raw.nfc().collect();
    let name = normalized.trim();
    if text::is_blank(name) {
        return Err(FieldViolation::new(
            field,
            format!("{label} must not be empty."),
        ));
    }
    if char_len(name) > 64 {
        return Err(FieldViolation::new(
            field,
            format!("{label} must be at most 64 characters long."),
        ));
    }
    check_label(field, label, name)?;
    Ok(name.to_owned())
}
