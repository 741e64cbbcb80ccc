//! Message bodies.

use super::{FieldViolation, char_len};

/// A message body: 1 to 4000 characters and not only whitespace. Kept exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub const MAX_CHARS: usize = 4000;

    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        if raw.trim().is_empty() {
            return Err(FieldViolation::new("body", "Message must not be blank."));
        }
        if char_len(raw) > Self::MAX_CHARS {
            return Err(FieldViolation::new(
                "body",
                format!(
                    "Message must be at most {} characters long.",
                    Self::MAX_CHARS
                ),
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blank_and_oversized_bodies_are_rejected() {
        assert!(MessageBody::parse(" \n\t").is_err());
        assert!(MessageBody::parse(&"x".repeat(4001)).is_err());
        assert_eq!(MessageBody::parse(" hi ").unwrap().as_str(), " hi ");
    }
}
