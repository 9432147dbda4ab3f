//! Form bodies and query strings as ordered key/value lists: the pages' forms repeat keys
//! (one `event_types` per checked box, one `header_name` per row), which a struct-based
//! decoder cannot express.

#[derive(Debug, Clone, Default)]
pub struct Form(Vec<(String, String)>);

impl Form {
    /// Parses `application/x-www-form-urlencoded` bytes (a POST body or a query string).
    pub fn parse(bytes: &[u8]) -> Self {
        Self(url::form_urlencoded::parse(bytes).into_owned().collect())
    }

    pub fn from_query(uri: &http::Uri) -> Self {
        Self::parse(uri.query().unwrap_or_default().as_bytes())
    }

    /// The first value of `key`, trimmed; empty when absent.
    pub fn text(&self, key: &str) -> String {
        self.raw(key).trim().to_owned()
    }

    /// The first value of `key` as sent (passwords and JSON keep their spaces).
    pub fn raw(&self, key: &str) -> &str {
        self.0.iter().find(|(k, _)| k == key).map_or("", |(_, v)| v.as_str())
    }

    /// Every value of `key`, in order, as sent.
    pub fn all(&self, key: &str) -> Vec<&str> {
        self.0.iter().filter(|(k, _)| k == key).map(|(_, v)| v.as_str()).collect()
    }

    pub fn checked(&self, key: &str) -> bool {
        matches!(self.raw(key), "on" | "true" | "1" | "yes")
    }
}

/// A query string of the non-empty `pairs` (for links that keep a list's filters).
pub fn query(pairs: &[(&str, &str)]) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in pairs.iter().filter(|(_, v)| !v.is_empty()) {
        out.append_pair(k, v);
    }
    out.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_keys_keep_their_order_and_values_are_decoded() {
        let form =
            Form::parse(b"event_types=a&event_types=b&name=+crm+&data=%7B%22x%22%3A1%7D&on=on");
        assert_eq!(form.all("event_types"), ["a", "b"]);
        assert_eq!(form.text("name"), "crm");
        assert_eq!(form.raw("name"), " crm ");
        assert_eq!(form.raw("data"), r#"{"x":1}"#);
        assert!(form.checked("on") && !form.checked("off") && form.text("missing").is_empty());
        assert_eq!(query(&[("a", "x y"), ("b", ""), ("c", "&")]), "a=x+y&c=%26");
    }
}
