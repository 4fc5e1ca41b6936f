//! The embedded paper exchange: simulated trading with no real funds, and the default exchange.

use async_trait::async_trait;
use domain::keys::{
    ApiCredentials, Exchange, ExchangeError, ExchangeName, KeyEnvironment, KeyPermissions,
};

/// The built-in paper exchange. It answers permission checks itself; orders, the price feed and
/// fills will live here too, which is why it is a struct and not a bare function.
#[derive(Debug, Clone, Default)]
pub struct PaperExchange {}

impl PaperExchange {
    pub fn new() -> Self {
        Self {}
    }
}

#[async_trait]
impl Exchange for PaperExchange {
    fn name(&self) -> ExchangeName {
        ExchangeName::Paper
    }

    /// Paper money cannot leave the paper exchange, so every well-formed key (the vault already
    /// validated its form) may read and trade, and none can withdraw.
    async fn key_permissions(
        &self,
        environment: KeyEnvironment,
        _credentials: &ApiCredentials,
    ) -> Result<KeyPermissions, ExchangeError> {
        if environment != KeyEnvironment::Paper {
            return Err(ExchangeError::Rejected(
                "the paper exchange only has a paper environment".into(),
            ));
        }
        Ok(KeyPermissions {
            can_read: true,
            can_trade: true,
            can_withdraw: false,
            ip_restricted: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use secrecy::SecretString;

    use super::*;

    fn credentials() -> ApiCredentials {
        ApiCredentials::parse(
            SecretString::from("paper-key-0001"),
            SecretString::from("paper-secret-0001"),
        )
        .expect("well-formed credentials")
    }

    #[tokio::test]
    async fn paper_keys_read_and_trade_but_never_withdraw() {
        let exchange = PaperExchange::new();
        assert_eq!(exchange.name(), ExchangeName::Paper);
        let permissions = exchange
            .key_permissions(KeyEnvironment::Paper, &credentials())
            .await
            .expect("paper environment answers");
        assert_eq!(
            permissions,
            KeyPermissions {
                can_read: true,
                can_trade: true,
                can_withdraw: false,
                ip_restricted: false,
            }
        );
    }

    #[tokio::test]
    async fn paper_exchange_rejects_other_environments() {
        let exchange = PaperExchange::default();
        for environment in [KeyEnvironment::Testnet, KeyEnvironment::Live] {
            let err = exchange
                .key_permissions(environment, &credentials())
                .await
                .expect_err("only the paper environment exists");
            assert_eq!(
                err,
                ExchangeError::Rejected("the paper exchange only has a paper environment".into())
            );
        }
    }

    #[test]
    fn paper_offers_exactly_the_environments_it_answers() {
        assert_eq!(ExchangeName::Paper.environments(), &[KeyEnvironment::Paper]);
    }
}
