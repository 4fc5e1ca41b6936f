//! Exchange key entry (`domain::keys`, `domain::exchange`): the label, exchange, environment,
//! scope and the API key and secret a trader types. A value that parses parses again to
//! itself, and accepted credentials are what the vault expects to seal (visible ASCII, 8 to
//! 256 characters, no whitespace).
#![no_main]

use domain::exchange::{ApiCredentials, ExchangeName, KeyEnvironment};
use domain::keys::{KeyLabel, KeyScope, KeyStatus};
use libfuzzer_sys::arbitrary::{self, Arbitrary};
use libfuzzer_sys::fuzz_target;
use secrecy::{ExposeSecret, SecretString};

#[derive(Debug, Arbitrary)]
struct Input {
    label: String,
    exchange: String,
    environment: String,
    scope: String,
    api_key: String,
    api_secret: String,
}

fn credential_ok(s: &str) -> bool {
    (ApiCredentials::MIN_CHARS..=ApiCredentials::MAX_CHARS).contains(&s.len())
        && s.bytes().all(|b| b.is_ascii_graphic())
}

fuzz_target!(|input: Input| {
    if let Ok(label) = KeyLabel::parse(&input.label) {
        let chars = label.as_str().chars().count();
        assert!((1..=KeyLabel::MAX_CHARS).contains(&chars));
        assert!(!label.as_str().chars().any(char::is_control));
        assert_eq!(KeyLabel::parse(label.as_str()), Ok(label.clone()));
    }
    for raw in [&input.exchange, &input.environment, &input.scope] {
        if let Ok(name) = ExchangeName::parse(raw) {
            assert_eq!(ExchangeName::parse(name.as_str()), Ok(name));
        }
        if let Ok(env) = KeyEnvironment::parse(raw) {
            assert_eq!(KeyEnvironment::parse(env.as_str()), Ok(env));
        }
        if let Ok(scope) = KeyScope::parse(raw) {
            assert_eq!(KeyScope::parse(scope.as_str()), Ok(scope));
        }
        if let Ok(status) = KeyStatus::parse(raw) {
            assert_eq!(KeyStatus::parse(status.as_str()), Ok(status));
        }
    }
    let parsed = ApiCredentials::parse(
        SecretString::from(input.api_key.clone()),
        SecretString::from(input.api_secret.clone()),
    );
    let expected = credential_ok(input.api_key.trim()) && credential_ok(input.api_secret.trim());
    assert_eq!(parsed.is_ok(), expected);
    if let Ok(credentials) = parsed {
        let key = credentials.api_key().expose_secret();
        assert_eq!(key, input.api_key.trim());
        assert_eq!(
            credentials.api_secret().expose_secret(),
            input.api_secret.trim()
        );
        // The mask shows the key's last four characters, and only when it is longer than 8.
        let chars: Vec<char> = key.chars().collect();
        let tail: String = if chars.len() > 8 {
            chars[chars.len() - 4..].iter().collect()
        } else {
            String::new()
        };
        assert_eq!(credentials.mask(), format!("****{tail}"));
    }
});
