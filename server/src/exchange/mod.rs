//! Exchange adapters: the built-in paper exchange and the signed Binance REST adapter.

pub mod binance;
pub mod paper;

pub use binance::{BinanceExchange, BinanceSettings, BinanceSetupError};
pub use paper::{PaperExchange, PaperOutage, PaperPrices};
