//! Group fields: title, passcode, and the name a member joins with.

use secrecy::SecretString;

use super::{FieldViolation, char_len, check_label, parse_name};

/// A group title: trimmed, 4 to 191 characters, a label by the text rules.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupTitle(String);

impl GroupTitle {
    pub fn parse(raw: &str) -> Result<Self, FieldViolation> {
        let title = raw.trim();
        let len = char_len(title);
        if len < 4 {
            return Err(FieldViolation::new(
                "title",
                "Chat title must be at least 4 characters long.",
            ));
        }
        if len > 191 {
            return Err(FieldViolation::new(
                "title",
                "Chat title must be at most 191 characters long.",
            ));
        }
        check_label("title", "Chat title", title)?;
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
                "Chat passcode must be at least 4 characters long.",
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

    /// The form names are compared in: "Bob", "BOB" and "bob" are one name in a group
    /// (and so is "Ann  Lee" with "ann lee").
    pub fn key(&self) -> String {
        name_key(&self.0)
    }
}

/// [`MemberName::key`] of any name (e.g. the owner's, which was parsed as a `DisplayName`).
/// The `group_members.name_key` migration computes the same.
pub fn name_key(name: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    // Compatibility forms folded first, so that "Zoë" typed precomposed or with a
    // combining mark (or "ｂｏｂ" in full-width letters) is the same name.
    let folded: String = name
        .nfkc()
        .collect::<String>()
        .to_lowercase()
        .nfkc()
        .collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn title_uses_the_original_messages() {
        assert_eq!(
            GroupTitle::parse("abc").unwrap_err().description,
            "Chat title must be at least 4 characters long."
        );
        assert_eq!(GroupTitle::parse("  Rust  ").unwrap().as_str(), "Rust");
        assert!(GroupTitle::parse(&"t".repeat(192)).is_err());
        assert!(GroupTitle::parse(&"t".repeat(191)).is_ok());
    }

    #[test]
    fn titles_and_member_names_obey_the_label_rules() {
        for bad in [
            "Book\u{0}club",
            "Book\nclub",
            "Book \u{1b}[2Jclub",
            "Book\u{202E}club",
        ] {
            assert!(GroupTitle::parse(bad).is_err(), "{bad:?} should be refused");
        }
        assert_eq!(
            MemberName::parse("Bob\u{202E}").unwrap_err().description,
            "Name must not contain text direction override characters."
        );
        assert!(MemberName::parse("\u{200B}\u{200B}").is_err());
        assert!(MemberName::parse("B\u{200D}ob").is_err());
        assert_eq!(MemberName::parse(" Zoë ").unwrap().as_str(), "Zoë");
    }

    #[test]
    fn names_differing_in_case_or_spacing_share_a_key() {
        let key = |n: &str| MemberName::parse(n).unwrap().key();
        assert_eq!(key("Bob"), key("BOB"));
        assert_eq!(key("Ann  Lee"), key("ann lee"));
        assert_eq!(key("ZOË"), key("zoë"));
        assert_eq!(
            key("Zo\u{eb}"),
            key("Zoe\u{308}"),
            "precomposed or combining"
        );
        assert_eq!(key("ｂｏｂ"), key("bob"), "full-width letters");
        assert_ne!(key("Bob"), key("Rob"));
    }

    proptest::proptest! {
        #[test]
        fn an_accepted_title_is_trimmed_sized_and_clean(raw in proptest::prelude::any::<String>()) {
            if let Ok(title) = GroupTitle::parse(&raw) {
                let t = title.as_str();
                proptest::prop_assert_eq!(t, t.trim());
                proptest::prop_assert!((4..=191).contains(&t.chars().count()));
                proptest::prop_assert!(super::super::text::check_label(t).is_ok());
            }
        }

        #[test]
        fn an_accepted_member_name_is_trimmed_sized_and_clean(raw in proptest::prelude::any::<String>()) {
            if let Ok(name) = MemberName::parse(&raw) {
                let n = name.as_str();
                proptest::prop_assert_eq!(n, n.trim());
                proptest::prop_assert!((1..=64).contains(&n.chars().count()));
                proptest::prop_assert!(super::super::text::check_label(n).is_ok());
            }
        }

        #[test]
        fn passcode_accepts_exactly_4_to_25_characters(raw in proptest::prelude::any::<String>()) {
            let n = raw.chars().count();
            proptest::prop_assert_eq!(Passcode::parse(&raw).is_ok(), (4..=25).contains(&n));
        }
    }

    #[test]
    fn passcode_bounds() {
        assert_eq!(
            Passcode::parse("123").unwrap_err().description,
            "Chat passcode must be at least 4 characters long."
        );
        assert!(Passcode::parse("1234").is_ok());
        assert!(Passcode::parse(&"p".repeat(26)).is_err());
    }
}
