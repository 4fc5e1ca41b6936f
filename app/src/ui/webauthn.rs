//! The browser half of WebAuthn: hands the server's options to `navigator.credentials` and
//! returns the authenticator's answer as JSON. Nothing secret passes through here; the ceremony
//! state stays on the server.

/// Why a key ceremony did not complete, in words for the person holding the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeyCeremonyError {
    /// Cancelled, not allowed, or no matching key (browsers do not say which, on purpose).
    NotAllowed,
    TimedOut,
    AlreadyRegistered,
    Unsupported,
    WrongSite,
    Other(String),
}

impl KeyCeremonyError {
    pub fn message(&self) -> String {
        match self {
            KeyCeremonyError::NotAllowed => "The security key request was cancelled or not allowed. If you meant to use a key, try again and touch it when it blinks.".into(),
            KeyCeremonyError::TimedOut => "Timed out waiting for your security key. Try again and touch the key when it blinks.".into(),
            KeyCeremonyError::AlreadyRegistered => "This security key is already registered to your account.".into(),
            KeyCeremonyError::Unsupported => "This browser cannot use security keys or passkeys here. Try a current Chrome, Firefox, Edge or Safari.".into(),
            KeyCeremonyError::WrongSite => "Security keys only work on this site's own address (e.g. localhost, not 127.0.0.1).".into(),
            KeyCeremonyError::Other(detail) => format!("The security key request failed: {detail}"),
        }
    }
}

/// Creates a credential from creation options (JSON); returns the attestation as JSON.
pub async fn create_credential(options_json: String) -> Result<String, KeyCeremonyError> {
    imp::create(options_json).await
}

/// Gets an assertion for request options (JSON); returns it as JSON.
pub async fn get_assertion(options_json: String) -> Result<String, KeyCeremonyError> {
    imp::get(options_json).await
}

#[cfg(feature = "hydrate")]
mod imp {
    use super::KeyCeremonyError;
    use wasm_bindgen::JsCast;
    use wasm_bindgen_futures::JsFuture;
    use webauthn_rs_proto::{
        CreationChallengeResponse, PublicKeyCredential, RegisterPublicKeyCredential,
        RequestChallengeResponse,
    };

    fn container() -> Result<web_sys::CredentialsContainer, KeyCeremonyError> {
        let window = web_sys::window().ok_or(KeyCeremonyError::Unsupported)?;
        let navigator = window.navigator();
        let has_credentials = js_sys::Reflect::has(&navigator, &"credentials".into())
            .unwrap_or(false)
            && js_sys::Reflect::has(&window, &"PublicKeyCredential".into()).unwrap_or(false);
        if !has_credentials {
            return Err(KeyCeremonyError::Unsupported);
        }
        Ok(navigator.credentials())
    }

    fn now_ms() -> f64 {
        js_sys::Date::now()
    }

    /// Browsers report both "cancelled" and "timed out" as NotAllowedError; the elapsed time
    /// tells them apart well enough to give the right advice.
    fn classify(
        err: wasm_bindgen::JsValue,
        started: f64,
        timeout_ms: Option<u32>,
    ) -> KeyCeremonyError {
        let name = err
            .dyn_ref::<web_sys::DomException>()
            .map(|e| e.name())
            .unwrap_or_default();
        match name.as_str() {
            "NotAllowedError" => match timeout_ms {
                Some(t) if now_ms() - started >= f64::from(t) - 1500.0 => {
                    KeyCeremonyError::TimedOut
                }
                _ => KeyCeremonyError::NotAllowed,
            },
            "AbortError" => KeyCeremonyError::NotAllowed,
            "InvalidStateError" => KeyCeremonyError::AlreadyRegistered,
            "SecurityError" => KeyCeremonyError::WrongSite,
            "NotSupportedError" => KeyCeremonyError::Unsupported,
            _ => KeyCeremonyError::Other(
                err.dyn_ref::<web_sys::DomException>()
                    .map(|e| e.message())
                    .unwrap_or_else(|| "unknown error".into()),
            ),
        }
    }

    /// Awaits the browser's answer to a ceremony it has started.
    async fn answer(
        started_call: Result<js_sys::Promise, wasm_bindgen::JsValue>,
        started: f64,
        timeout: Option<u32>,
    ) -> Result<web_sys::PublicKeyCredential, KeyCeremonyError> {
        let promise = started_call.map_err(|e| classify(e, started, timeout))?;
        JsFuture::from(promise)
            .await
            .map_err(|e| classify(e, started, timeout))?
            .dyn_into()
            .map_err(|_| KeyCeremonyError::Other("no credential returned".into()))
    }

    fn options<T: serde::de::DeserializeOwned>(json: &str) -> Result<T, KeyCeremonyError> {
        // The slice reader, as every other JSON the bundle reads (see `ui::server_data`): a
        // second reader type would compile serde_json's parser into the bundle twice.
        serde_json::from_slice(json.as_bytes())
            .map_err(|e| KeyCeremonyError::Other(format!("bad options: {e}")))
    }

    fn to_json(value: &impl serde::Serialize) -> Result<String, KeyCeremonyError> {
        serde_json::to_string(value).map_err(|e| KeyCeremonyError::Other(e.to_string()))
    }

    pub async fn create(options_json: String) -> Result<String, KeyCeremonyError> {
        let options: CreationChallengeResponse = options(&options_json)?;
        let timeout = options.public_key.timeout;
        let started = now_ms();
        let call = container()?.create_with_options(&options.into());
        let credential = answer(call, started, timeout).await?;
        to_json(&RegisterPublicKeyCredential::from(credential))
    }

    pub async fn get(options_json: String) -> Result<String, KeyCeremonyError> {
        let options: RequestChallengeResponse = options(&options_json)?;
        let timeout = options.public_key.timeout;
        let started = now_ms();
        let call = container()?.get_with_options(&options.into());
        let credential = answer(call, started, timeout).await?;
        to_json(&PublicKeyCredential::from(credential))
    }
}

#[cfg(not(feature = "hydrate"))]
mod imp {
    use super::KeyCeremonyError;

    // Ceremonies only ever run in the browser; the server render never calls these.
    pub async fn create(_options_json: String) -> Result<String, KeyCeremonyError> {
        Err(KeyCeremonyError::Unsupported)
    }

    pub async fn get(_options_json: String) -> Result<String, KeyCeremonyError> {
        Err(KeyCeremonyError::Unsupported)
    }
}
