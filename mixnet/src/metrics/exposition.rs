//! The Prometheus text exposition format 0.0.4, written: one `# HELP`, one
//! `# TYPE` and the samples of each family, label values escaped. Knows
//! nothing of what a node counts.

use std::fmt::Write as _;

/// A metric family's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Counter,
    Gauge,
}

/// Exposition text being written: one `# HELP`, one `# TYPE` and the
/// samples of each family, label values escaped.
#[derive(Debug, Default)]
pub struct Exposition {
    text: String,
}

impl Exposition {
    /// A family with one sample per entry of `series` (labels, value).
    pub fn family(&mut self, name: &str, kind: Kind, help: &str, series: &[(&[(&str, &str)], u64)]) {
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(self.text, "# HELP {name} {help}");
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in series {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (k, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let v = v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
                    let _ = write!(self.text, "{k}=\"{v}\"");
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {value}");
        }
    }

    pub fn counter(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Counter, help, &[(&[], value)]);
    }

    pub fn gauge(&mut self, name: &str, help: &str, value: u64) {
        self.family(name, Kind::Gauge, help, &[(&[], value)]);
    }

    /// A family with one label.
    pub fn labelled(&mut self, name: &str, kind: Kind, help: &str, label: &str, series: &[(&str, u64)]) {
        let labels: Vec<[(&str, &str); 1]> = series.iter().map(|(v, _)| [(label, *v)]).collect();
        let series: Vec<(&[(&str, &str)], u64)> = labels.iter().zip(series).map(|(l, (_, n))| (&l[..], *n)).collect();
        self.family(name, kind, help, &series);
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

/// Reading back what [`Exposition`] wrote, for the unit tests of every
/// node's metrics (the integration tests parse whole answers with their own
/// parser, mixnet/tests/common).
#[cfg(test)]
pub(crate) mod written {
    use std::collections::HashSet;

    /// The value of the one sample `series` (`name` or `name{k="v",...}`,
    /// exactly as written); None when absent. Panics if it appears twice.
    pub(crate) fn value(text: &str, series: &str) -> Option<u64> {
        let mut found = text.lines().filter_map(|l| l.strip_prefix(series)?.strip_prefix(' '));
        let v = found.next().map(|v| v.parse().unwrap_or_else(|e| panic!("{series}: {v}: {e}")));
        assert!(found.next().is_none(), "{series} appears twice");
        v
    }

    /// Every family has one HELP and one TYPE line before its samples; a
    /// `_total` is a counter; every other line is `series value`.
    pub(crate) fn assert_well_formed(text: &str) {
        let (mut helped, mut typed) = (HashSet::new(), HashSet::new());
        for line in text.lines() {
            let mut words = line.split(' ');
            match (words.next(), words.next(), words.next()) {
                (Some("#"), Some("HELP"), Some(name)) => {
                    assert!(helped.insert(name.to_string()), "two HELP lines for {name}")
                }
                (Some("#"), Some("TYPE"), Some(name)) => {
                    assert!(typed.insert(name.to_string()), "two TYPE lines for {name}");
                    let kind = words.next();
                    assert!(matches!(kind, Some("counter" | "gauge")), "{line}");
                    assert!(
                        !name.ends_with("_total") || kind == Some("counter"),
                        "{name}: a _total that is not a counter"
                    );
                }
                (Some("#"), ..) => panic!("stray comment: {line}"),
                _ => {
                    let name = &line[..line.find(['{', ' ']).unwrap_or_else(|| panic!("no value: {line}"))];
                    assert!(typed.contains(name) && helped.contains(name), "{name} sampled before its HELP and TYPE");
                    let value = line.rsplit(' ').next().unwrap_or("");
                    assert!(value.parse::<u64>().is_ok(), "not a sample: {line}");
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::written::{assert_well_formed, value};
    use super::*;

    #[test]
    fn families_are_written_with_help_type_and_escaped_labels() {
        let mut out = Exposition::default();
        out.counter("a_total", "A counter.\nTwo lines.", 7);
        out.gauge("b", "A gauge.", 0);
        out.family(
            "c_total",
            Kind::Counter,
            "Labels.",
            &[(&[("x", "plain"), ("y", "q\"uo\\te\nnl")], 3), (&[("x", "")], u64::MAX)],
        );
        out.labelled("d", Kind::Gauge, "One label.", "kind", &[("one", 1), ("two", 2)]);
        let text = out.into_text();
        assert_well_formed(&text);
        assert!(text.contains("# HELP a_total A counter.\\nTwo lines.\n"), "{text}");
        assert!(text.contains("# TYPE c_total counter\n"), "{text}");
        assert_eq!(text.lines().filter(|l| !l.starts_with('#')).count(), 6, "{text}");
        assert_eq!(value(&text, "a_total"), Some(7));
        assert_eq!(value(&text, "b"), Some(0));
        assert_eq!(value(&text, r#"c_total{x="plain",y="q\"uo\\te\nnl"}"#), Some(3));
        assert_eq!(value(&text, r#"c_total{x=""}"#), Some(u64::MAX));
        assert_eq!(value(&text, r#"d{kind="one"}"#), Some(1));
        assert_eq!(value(&text, r#"d{kind="two"}"#), Some(2));
    }
}
