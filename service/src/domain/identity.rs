//! Account identity: email, password, display name.

use secrecy::SecretString;

use super::{FieldViolation, char_len, parse_name};

/// A syntactically valid email address, at most 191 characters, lower-cased so that lookups
/// are case-insensitive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Email(String);

impl Email {
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let email = raw.trim().to_lowercase();
        let invalid = || FieldViolation::new("email", "Email must be a valid email address.");
        if email.is_empty() {
            return Err(FieldViolation::new("email", "Email must not be empty."));
        }
        if char_len(&email) > 191 {
            return Err(FieldViolation::new(
                "email",
                "Email must be at most 191 characters long.",
            ));
        }
        let (local, domain) = email.split_once('@').ok_or_else(invalid)?;
        let domain_ok = domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains("..");
        if local.is_empty()
            || !domain_ok
            || domain.contains('@')
            || email.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid());
        }
        Ok(Self(email))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A password of 8 to 128 characters. Never printed.
pub struct Password(SecretString);

impl Password {
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let len = char_len(raw);
        if len < 8 {
            return Err(FieldViolation::new(
                "password",
                "Password must be at least 8 characters long.",
            ));
        }
        if len > 128 {
            return Err(FieldViolation::new(
                "password",
                "Password must be at most 128 characters long.",
            ));
        }
        Ok(Self(SecretString::from(raw.to_owned())))
    }

    pub fn secret(&self) -> &SecretString {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password([redacted])")
    }
}

/// An account's display name: trimmed, 1 to 64 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DisplayName(String);

impl DisplayName {
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
    fn email_is_normalised_and_checked() {
        assert_eq!(
            Email::parse(" Ann@Example.COM ").unwrap().as_str(),
            "ann@example.com"
        );
        for bad in [
            "",
            "ann",
            "ann@",
            "@example.com",
            "ann@example",
            "a b@example.com",
            "a@b@c.d",
        ] {
            assert!(Email::parse(bad).is_err(), "{bad:?} should be rejected");
        }
        let long = format!("{}@example.com", "a".repeat(180));
        assert!(Email::parse(&long).is_err());
    }

    #[test]
    fn password_length_is_counted_in_characters() {
        assert!(Password::parse("short").is_err());
        assert!(Password::parse("ééééééé").is_err());
        assert!(Password::parse("éééééééé").is_ok());
        assert!(Password::parse(&"x".repeat(129)).is_err());
    }

    #[test]
    fn display_name_is_trimmed_and_rejects_control_characters() {
        assert_eq!(DisplayName::parse("  Ann  ").unwrap().as_str(), "Ann");
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("An\u{7}n").is_err());
        assert!(DisplayName::parse(&"n".repeat(65)).is_err());
    }

    proptest::proptest! {
        #[test]
        fn an_accepted_email_is_lower_case_trimmed_and_has_one_at(raw in proptest::prelude::any::<String>()) {
            if let Ok(email) = Email::parse(&raw) {
                let e = email.as_str();
                proptest::prop_assert_eq!(e, e.trim());
                proptest::prop_assert_eq!(e.to_lowercase(), e);
                proptest::prop_assert_eq!(e.matches('@').count(), 1);
                proptest::prop_assert!(e.chars().count() <= 191);
                proptest::prop_assert!(!e.chars().any(|c| c.is_control() || c.is_whitespace()));
            }
        }

        #[test]
        fn plausible_emails_are_accepted(local in "[a-z0-9._+-]{1,30}", domain in "[a-z0-9-]{1,20}\\.[a-z]{2,6}") {
            let raw = format!("{local}@{domain}");
            proptest::prop_assert!(Email::parse(&raw).is_ok(), "{}", raw);
        }

        #[test]
        fn password_accepts_exactly_8_to_128_characters(raw in proptest::prelude::any::<String>()) {
            let n = raw.chars().count();
            proptest::prop_assert_eq!(Password::parse(&raw).is_ok(), (8..=128).contains(&n));
        }

        #[test]
        fn an_accepted_display_name_is_a_clean_label(raw in proptest::prelude::any::<String>()) {
            if let Ok(name) = DisplayName::parse(&raw) {
                let n = name.as_str();
                proptest::prop_assert_eq!(n, n.trim());
                proptest::prop_assert!((1..=64).contains(&n.chars().count()));
                proptest::prop_assert!(super::super::text::check_label(n).is_ok());
            }
        }
    }
}
