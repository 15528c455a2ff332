//! Players and the people who vote: accounts, e-mail addresses, passwords.

use std::fmt;

use crate::Timestamp;
use crate::trust::NetworkTag;

/// Database id of a user.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UserId(pub i64);

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A syntactically valid e-mail address, normalised so that two spellings
/// of one address compare equal: Unicode compatibility form (NFKC: full-width
/// letters become ASCII, composed and decomposed accents one form), then
/// full Unicode case folding and NFKC again (Unicode's NFKC_Casefold, so that
/// `ΑΣ` and `ασ`, `STRASSE` and `straße` are one address). Invisible characters (zero-width spaces and joiners, bidi
/// marks, soft hyphens) make an address invalid rather than a different one.
///
/// Two forms are kept: the key ([`Email::as_str`]), by which accounts are
/// told apart and found, and the address as typed ([`Email::address`]:
/// NFKC, trimmed), to which mail is sent and which is shown (folding can
/// change the mailbox a server delivers to: `straße` is not `strasse`).
#[derive(Debug, Clone)]
pub struct Email {
    key: String,
    address: String,
}

impl PartialEq for Email {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for Email {}

impl std::hash::Hash for Email {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

/// Why a string is not an acceptable e-mail address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("El correo electrónico no es válido.")]
pub struct InvalidEmail;

impl Email {
    /// Longest address accepted (RFC 5321 path limit).
    pub const MAX_LEN: usize = 254;

    /// Checks the shape `local@domain.tld` and normalises it.
    ///
    /// # Errors
    /// [`InvalidEmail`] for an empty or over-long value, whitespace, control
    /// or invisible characters, no `@`, more than one `@`, an empty local
    /// part, or a domain without a dot or with empty labels.
    pub fn parse(raw: &str) -> Result<Self, InvalidEmail> {
        use unicode_normalization::UnicodeNormalization;
        if raw.chars().any(is_invisible) {
            return Err(InvalidEmail);
        }
        let normal: String = raw.trim().nfkc().collect();
        let value = normal.as_str();
        if value.is_empty() || value.len() > Self::MAX_LEN || value.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(InvalidEmail);
        }
        let (local, domain) = value.split_once('@').ok_or(InvalidEmail)?;
        if local.is_empty() || domain.contains('@') || !domain.contains('.') {
            return Err(InvalidEmail);
        }
        if domain.split('.').any(str::is_empty) {
            return Err(InvalidEmail);
        }
        let folded: String = caseless::default_case_fold_str(value).nfkc().collect();
        if folded.len() > Self::MAX_LEN {
            return Err(InvalidEmail);
        }
        Ok(Self { key: folded, address: value.to_owned() })
    }

    /// The key: the address normalised and case-folded, which tells
    /// accounts apart.
    pub fn as_str(&self) -> &str {
        &self.key
    }

    /// The address as typed (NFKC, trimmed): where mail goes.
    pub fn address(&self) -> &str {
        &self.address
    }
}

impl fmt::Display for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.key)
    }
}

/// Characters that show nothing (format characters and fillers): two
/// addresses that differ only by them would look the same to people.
fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}' | '\u{180B}'..='\u{180F}'
        | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}'
        | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFF8}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// A plain-text password on its way to the hasher. Its `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

/// Why a password is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    /// Fewer than [`Password::MIN_CHARS`] characters.
    #[error("La contraseña debe tener al menos 8 caracteres.")]
    TooShort,
    /// More than [`Password::MAX_BYTES`] bytes (hashing cost guard).
    #[error("La contraseña no puede superar 1024 bytes.")]
    TooLong,
    /// Nothing but spaces (or other blank characters).
    #[error("La contraseña no puede estar formada solo por espacios.")]
    Blank,
}

impl Password {
    /// Fewest characters (Unicode scalar values) accepted.
    pub const MIN_CHARS: usize = 8;
    /// Most bytes accepted, so nobody makes the server hash megabytes.
    pub const MAX_BYTES: usize = 1024;

    /// Applies the password policy to a new password.
    ///
    /// # Errors
    /// [`WeakPassword`] when it is too short or too long.
    pub fn new(raw: &str) -> Result<Self, WeakPassword> {
        if raw.len() > Self::MAX_BYTES {
            return Err(WeakPassword::TooLong);
        }
        if raw.chars().count() < Self::MIN_CHARS {
            return Err(WeakPassword::TooShort);
        }
        if raw.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
            return Err(WeakPassword::Blank);
        }
        Ok(Self(raw.to_owned()))
    }

    /// Wraps a password typed at login, without the policy (an old password
    /// may predate it; the hash decides).
    pub fn candidate(raw: &str) -> Self {
        Self(raw.to_owned())
    }

    /// The secret itself, for the hasher only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(<redacted>)")
    }
}

/// A password hash in PHC string format (`$argon2id$...`).
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(pub String);

impl fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PasswordHash(<redacted>)")
    }
}

/// What sign-up hands to the repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewUser {
    pub first_name: String,
    pub last_name: String,
    pub email: Email,
    pub password_hash: PasswordHash,
    pub city: String,
    pub country: String,
    pub created_at: Timestamp,
    /// The keyed pseudonym of the network the sign-up came from (for the
    /// vote audit), when the client's address was known.
    pub signup_network: Option<NetworkTag>,
}

/// A registered person: a player who uploads, a voter, or both.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub id: UserId,
    pub first_name: String,
    pub last_name: String,
    pub email: Email,
    pub password_hash: PasswordHash,
    pub city: String,
    pub country: String,
    pub created_at: Timestamp,
    /// Whether the person opened the verification link sent to the address.
    pub email_verified: bool,
}

impl User {
    /// The public name shown in listings and rankings.
    pub fn username(&self) -> String {
        display_name(&self.first_name, &self.last_name)
    }
}

/// `first last`, the way a player is named in public.
pub fn display_name(first_name: &str, last_name: &str) -> String {
    format!("{first_name} {last_name}")
}

/// A city as compared in filters: Unicode-normalised (NFKC), case-folded
/// and without accents or other combining marks, its spaces collapsed, so
/// "Bogota", "BOGOTÁ" and a decomposed "Bogotá" are one city. The display
/// keeps what the player wrote.
pub fn city_key(city: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    use unicode_normalization::char::is_combining_mark;
    let bare: String = city.nfkd().filter(|c| !is_combining_mark(*c)).collect();
    let folded: String = caseless::default_case_fold_str(&bare).nfkc().collect();
    folded.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cities_match_without_accents_case_or_form() {
        let bogota = city_key("Bogotá");
        assert_eq!(bogota, "bogota");
        for typed in ["Bogota", "BOGOTÁ", "  bogotá ", "Bogota\u{301}", "ＢＯＧＯＴＡ"] {
            assert_eq!(city_key(typed), bogota, "{typed:?}");
        }
        assert_eq!(city_key("San  Andrés\tIsla"), "san andres isla", "spaces collapse");
        assert_eq!(city_key("Cúcuta"), city_key("CUCUTA"));
        assert_eq!(city_key("Peñalosa"), "penalosa", "ñ compares as n, as fans type it");
        assert_ne!(city_key("Cali"), city_key("Calima"));
    }

    #[test]
    fn email_is_lower_cased_and_trimmed() {
        assert_eq!(Email::parse("  Ana@Example.COM ").unwrap().as_str(), "ana@example.com");
    }

    #[test]
    fn addresses_compare_by_full_case_folding() {
        // Greek: `to_lowercase` makes a final Σ into ς, folding makes every sigma σ.
        assert_eq!(Email::parse("ΑΣ@example.com").unwrap(), Email::parse("ασ@example.com").unwrap());
        assert_eq!(Email::parse("ας@example.com").unwrap(), Email::parse("ασ@example.com").unwrap());
        assert_eq!(Email::parse("STRASSE@example.com").unwrap(), Email::parse("straße@example.com").unwrap());
        assert_eq!(Email::parse("ﬁna@example.com").unwrap().as_str(), "fina@example.com", "ligatures unfold");
        let typed = Email::parse(" Straße@Example.com ").unwrap();
        assert_eq!((typed.as_str(), typed.address()), ("strasse@example.com", "Straße@Example.com"), "mail goes where it was typed");
        assert_ne!(Email::parse("ana@example.com").unwrap(), Email::parse("ana1@example.com").unwrap());
    }

    #[test]
    fn malformed_emails_are_refused() {
        for bad in ["", "ana", "ana@", "@x.com", "ana@x", "a b@x.com", "a@@x.com", "a@x..com", "a@.com"] {
            assert_eq!(Email::parse(bad), Err(InvalidEmail), "{bad:?} accepted");
        }
    }

    #[test]
    fn spellings_of_one_address_are_one_address() {
        let plain = Email::parse("ana@example.com").unwrap();
        // Full-width letters, and é composed (NFC) or as e + combining accent (NFD).
        assert_eq!(Email::parse("ＡＮＡ@ｅｘａｍｐｌｅ.ｃｏｍ").unwrap(), plain);
        assert_eq!(Email::parse("jos\u{e9}@example.com").unwrap(), Email::parse("jose\u{301}@example.com").unwrap());
        for invisible in [
            "ana\u{200B}@example.com",
            "a\u{200D}na@example.com",
            "\u{FEFF}ana@example.com",
            "ana@exam\u{AD}ple.com",
            "ana\u{202E}@example.com",
        ] {
            assert_eq!(Email::parse(invisible), Err(InvalidEmail), "{invisible:?} accepted");
        }
    }

    #[test]
    fn a_password_of_only_spaces_is_refused() {
        assert_eq!(Password::new("        "), Err(WeakPassword::Blank));
        assert_eq!(Password::new("\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}\u{3000}"), Err(WeakPassword::Blank));
        assert!(Password::new(" pass word ").is_ok(), "spaces inside a password are fine");
    }

    #[test]
    fn password_policy_counts_characters_not_bytes() {
        assert_eq!(Password::new("1234567"), Err(WeakPassword::TooShort));
        assert!(Password::new("12345678").is_ok());
        assert!(Password::new("ñññññññ").is_err());
        assert!(Password::new(&"x".repeat(2000)).is_err());
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let shown = format!("{:?} {:?}", Password::candidate("hunter22"), PasswordHash("$argon2id$x".into()));
        assert!(!shown.contains("hunter22") && !shown.contains("argon2id"), "{shown}");
    }

    #[test]
    fn city_key_ignores_case_beyond_ascii() {
        assert_eq!(city_key(" BOGOTÁ "), city_key("bogotá"));
    }
}
