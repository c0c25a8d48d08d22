//! Quoting for readers that still speak YAML 1.1.
//!
//! `serde_yaml_ng` writes YAML 1.2, where `on`, `off`, `yes`, `no`, `y` and
//! `n` are plain strings. The apiserver, kubectl and Helm read YAML through
//! go-yaml with 1.1 rules, where those words are booleans: the join step's
//! `on` property, written bare, reaches the apiserver as `true` and the CRD is
//! refused ("cannot unmarshal bool into … required of type string").

/// Words YAML 1.1 reads as booleans that YAML 1.2 writers leave unquoted.
const WORDS: &[&str] = &[
    "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "on", "On", "ON", "off", "Off",
    "OFF",
];

/// Quotes every YAML 1.1 boolean word that stands as a mapping key, a
/// sequence item or a plain value in `yaml` (block style, as serde writes it).
#[must_use]
pub fn quote_yaml11_booleans(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len() + 64);
    for line in yaml.split_inclusive('\n') {
        let (body, newline) = match line.strip_suffix('\n') {
            Some(b) => (b, "\n"),
            None => (line, ""),
        };
        out.push_str(&quote_line(body));
        out.push_str(newline);
    }
    out
}

fn quote_line(line: &str) -> String {
    let indent = line.len() - line.trim_start().len();
    let (lead, mut rest) = line.split_at(indent);
    let mut out = lead.to_owned();
    // Sequence markers: `- `, possibly nested (`- - on`).
    while let Some(r) = rest.strip_prefix("- ") {
        out.push_str("- ");
        rest = r;
    }
    if WORDS.contains(&rest) {
        out.push_str(&format!("'{rest}'"));
        return out;
    }
    if let Some((key, value)) = split_key(rest) {
        out.push_str(&quote_word(key));
        out.push(':');
        if !value.is_empty() {
            out.push(' ');
            out.push_str(&quote_word(value));
        }
        return out;
    }
    out.push_str(rest);
    out
}

/// `key: value` or `key:` with a plain (unquoted) key.
fn split_key(s: &str) -> Option<(&str, &str)> {
    if s.starts_with(['\'', '"']) {
        return None;
    }
    if let Some(key) = s.strip_suffix(':') {
        return (!key.contains(": ")).then_some((key, ""));
    }
    let (key, value) = s.split_once(": ")?;
    Some((key, value))
}

fn quote_word(w: &str) -> String {
    if WORDS.contains(&w) {
        format!("'{w}'")
    } else {
        w.to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::quote_yaml11_booleans;

    #[test]
    fn quotes_keys_items_and_values_only_when_they_are_yaml11_booleans() {
        let input =
            "properties:\n  on:\n    type: object\nrequired:\n- on\n- with\nx: off\nonly: online\n";
        let want = "properties:\n  'on':\n    type: object\nrequired:\n- 'on'\n- with\nx: 'off'\nonly: online\n";
        assert_eq!(quote_yaml11_booleans(input), want);
    }

    #[test]
    fn leaves_the_parsed_value_unchanged() {
        let input = "a:\n  on: [1]\n  list:\n  - no\n  - - y\n";
        let parse = |s: &str| serde_yaml_ng::from_str::<serde_yaml_ng::Value>(s).unwrap();
        assert_eq!(parse(input), parse(&quote_yaml11_booleans(input)));
    }
}
