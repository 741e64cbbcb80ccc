//! An OpenID Connect authorization code as a browser brings it back, with what proves the
//! sign-in is its own: the PKCE code verifier, the redirect URI and the nonce.

use super::{FieldViolation, Invalid, Violations, char_len};

/// Visible ASCII, no space: what codes, nonces and URIs are made of.
fn visible_ascii(s: &str) -> bool {
    s.bytes().all(|b| b.is_ascii_graphic())
}

/// An authorization code with its PKCE verifier, redirect URI and nonce, each checked for
/// shape (the provider and the ID token decide whether they are right).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeGrant {
    code: String,
    code_verifier: String,
    redirect_uri: String,
    nonce: String,
}

impl CodeGrant {
    pub const MAX_CODE_CHARS: usize = 2048;
    pub const MAX_REDIRECT_URI_CHARS: usize = 2048;
    pub const MAX_NONCE_CHARS: usize = 255;

    /// Every bad field at once. The values are kept exactly as sent: the provider compares
    /// them byte for byte with what the authorization request carried.
    pub fn parse(
        code: &str,
        code_verifier: &str,
        redirect_uri: &str,
        nonce: &str,
    ) -> Result<Self, Invalid> {
        let mut violations = Violations::new();
        let code = violations.check(parse_code(code));
        let code_verifier = violations.check(parse_code_verifier(code_verifier));
        let redirect_uri = violations.check(parse_redirect_uri(redirect_uri));
        let nonce = violations.check(parse_nonce(nonce));
        violations.finish()?;
        Ok(Self {
            code: code.unwrap(),
            code_verifier: code_verifier.unwrap(),
            redirect_uri: redirect_uri.unwrap(),
            nonce: nonce.unwrap(),
        })
    }

    pub fn code(&self) -> &str {
        &self.code
    }

    pub fn code_verifier(&self) -> &str {
        &self.code_verifier
    }

    pub fn redirect_uri(&self) -> &str {
        &self.redirect_uri
    }

    pub fn nonce(&self) -> &str {
        &self.nonce
    }
}

fn parse_code(raw: &str) -> Result<String, FieldViolation> {
    if raw.is_empty() {
        return Err(FieldViolation::new("code", "Code must not be empty."));
    }
    if char_len(raw) > CodeGrant::MAX_CODE_CHARS || !visible_ascii(raw) {
        return Err(FieldViolation::new(
            "code",
            "Code must be the authorization code the identity provider returned.",
        ));
    }
    Ok(raw.to_owned())
}

/// RFC 7636 section 4.1: 43 to 128 characters of `[A-Z] / [a-z] / [0-9] / "-" / "." / "_" / "~"`.
fn parse_code_verifier(raw: &str) -> Result<String, FieldViolation> {
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~');
    if !(43..=128).contains(&raw.len()) || !raw.bytes().all(allowed) {
        return Err(FieldViolation::new(
            "code_verifier",
            "Code verifier must be 43 to 128 characters of letters, digits, '-', '.', '_' and '~'.",
        ));
    }
    Ok(raw.to_owned())
}

fn parse_redirect_uri(raw: &str) -> Result<String, FieldViolation> {
    let invalid = || {
        FieldViolation::new(
            "redirect_uri",
            "Redirect URI must be an http or https URL without a fragment.",
        )
    };
    if char_len(raw) > CodeGrant::MAX_REDIRECT_URI_CHARS || !visible_ascii(raw) {
        return Err(invalid());
    }
    let url = url::Url::parse(raw).map_err(|_| invalid())?;
    if !matches!(url.scheme(), "http" | "https") || url.fragment().is_some() {
        return Err(invalid());
    }
    Ok(raw.to_owned())
}

fn parse_nonce(raw: &str) -> Result<String, FieldViolation> {
    if raw.is_empty() {
        return Err(FieldViolation::new("nonce", "Nonce must not be empty."));
    }
    if char_len(raw) > CodeGrant::MAX_NONCE_CHARS || !visible_ascii(raw) {
        return Err(FieldViolation::new(
            "nonce",
            "Nonce must be at most 255 visible ASCII characters.",
        ));
    }
    Ok(raw.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";

    fn fields(err: Invalid) -> Vec<&'static str> {
        err.0.into_iter().map(|v| v.field).collect()
    }

    #[test]
    fn a_well_formed_grant_is_kept_exactly() {
        let grant = CodeGrant::parse(
            "4/0Ab_c-d",
            VERIFIER,
            "http://127.0.0.1:50051/auth/callback",
            "n-0S6_WzA2Mj",
        )
        .unwrap();
        assert_eq!(grant.code(), "4/0Ab_c-d");
        assert_eq!(grant.code_verifier(), VERIFIER);
        assert_eq!(grant.redirect_uri(), "http://127.0.0.1:50051/auth/callback");
        assert_eq!(grant.nonce(), "n-0S6_WzA2Mj");
    }

    #[test]
    fn every_bad_field_is_named() {
        let err = CodeGrant::parse("", "short", "javascript:alert(1)", "").unwrap_err();
        assert_eq!(
            fields(err),
            ["code", "code_verifier", "redirect_uri", "nonce"]
        );
        let err = CodeGrant::parse(
            "code with spaces",
            &format!("{VERIFIER}+/="),
            "https://example.com/cb#fragment",
            "n\u{0}",
        )
        .unwrap_err();
        assert_eq!(
            fields(err),
            ["code", "code_verifier", "redirect_uri", "nonce"]
        );
    }

    proptest::proptest! {
        #[test]
        fn an_accepted_code_nonce_or_redirect_uri_is_short_visible_ascii(raw in proptest::prelude::any::<String>()) {
            let accepted = [parse_code(&raw), parse_nonce(&raw), parse_redirect_uri(&raw)];
            for value in accepted.into_iter().flatten() {
                proptest::prop_assert_eq!(&value, &raw);
                proptest::prop_assert!(!value.is_empty() && value.len() <= 2048);
                proptest::prop_assert!(value.bytes().all(|b| (0x21..=0x7e).contains(&b)));
            }
        }

        #[test]
        fn an_accepted_code_verifier_has_the_length_rfc_7636_requires(raw in "[A-Za-z0-9._~+/= -]{0,140}") {
            if let Ok(value) = parse_code_verifier(&raw) {
                proptest::prop_assert!((43..=128).contains(&value.len()));
                proptest::prop_assert!(!value.contains(['+', '/', '=', ' ']));
            }
        }
    }
}
