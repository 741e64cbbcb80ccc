//! The text rules every free-text field obeys, in one place.
//!
//! Two kinds of text reach the server from clients:
//! - **Labels** — display names, member names, group titles: shown in lists and headers,
//!   next to other people's. No control characters at all, no bidirectional overrides or
//!   isolates (U+202E can make "evil" read "live"), no zero-width or other invisible
//!   characters (two names that look identical must not be two people).
//! - **Prose** — message bodies: newlines and tabs are fine; other C0/C1 controls are not
//!   (NUL in particular: PostgreSQL cannot store it); bidirectional marks are fine, since
//!   right-to-left writing needs them.
//!
//! Identifiers a client chooses (`client_message_id`) follow the label rules.

/// What is wrong with a piece of text, worded to finish "… must not contain …".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextFault {
    /// NUL, or a C0/C1 control character where none is allowed.
    Control,
    /// A bidirectional override, embedding or isolate, or a directional mark.
    Bidi,
    /// A zero-width or other invisible formatting character.
    Invisible,
}

impl TextFault {
    /// The end of a sentence such as "Name must not contain …".
    pub fn what(self) -> &'static str {
        match self {
            TextFault::Control => "control characters",
            TextFault::Bidi => "text direction override characters",
            TextFault::Invisible => "invisible characters",
        }
    }
}

/// Bidirectional formatting: LRE, RLE, PDF, LRO, RLO, LRI, RLI, FSI, PDI, and the marks
/// LRM, RLM and ALM.
fn is_bidi_control(c: char) -> bool {
    matches!(c, '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{200E}' | '\u{200F}' | '\u{061C}')
}

/// Characters that draw nothing: zero-width space/joiners, word joiner and invisible
/// operators, the byte-order mark, soft hyphen, combining grapheme joiner, Mongolian vowel
/// separator, Hangul fillers, interlinear annotation controls, and Unicode tag characters.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}'
            | '\u{034F}'
            | '\u{115F}'
            | '\u{1160}'
            | '\u{17B4}'
            | '\u{17B5}'
            | '\u{180E}'
            | '\u{200B}'..='\u{200D}'
            | '\u{2060}'..='\u{2064}'
            | '\u{206A}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{FFF9}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E007F}'
    )
}

/// A label: no control characters (newline and tab included), no bidi formatting, nothing
/// invisible. Returns the first fault found.
pub fn check_label(s: &str) -> Result<(), TextFault> {
    for c in s.chars() {
        if c.is_control() {
            return Err(TextFault::Control);
        }
        if is_bidi_control(c) {
            return Err(TextFault::Bidi);
        }
        if is_invisible(c) {
            return Err(TextFault::Invisible);
        }
    }
    Ok(())
}

/// Prose: newline and tab allowed; every other control character (NUL included) refused.
pub fn check_prose(s: &str) -> Result<(), TextFault> {
    if s.chars().any(|c| c.is_control() && c != '\n' && c != '\t') {
        return Err(TextFault::Control);
    }
    Ok(())
}

/// True when `s` holds nothing that could be seen: only whitespace and invisible
/// characters.
pub fn is_blank(s: &str) -> bool {
    s.chars().all(|c| c.is_whitespace() || is_invisible(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn labels_refuse_controls_bidi_and_invisible_characters() {
        assert_eq!(check_label("Ann Lee"), Ok(()));
        assert_eq!(check_label("Zoë 李"), Ok(()));
        assert_eq!(check_label("poison\u{0}"), Err(TextFault::Control));
        assert_eq!(check_label("two\nlines"), Err(TextFault::Control));
        assert_eq!(check_label("esc\u{1b}[31m"), Err(TextFault::Control));
        assert_eq!(check_label("c1\u{85}"), Err(TextFault::Control));
        assert_eq!(check_label("evil\u{202E}gnp.exe"), Err(TextFault::Bidi));
        assert_eq!(check_label("\u{2067}isolate"), Err(TextFault::Bidi));
        assert_eq!(check_label("A\u{200B}nn"), Err(TextFault::Invisible));
        assert_eq!(check_label("\u{FEFF}Ann"), Err(TextFault::Invisible));
        assert_eq!(check_label("tag\u{E0041}"), Err(TextFault::Invisible));
    }

    #[test]
    fn prose_keeps_newlines_tabs_and_right_to_left_marks() {
        assert_eq!(check_prose("line one\nline\ttwo"), Ok(()));
        assert_eq!(check_prose("שלום \u{200F}world"), Ok(()));
        assert_eq!(check_prose("poison\u{0}"), Err(TextFault::Control));
        assert_eq!(check_prose("bell\u{7}"), Err(TextFault::Control));
        assert_eq!(check_prose("cr\r\n"), Err(TextFault::Control));
        assert_eq!(check_prose("c1\u{9B}"), Err(TextFault::Control));
    }

    #[test]
    fn invisible_only_text_is_blank() {
        assert!(is_blank(" \u{200B}\u{FEFF}\t"));
        assert!(!is_blank(" a "));
    }

    proptest! {
        #[test]
        fn an_accepted_label_has_no_forbidden_character(s in any::<String>()) {
            if check_label(&s).is_ok() {
                prop_assert!(s.chars().all(|c| !c.is_control() && !is_bidi_control(c) && !is_invisible(c)));
            }
        }

        #[test]
        fn accepted_prose_never_holds_nul_or_other_controls(s in any::<String>()) {
            if check_prose(&s).is_ok() {
                prop_assert!(!s.contains('\0'));
                prop_assert!(s.chars().all(|c| !c.is_control() || c == '\n' || c == '\t'));
            }
        }

        #[test]
        fn inserting_a_forbidden_character_anywhere_is_caught(
            s in "[a-zA-Z0-9 ]{0,20}",
            at in 0usize..21,
            bad in prop::sample::select(vec!['\0', '\u{1b}', '\u{7f}', '\u{85}', '\u{202E}', '\u{2066}', '\u{200B}', '\u{FEFF}']),
        ) {
            let at = at.min(s.len());
            let mut text = s.clone();
            text.insert(at, bad);
            prop_assert!(check_label(&text).is_err());
        }
    }
}
