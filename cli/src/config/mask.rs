//! `streamcart config`: the effective configuration as TOML, every secret masked.

use figment::value::Value;

use super::Config;
use super::env::leaves;

impl Config {
    /// The configuration as TOML with every secret masked, for `streamcart config`; keys that
    /// are unset are listed in a closing comment, TOML having no way to say "unset".
    pub fn to_masked_toml(&self) -> Result<String, toml::ser::Error> {
        let mut value = toml::Value::try_from(self)?;
        mask(None, &mut value);
        let mut out = toml::to_string(&value)?;
        // Serializing plain structs of strings, numbers, options and lists cannot fail.
        let unset: Vec<String> = Value::serialize(self)
            .map(|v| leaves(&v))
            .unwrap_or_default()
            .into_iter()
            .filter(|(_, v)| matches!(v, Value::Empty(..)))
            .map(|(k, _)| k)
            .collect();
        if !unset.is_empty() {
            out.push_str(&format!("\n# unset: {}\n", unset.join(", ")));
        }
        Ok(out)
    }
}

/// Shown instead of a secret.
pub const MASK: &str = "********";

/// Whether a key's value is a secret by its name, whatever section it is in.
fn is_secret_key(name: &str) -> bool {
    // `key.pem` is librdkafka's inline private key (`ssl.key.pem`).
    ["secret", "password", "credential", "private_key", "key.pem"]
        .iter()
        .any(|word| name.contains(word))
}

fn mask(name: Option<&str>, value: &mut toml::Value) {
    match value {
        toml::Value::Table(table) => {
            for (k, v) in table.iter_mut() {
                mask(Some(k), v);
            }
        }
        toml::Value::Array(items) => {
            for item in items {
                mask(name, item);
            }
        }
        toml::Value::String(s) => {
            if name.is_some_and(is_secret_key) {
                *s = MASK.to_owned();
            } else {
                *s = mask_url_password(s);
            }
        }
        _ => {}
    }
}

/// `scheme://user:password@host/...` with the password masked; any other text unchanged.
fn mask_url_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return text.to_owned();
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return text.to_owned();
    };
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:{MASK}@{host}{tail}"),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn printing_masks_secrets_and_url_passwords() {
        let secret = "a-very-long-shared-secret-of-40-bytes!!!";
        let mut cfg = Config::default();
        cfg.api.jwt.hs256_secret = Some(secret.into());
        cfg.redis_url = "redis://cache:hunter2@10.0.0.5:6379/0".into();
        cfg.registry_url = "https://reg:pa55@registry.example/apis/ccompat/v7".into();
        let text = cfg.to_masked_toml().expect("toml");
        assert!(!text.contains(secret), "{text}");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("pa55"), "{text}");
        let printed: toml::Table = toml::from_str(&text).expect("printed TOML parses");
        assert_eq!(printed["api"]["jwt"]["hs256_secret"].as_str(), Some(MASK));
        assert_eq!(
            printed["redis_url"].as_str(),
            Some(&*format!("redis://cache:{MASK}@10.0.0.5:6379/0"))
        );
        assert_eq!(
            printed["registry_url"].as_str(),
            Some(&*format!(
                "https://reg:{MASK}@registry.example/apis/ccompat/v7"
            ))
        );
        assert_eq!(
            printed["sink"]["postgres_url"].as_str(),
            Some(&*format!(
                "postgres://postgres:{MASK}@127.0.0.1:5432/streamcart"
            ))
        );
        // What is not secret is printed as it is.
        assert_eq!(
            printed["kafka"]["bootstrap_servers"].as_str(),
            Some("127.0.0.1:9092")
        );
        assert!(text.contains("# unset: "), "{text}");
        assert!(text.contains("api.tls_cert"), "{text}");
    }

    #[test]
    fn secret_keys_are_known_by_name() {
        for name in [
            "hs256_secret",
            "password",
            "sasl_password",
            "credentials",
            "tls_private_key",
        ] {
            assert!(is_secret_key(name), "{name}");
        }
        for name in [
            "declined_card_tokens",
            "tls_key",
            "rs256_public_key_file",
            "redis_url",
        ] {
            assert!(!is_secret_key(name), "{name}");
        }
        assert_eq!(
            mask_url_password("redis://127.0.0.1:6379"),
            "redis://127.0.0.1:6379"
        );
        assert_eq!(
            mask_url_password("redis://user@host:1"),
            "redis://user@host:1"
        );
        assert_eq!(mask_url_password("not a url"), "not a url");
    }
}
