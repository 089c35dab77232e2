//! The directory authorities of a network, and how many of them must sign a
//! topology document before anyone believes it.
//!
//! One authorities file lists them all, the same file on every authority,
//! node and client: one authority per line, `<base58 ed25519 key>
//! <http://host:port>`; `#` starts a comment; blank lines are allowed.
//! A document is believed when at least `threshold` of the listed keys
//! signed it (default: a majority, `N/2 + 1`).

use crate::address::{decode_key, encode_key, KEY_LENGTH};
use crate::error::{Error, Result};
use std::collections::HashSet;

/// Most authorities a network may list (and so most signatures a document
/// carries that anyone looks at): bounds the work of a verification.
pub const MAX_AUTHORITIES: usize = 32;

/// One directory authority: its ed25519 key and where it serves.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Authority {
    /// Its ed25519 public key (what signs its votes and documents).
    pub key: [u8; KEY_LENGTH],
    /// `http://host:port`, no trailing slash.
    pub url: String,
}

impl Authority {
    /// The key as base58.
    pub fn key_b58(&self) -> String {
        encode_key(&self.key)
    }
}

/// The authorities of a network and the threshold: checked (1 to
/// [`MAX_AUTHORITIES`] authorities, distinct keys and URLs, `1 <= threshold
/// <= N`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorities {
    list: Vec<Authority>,
    threshold: usize,
}

/// A majority of `n` authorities: `n / 2 + 1` (rounded down, plus one).
pub fn majority(n: usize) -> usize {
    n / 2 + 1
}

impl Authorities {
    /// `threshold` defaults to a [`majority`] of the list.
    pub fn new(list: Vec<Authority>, threshold: Option<usize>) -> Result<Self> {
        let n = list.len();
        if n == 0 {
            return Err(Error::Topology("no directory authority is listed".into()));
        }
        if n > MAX_AUTHORITIES {
            return Err(Error::Topology(format!("{n} authorities listed; at most {MAX_AUTHORITIES} are allowed")));
        }
        let mut keys = HashSet::new();
        let mut urls = HashSet::new();
        for a in &list {
            if !keys.insert(a.key) {
                return Err(Error::Topology(format!("authority key {} is listed twice", a.key_b58())));
            }
            if !urls.insert(a.url.to_ascii_lowercase()) {
                return Err(Error::Topology(format!("authority URL {} is listed twice", a.url)));
            }
        }
        let threshold = threshold.unwrap_or_else(|| majority(n));
        if threshold == 0 || threshold > n {
            return Err(Error::Topology(format!("threshold {threshold} is not between 1 and the {n} authorities")));
        }
        Ok(Authorities { list, threshold })
    }

    /// One authority (a network of one directory), threshold 1.
    pub fn single(key: [u8; KEY_LENGTH], url: impl Into<String>) -> Self {
        Authorities { list: vec![Authority { key, url: normalise_url(&url.into()) }], threshold: 1 }
    }

    /// Parses an authorities file (see the module doc); `threshold` as in [`Authorities::new`].
    pub fn parse(text: &str, threshold: Option<usize>) -> Result<Self> {
        Authorities::new(parse_authorities_file(text)?, threshold)
    }

    /// Every authority, in file order.
    pub fn list(&self) -> &[Authority] {
        &self.list
    }

    /// How many valid signatures by listed keys a document needs.
    pub fn threshold(&self) -> usize {
        self.threshold
    }

    /// The authority with this key.
    pub fn get(&self, key: &[u8; KEY_LENGTH]) -> Option<&Authority> {
        self.list.iter().find(|a| &a.key == key)
    }

    /// Whether `key` is one of the authorities'.
    pub fn contains(&self, key: &[u8; KEY_LENGTH]) -> bool {
        self.get(key).is_some()
    }

    /// The file text for these authorities (what [`Authorities::parse`] reads).
    pub fn to_file_text(&self) -> String {
        self.list.iter().map(|a| format!("{} {}\n", a.key_b58(), a.url)).collect()
    }
}

fn normalise_url(url: &str) -> String {
    url.trim().trim_end_matches('/').to_string()
}

/// The lines of an authorities file, in order; a bad line is an error naming it.
pub fn parse_authorities_file(text: &str) -> Result<Vec<Authority>> {
    let mut list = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let bad = |why: String| Error::Topology(format!("authorities file line {}: {why}", i + 1));
        let mut words = line.split_whitespace();
        let (Some(key), Some(url), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("expected `<base58 ed25519 key> <http://host:port>`".into()));
        };
        let key = decode_key(key, "authority key").map_err(|e| bad(e.to_string()))?;
        if ed25519_dalek::VerifyingKey::from_bytes(&key).is_err() {
            return Err(bad("the key is not an ed25519 public key".into()));
        }
        let url = normalise_url(url);
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        if rest.is_none_or(|r| r.is_empty() || r.contains(char::is_whitespace)) {
            return Err(bad(format!("{url} is not an http:// or https:// URL")));
        }
        list.push(Authority { key, url });
    }
    Ok(list)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::SigningKey;

    fn key(seed: u8) -> [u8; 32] {
        SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes()
    }

    #[test]
    fn a_file_lists_keys_and_urls_with_comments_and_the_threshold_defaults_to_a_majority() {
        let text = format!(
            "# our authorities\n\n{} http://10.0.0.1:8080/\n  {} http://10.0.0.2:8080  # second\n{} https://a.example\n",
            encode_key(&key(1)),
            encode_key(&key(2)),
            encode_key(&key(3))
        );
        let a = Authorities::parse(&text, None).unwrap();
        assert_eq!(a.list().len(), 3);
        assert_eq!(a.threshold(), 2);
        assert_eq!(a.list()[0], Authority { key: key(1), url: "http://10.0.0.1:8080".into() });
        assert!(a.contains(&key(3)) && !a.contains(&key(4)));
        assert_eq!(Authorities::parse(&a.to_file_text(), None).unwrap(), a);
        assert_eq!(Authorities::parse(&text, Some(3)).unwrap().threshold(), 3);
        assert_eq!((majority(1), majority(2), majority(3), majority(4), majority(5)), (1, 2, 2, 3, 3));
    }

    #[test]
    fn bad_files_are_refused_naming_the_line() {
        let k = encode_key(&key(1));
        for (text, want) in [
            (format!("\n{k}\n"), "line 2"),
            (format!("{k} http://a:1 extra"), "line 1"),
            ("abc http://a:1".to_string(), "line 1"),
            (format!("{k} ftp://a:1"), "not an http"),
            (format!("{k} http://"), "not an http"),
        ] {
            let e = parse_authorities_file(&text).unwrap_err().to_string();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        let e = Authorities::parse("# nothing\n", None).unwrap_err().to_string();
        assert!(e.contains("no directory authority"), "{e}");
        let twice = format!("{k} http://a:1\n{k} http://b:1\n");
        assert!(Authorities::parse(&twice, None).unwrap_err().to_string().contains("listed twice"));
        let same_url = format!("{k} http://a:1\n{} http://A:1/\n", encode_key(&key(2)));
        assert!(Authorities::parse(&same_url, None).unwrap_err().to_string().contains("listed twice"));
        let one = format!("{k} http://a:1\n");
        assert!(Authorities::parse(&one, Some(2)).unwrap_err().to_string().contains("threshold 2"));
        assert!(Authorities::parse(&one, Some(0)).is_err());
    }
}
