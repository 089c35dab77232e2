//! Which web pages may use the local websocket API.
//!
//! A browser lets any page open a websocket to 127.0.0.1, and tells the
//! server which page it is in the `Origin` header. Without a check, any site
//! the user visits could read the user's address, send as the user and take
//! the messages kept for the user's application. So an upgrade that carries
//! an `Origin` is refused (HTTP 403) unless that origin is allowed; programs
//! (Python, Go, Rust, websocat) send no `Origin` and are served as before.
//!
//! An allowed entry is an origin, `scheme://host[:port]` (http or https).
//! Without a port it allows that scheme and host on any port; with one, only
//! that port (a scheme's default port may be given or left out alike).
//! The default allows pages served from loopback only.

use std::fmt;

/// `[socket] allowed_origins` when the config says nothing.
pub fn default_allowed_origins() -> Vec<String> {
    ["http://localhost", "http://127.0.0.1", "http://[::1]"].into_iter().map(String::from).collect()
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    /// `None`: the scheme's default port (in an allowed entry: any port).
    port: Option<u16>,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.scheme, self.host)?;
        match self.port {
            Some(p) => write!(f, ":{p}"),
            None => Ok(()),
        }
    }
}

fn parse(text: &str) -> Result<Origin, String> {
    let lower = text.trim().to_ascii_lowercase();
    let (scheme, rest) = lower.split_once("://").ok_or_else(|| {
        format!("'{text}' is not an origin (expected scheme://host[:port], e.g. https://app.example.com)")
    })?;
    let default_port = match scheme {
        "http" => 80,
        "https" => 443,
        _ => return Err(format!("'{text}': only http and https origins can be allowed")),
    };
    if rest.contains(['/', '?', '#', '@']) {
        return Err(format!("'{text}' is not an origin: no path, query or user part (just scheme://host[:port])"));
    }
    let (host, port) = if let Some(bracketed) = rest.strip_prefix('[') {
        let (inner, after) = bracketed.split_once(']').ok_or_else(|| format!("'{text}': unclosed '[' in the host"))?;
        (format!("[{inner}]"), after.strip_prefix(':'))
    } else {
        match rest.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), Some(p)),
            None => (rest.to_string(), None),
        }
    };
    if host.is_empty() || host == "[]" {
        return Err(format!("'{text}' has no host"));
    }
    let port = match port {
        None => None,
        Some(p) => Some(p.parse::<u16>().map_err(|_| format!("'{text}': '{p}' is not a port number"))?),
    };
    Ok(Origin { scheme: scheme.to_string(), host, port: port.filter(|p| *p != default_port) })
}

/// The allowed origins, checked.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    allowed: Vec<Origin>,
}

impl OriginPolicy {
    /// Fails on the first entry that is not an origin, saying why.
    pub fn new(allowed: &[String]) -> Result<Self, String> {
        let allowed = allowed.iter().map(|a| parse(a)).collect::<Result<Vec<_>, _>>()?;
        Ok(OriginPolicy { allowed })
    }

    /// Whether a page of `origin` (the header's value) may connect. `null`
    /// (sandboxed frames, `file:` pages) and anything unparsable are refused.
    pub fn allows(&self, origin: &str) -> bool {
        let Ok(origin) = parse(origin) else { return false };
        self.allowed
            .iter()
            .any(|a| a.scheme == origin.scheme && a.host == origin.host && (a.port.is_none() || a.port == origin.port))
    }

    /// For the start-up log line.
    pub fn describe(&self) -> String {
        if self.allowed.is_empty() {
            return "none".into();
        }
        self.allowed
            .iter()
            .map(|a| if a.port.is_some() { a.to_string() } else { format!("{a}[:any port]") })
            .collect::<Vec<_>>()
            .join(", ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_pages_are_allowed_by_default_and_nothing_else() {
        let p = OriginPolicy::new(&default_allowed_origins()).unwrap();
        for ok in [
            "http://localhost",
            "http://localhost:3000",
            "http://127.0.0.1:8080",
            "HTTP://LocalHost:1",
            "http://[::1]:9",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "https://evil.example.com",
            "null",
            "",
            "http://localhost.evil.example",
            "http://127.0.0.1.nip.io",
            "https://localhost",
            "file://",
            "http://evil.example/localhost",
            "http://localhost:99999",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
    }

    #[test]
    fn entries_with_and_without_ports() {
        let p = OriginPolicy::new(&["https://app.example.com".into(), "http://dev.example:8443".into()]).unwrap();
        assert!(p.allows("https://app.example.com"));
        assert!(p.allows("https://app.example.com:443"));
        assert!(p.allows("https://app.example.com:4443"));
        assert!(!p.allows("http://app.example.com"));
        assert!(p.allows("http://dev.example:8443"));
        assert!(!p.allows("http://dev.example:8444"));
        assert!(!p.allows("http://dev.example"));
        assert!(!p.allows("http://localhost:3000"), "an explicit list replaces the loopback default");
        assert_eq!(
            OriginPolicy::new(&["http://localhost:80".into()]).unwrap().describe(),
            "http://localhost[:any port]"
        );
    }

    #[test]
    fn bad_entries_say_what_is_wrong() {
        for (entry, needle) in [
            ("app.example.com", "expected scheme://host"),
            ("ftp://x", "only http and https"),
            ("https://x/app", "no path"),
            ("https://:8080", "no host"),
            ("https://x:http", "not a port number"),
            ("https://[::1", "unclosed"),
        ] {
            let e = OriginPolicy::new(&[entry.into()]).unwrap_err();
            assert!(e.contains(needle), "{entry}: {e}");
        }
    }
}
