//! Message bodies.

use super::{FieldViolation, char_len, check_label, text};

/// A message body: 1 to 4000 characters, not only whitespace, prose by the text rules (no
/// NUL or other control characters but newline and tab). Kept exactly as sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageBody(String);

impl MessageBody {
    pub const MAX_CHARS: usize = 4000;

    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        if text::is_blank(raw) {
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
        if text::check_prose(raw).is_err() {
            return Err(FieldViolation::new(
                "body",
                "Message must not contain control characters other than newline and tab.",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The sender's idempotency key for a message: at most 64 characters, a label by the text
/// rules; empty means none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientMessageId(String);

impl ClientMessageId {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        if char_len(raw) > Self::MAX_CHARS {
            return Err(FieldViolation::new(
                "client_message_id",
                format!(
                    "client_message_id must be at most {} characters long.",
                    Self::MAX_CHARS
                ),
            ));
        }
        check_label("client_message_id", "client_message_id", raw)?;
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

    #[test]
    fn nul_and_other_controls_are_refused_but_lines_and_tabs_kept() {
        assert!(MessageBody::parse("poison\u{0}").is_err());
        assert!(MessageBody::parse("\u{1b}[2J").is_err());
        assert!(
            MessageBody::parse("\u{200B}").is_err(),
            "invisible only is blank"
        );
        assert_eq!(MessageBody::parse("a\n\tb").unwrap().as_str(), "a\n\tb");
    }

    proptest::proptest! {
        #[test]
        fn an_accepted_client_message_id_is_short_and_clean(raw in proptest::prelude::any::<String>()) {
            if let Ok(id) = ClientMessageId::parse(&raw) {
                proptest::prop_assert!(id.as_str().chars().count() <= ClientMessageId::MAX_CHARS);
                proptest::prop_assert!(super::super::text::check_label(id.as_str()).is_ok());
            }
        }

        #[test]
        fn an_accepted_body_can_be_stored(raw in proptest::prelude::any::<String>()) {
            if let Ok(body) = MessageBody::parse(&raw) {
                proptest::prop_assert_eq!(body.as_str(), raw.as_str());
                proptest::prop_assert!(!raw.contains('\0'));
                proptest::prop_assert!((1..=MessageBody::MAX_CHARS).contains(&raw.chars().count()));
            }
        }
    }
}
