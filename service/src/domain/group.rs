//! Group fields: title, passcode, and the name a member joins with.

use secrecy::SecretString;

use super::{FieldViolation, char_len, parse_name};

/// A group title: trimmed, 4 to 191 characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTitle(String);

impl GroupTitle {
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let title = raw.trim();
        let len = char_len(title);
        if len < 4 {
            return Err(FieldViolation::new(
                "title",
                "Chat title must be 4 characters long.",
            ));
        }
        if len > 191 {
            return Err(FieldViolation::new(
                "title",
                "Chat title must be at most 191 characters long.",
            ));
        }
        Ok(Self(title.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A group passcode, 4 to 25 characters, taken exactly as typed. Never printed.
pub struct Passcode(SecretString);

impl Passcode {
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let len = char_len(raw);
        if len < 4 {
            return Err(FieldViolation::new(
                "passcode",
                "Chat passcode must be 4 characters long.",
            ));
        }
        if len > 25 {
            return Err(FieldViolation::new(
                "passcode",
                "Chat passcode must be at most 25 characters long.",
            ));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl std::fmt::Debug for Passcode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passcode([redacted])")
    }
}

/// The display name someone joins a group with: trimmed, 1 to 64 characters, no control
/// characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberName(String);

impl MemberName {
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        parse_name("name", "Name", raw).map(Self)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_uses_the_original_messages() {
        assert_eq!(
            GroupTitle::parse("abc").unwrap_err().description,
            "Chat title must be 4 characters long."
        );
        assert_eq!(GroupTitle::parse("  Rust  ").unwrap().as_str(), "Rust");
        assert!(GroupTitle::parse(&"t".repeat(192)).is_err());
        assert!(GroupTitle::parse(&"t".repeat(191)).is_ok());
    }

    #[test]
    fn passcode_bounds() {
        assert_eq!(
            Passcode::parse("123").unwrap_err().description,
            "Chat passcode must be 4 characters long."
        );
        assert!(Passcode::parse("1234").is_ok());
        assert!(Passcode::parse(&"p".repeat(26)).is_err());
    }
}
