//! Users, roles and API tokens: pure parts (roles, password hashing, token format). The
//! database side is in [`crate::store`].

use std::fmt;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use cronfleet_common::FieldError;

/// What a user may do. Each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Reads everything.
    Viewer,
    /// Also runs, kills, pauses and resumes jobs.
    Operator,
    /// Also creates, updates and deletes jobs, and manages users and tokens.
    Admin,
}

impl Role {
    pub fn parse(raw: &str) -> Result<Self, FieldError> {
        match raw {
            "viewer" => Ok(Role::Viewer),
            "operator" => Ok(Role::Operator),
            "admin" => Ok(Role::Admin),
            other => Err(FieldError::new(
                "role",
                format!("{other:?} is not one of viewer, operator, admin"),
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Operator => "operator",
            Role::Admin => "admin",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// Longest password accepted (argon2 input stays bounded).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Checks a user name: 1-64 of `[A-Za-z0-9._@-]`.
pub fn check_user_name(name: &str) -> Result<(), FieldError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '@' | '-'));
    if ok {
        Ok(())
    } else {
        Err(FieldError::new(
            "name",
            "must be 1-64 of letters, digits, '.', '_', '@', '-'",
        ))
    }
}

/// Hashes a password with argon2id and a random salt, after checking its length.
pub fn hash_password(password: &str) -> Result<String, FieldError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(FieldError::new(
            "password",
            format!("must be at least {MIN_PASSWORD_CHARS} characters"),
        ));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(FieldError::new(
            "password",
            format!("must be at most {MAX_PASSWORD_BYTES} bytes"),
        ));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt)
        .map_err(|e| FieldError::new("password", format!("no randomness: {e}")))?;
    let salt =
        SaltString::encode_b64(&salt).map_err(|e| FieldError::new("password", e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| FieldError::new("password", e.to_string()))
}

/// The hash unknown user names are checked against, so that a sign-in for a name that does
/// not exist costs the same argon2 work as one for a name that does.
static DECOY_HASH: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| hash_password("a decoy nobody signs in with").unwrap_or_default());

/// Makes the decoy hash now, so that the first sign-in for an unknown name does not pay for it.
pub fn prepare_decoy() {
    std::sync::LazyLock::force(&DECOY_HASH);
}

/// Spends the work of checking `password`, for a user name that cannot sign in.
pub fn verify_decoy(password: &str) {
    let _ = verify_password(&DECOY_HASH, password);
}

/// Whether `password` matches a stored argon2 hash.
pub fn verify_password(hash: &str, password: &str) -> bool {
    password.len() <= MAX_PASSWORD_BYTES
        && PasswordHash::new(hash).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
}

/// A freshly made API token: `cft_<id>_<secret>`. Only the secret's hash is stored.
#[derive(Clone)]
pub struct NewToken {
    pub id: String,
    pub secret_hash: Vec<u8>,
    /// The whole token, to show once.
    pub plaintext: String,
}

impl fmt::Debug for NewToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

const TOKEN_PREFIX: &str = "cft_";

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Makes a token with 8 random bytes of id and 32 of secret.
pub fn new_token() -> Result<NewToken, getrandom::Error> {
    let mut id = [0u8; 8];
    let mut secret = [0u8; 32];
    getrandom::fill(&mut id)?;
    getrandom::fill(&mut secret)?;
    let (id, secret) = (hex(&id), hex(&secret));
    Ok(NewToken {
        secret_hash: secret_hash(&secret),
        plaintext: format!("{TOKEN_PREFIX}{id}_{secret}"),
        id,
    })
}

fn secret_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// Splits a presented token into its id and the hash of its secret.
pub fn parse_token(presented: &str) -> Option<(String, Vec<u8>)> {
    let rest = presented.strip_prefix(TOKEN_PREFIX)?;
    let (id, secret) = rest.split_once('_')?;
    let hexish = |s: &str, len: usize| s.len() == len && s.bytes().all(|b| b.is_ascii_hexdigit());
    (hexish(id, 16) && hexish(secret, 64)).then(|| (id.to_owned(), secret_hash(secret)))
}

/// Compares two secret hashes in constant time.
pub fn same_secret(stored: &[u8], presented: &[u8]) -> bool {
    stored.ct_eq(presented).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_are_ordered_and_parse() {
        assert!(Role::Viewer < Role::Operator && Role::Operator < Role::Admin);
        assert_eq!(Role::parse("operator").unwrap(), Role::Operator);
        assert_eq!(Role::parse("root").unwrap_err().field, "role");
    }

    #[test]
    fn passwords_hash_and_verify() {
        let hash = hash_password("correct horse battery").unwrap();
        assert!(hash.starts_with("$argon2id$"));
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse battery!"));
        assert!(!verify_password("not a hash", "x"));
        assert_eq!(hash_password("short").unwrap_err().field, "password");
    }

    #[test]
    fn tokens_round_trip_and_reject_garbage() {
        let token = new_token().unwrap();
        let (id, hash) = parse_token(&token.plaintext).unwrap();
        assert_eq!(id, token.id);
        assert!(same_secret(&token.secret_hash, &hash));
        let mut tampered = token.plaintext.clone();
        tampered.pop();
        tampered.push(if token.plaintext.ends_with('0') {
            '1'
        } else {
            '0'
        });
        let (_, other) = parse_token(&tampered).unwrap();
        assert!(!same_secret(&token.secret_hash, &other));
        for garbage in ["", "cft_", "Bearer x", "cft_zz_yy", &token.plaintext[1..]] {
            assert!(parse_token(garbage).is_none(), "{garbage}");
        }
    }

    #[test]
    fn user_names_are_checked() {
        assert!(check_user_name("alice@example.com").is_ok());
        for bad in ["", "a b", "<script>", &"x".repeat(65)] {
            assert!(check_user_name(bad).is_err(), "{bad}");
        }
    }
}
