//! Settings that name one server or several of the same kind (`nats_url`: the servers of a
//! NATS cluster; `control_url`: control-plane replicas). Either form is accepted, a
//! comma-separated string (`"nats://a:4222,nats://b:4222"`, the NATS tools' convention, handy
//! in one environment variable) or a list (`["nats://a:4222", "nats://b:4222"]`, in TOML or
//! as `HOOKD_NATS_URL='[…]'`), and kept as the comma-separated string.

use serde::{Deserialize, Deserializer};

/// `#[serde(deserialize_with = "one_or_many")]`: a string or a list of strings, as one
/// comma-separated string. Entries are trimmed; empty ones are dropped, so a trailing comma
/// is harmless.
pub fn one_or_many<'de, D: Deserializer<'de>>(deserializer: D) -> Result<String, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    let entries = match OneOrMany::deserialize(deserializer)? {
        OneOrMany::One(one) => split(&one).map(str::to_owned).collect::<Vec<_>>(),
        OneOrMany::Many(many) => {
            many.iter().flat_map(|entry| split(entry)).map(str::to_owned).collect()
        }
    };
    Ok(entries.join(","))
}

/// The addresses of a setting written as a comma-separated list, trimmed, without empty ones.
pub fn split(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|entry| !entry.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Settings {
        #[serde(deserialize_with = "one_or_many")]
        url: String,
    }

    fn read(json: &str) -> String {
        serde_json::from_str::<Settings>(json).expect("valid").url
    }

    #[test]
    fn a_string_or_a_list_gives_the_same_setting() {
        assert_eq!(read(r#"{"url": "nats://a:4222"}"#), "nats://a:4222");
        assert_eq!(
            read(r#"{"url": " nats://a:4222, nats://b:4222 ,"}"#),
            "nats://a:4222,nats://b:4222"
        );
        assert_eq!(
            read(r#"{"url": ["nats://a:4222", "nats://b:4222,nats://c:4222"]}"#),
            "nats://a:4222,nats://b:4222,nats://c:4222"
        );
        assert!(serde_json::from_str::<Settings>(r#"{"url": 4222}"#).is_err());
    }

    #[test]
    fn split_skips_blanks() {
        assert_eq!(split(" a , ,b,").collect::<Vec<_>>(), ["a", "b"]);
        assert_eq!(split("").count(), 0);
    }
}
