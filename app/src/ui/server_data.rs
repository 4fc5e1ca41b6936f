//! Resources that load a server function's answer: the one constructor the pages use.
//!
//! A resource's value crosses to the browser twice: in the page, as hydration data, and later
//! in a server function's response. Leptos reads the first with `serde_json::from_str` and
//! server_fn reads the second with `serde_json::from_slice`, and serde_json's reader is a type
//! parameter of every deserialiser. So each type a page loads was compiled into the WASM bundle
//! twice, one copy per reader. [`Json`] reads hydration data with `from_slice` too: one copy.

use leptos::prelude::*;
use leptos::server::codee::{Decoder, Encoder};
use serde::Serialize;
use serde::de::DeserializeOwned;

/// JSON for a resource's hydration data, read by the reader server functions use.
pub struct Json;

impl<T: Serialize> Encoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = String;

    fn encode(value: &T) -> Result<String, serde_json::Error> {
        serde_json::to_string(value)
    }
}

impl<T: DeserializeOwned> Decoder<T> for Json {
    type Error = serde_json::Error;
    type Encoded = str;

    fn decode(encoded: &str) -> Result<T, serde_json::Error> {
        serde_json::from_slice(encoded.as_bytes())
    }
}

/// A resource whose value comes from a server function.
pub type ServerData<T> = Resource<T, Json>;

/// Loads `fetcher`'s answer again whenever `source` changes, as `Resource::new` does.
#[track_caller]
pub fn server_data<S, T, Fut>(
    source: impl Fn() -> S + Send + Sync + 'static,
    fetcher: impl Fn(S) -> Fut + Send + Sync + 'static,
) -> ServerData<T>
where
    S: PartialEq + Clone + Send + Sync + 'static,
    T: Serialize + DeserializeOwned + Send + Sync + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    Resource::new_with_options(source, fetcher, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_value_survives_the_round_trip_through_hydration_data() {
        let value: Result<Vec<(String, u32)>, String> = Ok(vec![("BTC-USD «é»".into(), 7)]);
        let encoded = <Json as Encoder<_>>::encode(&value).expect("encode");
        let decoded: Result<Vec<(String, u32)>, String> = Json::decode(&encoded).expect("decode");
        assert_eq!(decoded, value);
    }
}
