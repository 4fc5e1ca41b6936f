//! Approvals bound to one canonical order (PSD2-style dynamic linking): the order's digest is
//! the WebAuthn challenge, and an approval is spent once, for exactly that order.

use rand::RngCore;
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use webauthn_rs::prelude::{PasskeyAuthentication, RequestChallengeResponse};

use super::security_key::base64_url;
use super::service::draft;
use super::{FactorProof, StepUpError, StepUpMethod, StepUpService};
use crate::account::UserId;
use crate::audit::{Outcome, RequestMeta};
use crate::audit_action::AuditAction;
use crate::exchange::Venue;
use crate::order::OrderType;

// The order's vocabulary lives in `crate::order`; re-exported for existing callers.
pub use crate::order::{MAX_ORDER_AMOUNT, OrderSide, OrderTerms};

/// An order as the trader asks to approve it, before the server adds the account and a nonce:
/// where it goes (paper, or an exchange, environment and key), its type, and its terms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderToApprove {
    pub venue: Venue,
    pub order_type: OrderType,
    pub terms: OrderTerms,
}

/// The canonical order an approval covers: the account, the venue (exchange, environment and
/// key), the order type, its terms, and a server nonce. An approval for one venue or type is
/// no approval for another.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderIntent {
    pub account: UserId,
    pub venue: Venue,
    pub order_type: OrderType,
    pub terms: OrderTerms,
    /// 16 random bytes, hex: makes every challenge unpredictable and every approval unique.
    pub nonce: String,
}

impl OrderIntent {
    pub fn new(account: UserId, order: OrderToApprove) -> Self {
        let mut nonce = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut nonce);
        Self::with_nonce(account, order, hex::encode(nonce))
    }

    /// The intent for `order` under an existing nonce (an approval being answered or used).
    pub fn with_nonce(account: UserId, order: OrderToApprove, nonce: String) -> Self {
        Self {
            account,
            venue: order.venue,
            order_type: order.order_type,
            terms: order.terms,
            nonce,
        }
    }

    /// SHA-256 over length-prefixed fields, so no two different orders share a digest.
    pub fn digest(&self) -> [u8; 32] {
        let quantity = self.terms.quantity.normalize().to_string();
        let price = self.terms.price.normalize().to_string();
        let account = self.account.to_string();
        let key = self
            .venue
            .key
            .map(|k| k.to_string())
            .unwrap_or_else(|| "none".into());
        let mut hasher = Sha256::new();
        hasher.update(b"cryptopulse-order-v2");
        for field in [
            account.as_str(),
            self.venue.exchange.as_str(),
            self.venue.environment.as_str(),
            key.as_str(),
            self.order_type.as_str(),
            self.terms.symbol.as_str(),
            self.terms.side.as_str(),
            quantity.as_str(),
            price.as_str(),
            self.nonce.as_str(),
        ] {
            hasher.update((field.len() as u64).to_be_bytes());
            hasher.update(field.as_bytes());
        }
        hasher.finalize().into()
    }

    pub fn digest_hex(&self) -> String {
        hex::encode(self.digest())
    }
}

/// A pending order approval, held in the server-side session until answered.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct OrderChallenge {
    pub digest: String,
    pub nonce: String,
    pub issued_at: i64,
    /// Present when the user has security keys: the assertion must sign the order's digest.
    pub webauthn: Option<PasskeyAuthentication>,
}

/// An approval begun: the challenge the session keeps, and what the browser is told.
#[derive(Debug)]
pub struct OrderApprovalStart {
    pub challenge: OrderChallenge,
    /// Present when the user has a usable security key: its challenge is the order's digest.
    pub webauthn: Option<RequestChallengeResponse>,
    pub notional: Decimal,
    /// The notional alone is above the threshold, so placement will ask for this approval
    /// (it may also ask for other reasons: a new IP or device, or the day's orders without an
    /// approval adding up past the threshold; the ticket previews those).
    pub needs_step_up: bool,
    /// The user can answer with an authenticator app code.
    pub totp: bool,
}

/// A granted approval: usable once, for the order with this digest, until `expires_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderApproval {
    pub digest: String,
    pub user: UserId,
    pub method: StepUpMethod,
    pub approved_at: OffsetDateTime,
    pub expires_at: OffsetDateTime,
}

/// Makes the WebAuthn challenge the order's digest, so the authenticator's signature itself
/// commits to the order (the digest already carries a random nonce, so it stays unpredictable).
fn bind_challenge(
    mut options: RequestChallengeResponse,
    state: PasskeyAuthentication,
    digest: [u8; 32],
) -> Result<(RequestChallengeResponse, PasskeyAuthentication), StepUpError> {
    options.public_key.challenge = digest.to_vec();
    let mut value = serde_json::to_value(&state)
        .map_err(|e| StepUpError::Internal(format!("ceremony state: {e}")))?;
    let slot = value
        .pointer_mut("/ast/challenge")
        .ok_or_else(|| StepUpError::Internal("ceremony state has no challenge".into()))?;
    *slot = serde_json::Value::String(base64_url(&digest));
    let state = serde_json::from_value(value)
        .map_err(|e| StepUpError::Internal(format!("ceremony state: {e}")))?;
    Ok((options, state))
}

impl StepUpService {
    /// Starts an approval for one order: a fresh nonce, the digest, and (with keys) a WebAuthn
    /// challenge equal to the digest; says whether the order needs one at all.
    pub async fn begin_order_approval(
        &self,
        user: UserId,
        order: OrderToApprove,
    ) -> Result<OrderApprovalStart, StepUpError> {
        let notional = order.terms.notional();
        let intent = OrderIntent::new(user, order);
        let digest = intent.digest();
        let (options, state) = match self.begin_key_authentication(user).await? {
            Some((options, state)) => {
                let (options, state) = bind_challenge(options, state, digest)?;
                (Some(options), Some(state))
            }
            None => (None, None),
        };
        Ok(OrderApprovalStart {
            challenge: OrderChallenge {
                digest: hex::encode(digest),
                nonce: intent.nonce,
                issued_at: self.clock.now().unix_timestamp(),
                webauthn: state,
            },
            webauthn: options,
            notional,
            needs_step_up: self.policy.order_needs_step_up(notional),
            totp: self.summary(user).await?.totp_enabled,
        })
    }

    /// Approves exactly the order the challenge was issued for: the terms sent back are hashed
    /// again with the challenge's nonce and must give the same digest.
    pub async fn approve_order(
        &self,
        user: UserId,
        challenge: &OrderChallenge,
        order: OrderToApprove,
        proof: FactorProof<'_>,
        meta: RequestMeta,
    ) -> Result<OrderApproval, StepUpError> {
        let now = self.clock.now();
        let intent = OrderIntent::with_nonce(user, order, challenge.nonce.clone());
        let digest = intent.digest_hex();
        if digest != challenge.digest {
            self.audit_only(
                draft(
                    user,
                    AuditAction::StepupOrderMismatch,
                    Outcome::Denied,
                    &meta,
                )
                .detail("challenge", challenge.digest.clone())
                .detail("offered", digest),
            )
            .await?;
            return Err(StepUpError::OrderMismatch);
        }
        if now.unix_timestamp() - challenge.issued_at
            > self.policy.approval_lifetime.whole_seconds()
        {
            return Err(StepUpError::NoCeremony);
        }
        // A WebAuthn proof must answer this challenge's state, which signs the digest.
        let proof = match proof {
            FactorProof::SecurityKey { credential, .. } => {
                let state = challenge.webauthn.as_ref().ok_or(StepUpError::NoCeremony)?;
                FactorProof::SecurityKey { credential, state }
            }
            other => other,
        };
        let purpose = format!("order:{digest}");
        let (method, _) = self.verify(user, proof, &purpose, &meta).await?;
        let approval = OrderApproval {
            digest: digest.clone(),
            user,
            method,
            approved_at: now,
            expires_at: now + self.policy.approval_lifetime,
        };
        self.store
            .insert_order_approval(
                &approval,
                draft(
                    user,
                    AuditAction::StepupOrderApproved,
                    Outcome::Success,
                    &meta,
                )
                .detail("order_digest", digest)
                .detail(
                    "venue",
                    format!("{}/{}", intent.venue.exchange, intent.venue.environment),
                )
                .detail(
                    "key",
                    intent.venue.key.map(|k| k.to_string()).unwrap_or_default(),
                )
                .detail("type", intent.order_type.as_str())
                .detail("symbol", intent.terms.symbol.clone())
                .detail("side", intent.terms.side.as_str())
                .detail("quantity", intent.terms.quantity.to_string())
                .detail("price", intent.terms.price.to_string())
                .detail("method", method.as_str()),
            )
            .await?;
        Ok(approval)
    }

    /// Spends the approval for exactly this order (venue, type, terms and nonce). Order placement
    /// calls this; a second call, another order, venue or type, or a changed quantity gets
    /// `OrderMismatch`.
    pub async fn consume_order_approval(
        &self,
        intent: &OrderIntent,
        meta: RequestMeta,
    ) -> Result<(), StepUpError> {
        let digest = intent.digest_hex();
        let user = intent.account;
        let consumed = self
            .store
            .consume_order_approval(
                user,
                &digest,
                self.clock.now(),
                draft(
                    user,
                    AuditAction::StepupOrderApprovalUsed,
                    Outcome::Success,
                    &meta,
                )
                .detail("order_digest", digest.clone()),
            )
            .await?;
        if consumed {
            return Ok(());
        }
        self.audit_only(
            draft(
                user,
                AuditAction::StepupOrderApprovalRefused,
                Outcome::Denied,
                &meta,
            )
            .detail("order_digest", digest),
        )
        .await?;
        Err(StepUpError::OrderMismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn terms(qty: &str) -> OrderTerms {
        OrderTerms::parse("btcusdt", "buy", qty, "65000.50").expect("valid terms")
    }

    fn paper_market(terms: OrderTerms) -> OrderToApprove {
        OrderToApprove {
            venue: Venue::PAPER,
            order_type: OrderType::Market,
            terms,
        }
    }

    #[test]
    fn the_order_digest_commits_to_every_field() {
        use crate::exchange::{ExchangeName, KeyEnvironment};
        use crate::ids::KeyId;

        let account = UserId(Uuid::from_u128(7));
        let base = OrderIntent::with_nonce(account, paper_market(terms("0.5")), "00".repeat(16));
        let binance = |environment, key: u128| Venue {
            exchange: ExchangeName::Binance,
            environment,
            key: Some(KeyId(Uuid::from_u128(key))),
        };
        let on_binance_testnet = OrderIntent {
            venue: binance(KeyEnvironment::Testnet, 1),
            ..base.clone()
        };
        let same_value = OrderIntent {
            terms: terms("0.50000"),
            ..base.clone()
        };
        assert_eq!(
            base.digest(),
            same_value.digest(),
            "trailing zeros are not a new order"
        );
        let changes = [
            OrderIntent {
                terms: terms("0.6"),
                ..base.clone()
            },
            OrderIntent {
                account: UserId(Uuid::from_u128(8)),
                ..base.clone()
            },
            OrderIntent {
                nonce: "11".repeat(16),
                ..base.clone()
            },
            OrderIntent {
                terms: OrderTerms::parse("ETHUSDT", "buy", "0.5", "65000.50").expect("valid"),
                ..base.clone()
            },
            OrderIntent {
                terms: OrderTerms::parse("BTCUSDT", "sell", "0.5", "65000.50").expect("valid"),
                ..base.clone()
            },
            OrderIntent {
                terms: OrderTerms::parse("BTCUSDT", "buy", "0.5", "65000.51").expect("valid"),
                ..base.clone()
            },
            // The venue: another exchange, another environment, another key.
            on_binance_testnet.clone(),
            OrderIntent {
                venue: binance(KeyEnvironment::Live, 1),
                ..base.clone()
            },
            OrderIntent {
                venue: binance(KeyEnvironment::Testnet, 2),
                ..base.clone()
            },
            // The order type.
            OrderIntent {
                order_type: OrderType::Limit,
                ..base.clone()
            },
        ];
        for changed in &changes {
            assert_ne!(base.digest(), changed.digest(), "{changed:?}");
        }
        assert_ne!(
            on_binance_testnet.digest(),
            changes[changes.len() - 2].digest(),
            "another key on the same exchange is another venue"
        );
    }

    // The bounds and parsing of order terms are tested with them in `crate::order`.

    #[test]
    fn the_webauthn_challenge_for_an_order_is_its_digest_and_a_software_key_signs_it() {
        use webauthn_authenticator_rs::WebauthnAuthenticator;
        use webauthn_authenticator_rs::softtoken::SoftToken;
        use webauthn_rs::prelude::WebauthnBuilder;

        let origin = url::Url::parse("http://localhost:3000").expect("url");
        let webauthn = WebauthnBuilder::new("localhost", &origin)
            .expect("builder")
            .build()
            .expect("webauthn");
        let (token, _) = SoftToken::new(true).expect("soft token");
        let mut authenticator = token;
        let (ccr, reg_state) = webauthn
            .start_passkey_registration(Uuid::from_u128(1), "a@example.com", "a", None)
            .expect("start registration");
        let reg = authenticator
            .do_registration(origin.clone(), ccr)
            .expect("authenticator registers");
        let passkey = webauthn
            .finish_passkey_registration(&reg, &reg_state)
            .expect("registration verifies");

        let intent = OrderIntent::new(UserId(Uuid::from_u128(1)), paper_market(terms("1")));
        let (rcr, state) = webauthn
            .start_passkey_authentication(std::slice::from_ref(&passkey))
            .expect("start authentication");
        let (rcr, state) = bind_challenge(rcr, state, intent.digest()).expect("bind");
        let challenge: &[u8] = rcr.public_key.challenge.as_ref();
        assert_eq!(challenge, intent.digest().as_slice());
        let assertion = authenticator
            .do_authentication(origin.clone(), rcr)
            .expect("authenticator signs");
        let client_data: serde_json::Value =
            serde_json::from_slice(assertion.response.client_data_json.as_ref()).expect("json");
        assert_eq!(
            client_data["challenge"],
            serde_json::Value::String(base64_url(&intent.digest()))
        );
        webauthn
            .finish_passkey_authentication(&assertion, &state)
            .expect("the signed digest verifies");

        // An assertion made for one order's challenge does not answer another's.
        let other = OrderIntent::new(UserId(Uuid::from_u128(1)), paper_market(terms("1")));
        let (rcr2, state2) = webauthn
            .start_passkey_authentication(&[passkey])
            .expect("start authentication");
        let (_, state2) = bind_challenge(rcr2, state2, other.digest()).expect("bind");
        assert!(
            webauthn
                .finish_passkey_authentication(&assertion, &state2)
                .is_err()
        );
    }
}
