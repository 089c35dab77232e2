//! `NymClient.start(authorities, options)`'s first argument, checked: a URL
//! string (one directory, as before) or a list of `{url, key}` (the
//! network's authorities, `options.threshold` of whose signatures a
//! topology needs; default a majority). The same checks as a line of an
//! authorities file; the list is what the identity's store keeps.

use nym_client_core::{decode_key, Authorities};
use serde::{Deserialize, Serialize};

/// One `{url, key}` of the list, as JS passes it (and the store keeps it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorityJs {
    /// `http://host:port` or `https://...`.
    pub url: String,
    /// The authority's base58 ed25519 key.
    pub key: String,
}

/// The authorities as the identity's store keeps them (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptAuthorities {
    /// In the order given.
    pub authorities: Vec<AuthorityJs>,
    /// Signatures a topology needs.
    pub threshold: usize,
}

impl KeptAuthorities {
    /// What to keep for `authorities`.
    pub fn of(authorities: &Authorities) -> Self {
        KeptAuthorities {
            authorities: authorities
                .list()
                .iter()
                .map(|a| AuthorityJs { url: a.url.clone(), key: a.key_b58() })
                .collect(),
            threshold: authorities.threshold(),
        }
    }
}

/// The first argument of `start`, checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Given {
    /// One directory's URL (no trailing slash): pinned by `options.directoryKey`
    /// or the key kept with the identity, else trusted on first use.
    Url(String),
    /// The network's authorities with their threshold.
    Authorities(Authorities),
}

/// Checks a URL: http:// or https://, no whitespace, no `#`.
pub fn check_url(url: &str, what: &str) -> Result<String, String> {
    let url = url.trim().trim_end_matches('/');
    let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
    match rest {
        Some(r) if !r.is_empty() && !r.contains(|c: char| c.is_whitespace() || c == '#') => Ok(url.to_string()),
        _ => Err(format!("{what} must start with http:// or https://, got '{url}'")),
    }
}

/// A URL string, or a list of `{url, key}` with `threshold` (default: a majority).
pub fn check(url: Option<&str>, list: Option<Vec<AuthorityJs>>, threshold: Option<f64>) -> Result<Given, String> {
    let threshold = match threshold {
        None => None,
        Some(t) if t.fract() == 0.0 && (1.0..=f64::from(u16::MAX)).contains(&t) => Some(t as usize),
        Some(t) => return Err(format!("option threshold must be a whole number of at least 1, got {t}")),
    };
    match (url, list) {
        (Some(url), None) => {
            if threshold.is_some() {
                return Err("option threshold needs a list of authorities ([{ url, key }, ...]), not one URL".into());
            }
            Ok(Given::Url(check_url(url, "the directory URL")?))
        }
        (None, Some(list)) => {
            let mut text = String::new();
            for (i, a) in list.iter().enumerate() {
                let url = check_url(&a.url, &format!("authorities[{i}].url"))?;
                let key = a.key.trim();
                decode_key(key, &format!("authorities[{i}].key")).map_err(|e| e.to_string())?;
                if key.contains(char::is_whitespace) {
                    return Err(format!("authorities[{i}].key is not a base58 key"));
                }
                // The authorities file's own checks (an ed25519 key...), line i + 1 for entry i.
                text.push_str(&format!("{key} {url}\n"));
            }
            let at_entry = |e: String| {
                let Some(rest) = e.split("authorities file line ").nth(1) else { return e };
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                match digits.parse::<usize>() {
                    Ok(line) => format!("authorities[{}]{}", line - 1, &rest[digits.len()..]),
                    Err(_) => e,
                }
            };
            Authorities::parse(&text, threshold).map(Given::Authorities).map_err(|e| at_entry(e.to_string()))
        }
        _ => {
            Err("the first argument must be the directory's URL or a list of authorities ([{ url, key }, ...])".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(seed: u8) -> String {
        nym_client_core::encode_key(&ed25519_dalek::SigningKey::from_bytes(&[seed; 32]).verifying_key().to_bytes())
    }

    fn list(n: u8) -> Vec<AuthorityJs> {
        (1..=n)
            .map(|i| AuthorityJs { url: format!("http://127.0.0.1:{}/", 4000 + u16::from(i)), key: key(i) })
            .collect()
    }

    #[test]
    fn a_url_or_a_list_with_a_threshold_defaulting_to_a_majority() {
        assert_eq!(check(Some(" http://a:1/ "), None, None), Ok(Given::Url("http://a:1".into())));
        let Ok(Given::Authorities(a)) = check(None, Some(list(3)), None) else { panic!() };
        assert_eq!((a.list().len(), a.threshold()), (3, 2));
        assert_eq!(a.list()[0].url, "http://127.0.0.1:4001");
        let Ok(Given::Authorities(a)) = check(None, Some(list(3)), Some(3.0)) else { panic!() };
        assert_eq!(a.threshold(), 3);
        let kept = KeptAuthorities::of(&a);
        assert_eq!(kept.authorities.len(), 3);
        assert_eq!(kept.threshold, 3);
    }

    #[test]
    fn bad_keys_urls_and_thresholds_are_refused_naming_the_entry() {
        let mut bad_key = list(3);
        bad_key[1].key = "nope".into();
        let e = check(None, Some(bad_key), None).unwrap_err();
        assert!(e.contains("authorities[1].key"), "{e}");
        let mut bad_url = list(3);
        bad_url[2].url = "ftp://a:1".into();
        let e = check(None, Some(bad_url), None).unwrap_err();
        assert!(e.contains("authorities[2].url"), "{e}");
        let mut hash = list(2);
        hash[0].url = "http://a:1#x".into();
        assert!(check(None, Some(hash), None).unwrap_err().contains("authorities[0].url"));
        let mut twice = list(2);
        twice[1].key = twice[0].key.clone();
        assert!(check(None, Some(twice), None).unwrap_err().contains("listed twice"));
        assert!(check(None, Some(list(3)), Some(4.0)).unwrap_err().contains("threshold 4"));
        assert!(check(None, Some(list(3)), Some(1.5)).unwrap_err().contains("whole number"));
        assert!(check(None, Some(list(3)), Some(0.0)).unwrap_err().contains("whole number"));
        assert!(check(None, Some(Vec::new()), None).unwrap_err().contains("no directory authority"));
        assert!(check(Some("http://a:1"), None, Some(1.0)).unwrap_err().contains("needs a list"));
        assert!(check(Some("a:1"), None, None).unwrap_err().contains("http://"));
        assert!(check(None, None, None).is_err());
    }
}
