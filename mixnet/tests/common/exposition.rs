//! The Prometheus text format, read back: what the tests make of a node's
//! `GET /metrics` answer (the nodes only write it, `nym_mixnet::metrics`).

/// One sample of exposition text: name, labels, value.
pub type Sample = (String, Vec<(String, String)>, f64);

/// Parses exposition text (what this module writes: one sample a line,
/// `name{k="v",...} value`, `#` lines are comments); an error names the
/// first line that is not a sample.
pub fn parse(text: &str) -> std::result::Result<Vec<Sample>, String> {
    let mut out = Vec::new();
    for (n, line) in text.lines().enumerate() {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |why: &str| format!("line {}: {why}: {line}", n + 1);
        let name_end = line.find(['{', ' ']).ok_or_else(|| bad("no value"))?;
        let name = &line[..name_end];
        let valid_name = name
            .chars()
            .enumerate()
            .all(|(i, c)| c.is_ascii_alphabetic() || c == '_' || c == ':' || (i > 0 && c.is_ascii_digit()));
        if name.is_empty() || !valid_name {
            return Err(bad("bad metric name"));
        }
        let mut rest = &line[name_end..];
        let mut labels = Vec::new();
        if let Some(inner) = rest.strip_prefix('{') {
            let (parsed, used) = parse_labels(inner).map_err(|why| bad(&why))?;
            labels = parsed;
            rest = &inner[used..];
        }
        let value = rest.strip_prefix(' ').ok_or_else(|| bad("no space before the value"))?;
        let value = value.split(' ').next().unwrap_or("");
        let value: f64 = match value {
            "+Inf" => f64::INFINITY,
            "-Inf" => f64::NEG_INFINITY,
            v => v.parse().map_err(|_| bad("bad value"))?,
        };
        out.push((name.to_string(), labels, value));
    }
    Ok(out)
}

/// Labels `k="v",k2="v2"}` (after a `{` or a `,`): the labels and the bytes
/// used, the closing `}` included.
fn parse_labels(s: &str) -> std::result::Result<(Vec<(String, String)>, usize), String> {
    let mut labels = Vec::new();
    let mut pos = 0;
    loop {
        let rest = &s[pos..];
        if rest.starts_with('}') {
            return Ok((labels, pos + 1));
        }
        let eq = rest.find("=\"").ok_or("label without =\"")?;
        let key = &rest[..eq];
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("bad label name".into());
        }
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let mut closed = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c)) => value.push(c),
                    None => return Err("dangling escape".into()),
                },
                '"' => {
                    closed = Some(pos + eq + 2 + i + 1);
                    break;
                }
                c => value.push(c),
            }
        }
        pos = closed.ok_or("unterminated label value")?;
        labels.push((key.to_string(), value));
        match s[pos..].chars().next() {
            Some(',') => pos += 1,
            Some('}') => {}
            _ => return Err("expected , or } after a label".into()),
        }
    }
}
