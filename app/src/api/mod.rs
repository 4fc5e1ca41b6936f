//! Server functions (thin: parse, call one use case, map the error) and their wire types.

pub mod admin;
pub mod audit;
pub mod auth;
#[cfg(feature = "ssr")]
pub mod context;
pub mod keys;
pub mod overview;
pub mod reports;
pub mod stepup;
pub mod trading;

use serde::{Deserialize, Serialize};

/// A role as the browser sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UserRole {
    Trader,
    Reviewer,
    Admin,
}

impl UserRole {
    pub const ALL: [UserRole; 3] = [UserRole::Trader, UserRole::Reviewer, UserRole::Admin];

    pub fn as_str(self) -> &'static str {
        match self {
            UserRole::Trader => "trader",
            UserRole::Reviewer => "reviewer",
            UserRole::Admin => "admin",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            UserRole::Trader => "Trader",
            UserRole::Reviewer => "Compliance reviewer",
            UserRole::Admin => "Admin",
        }
    }
}

#[cfg(feature = "ssr")]
impl From<domain::account::Role> for UserRole {
    fn from(role: domain::account::Role) -> Self {
        match role {
            domain::account::Role::Trader => UserRole::Trader,
            domain::account::Role::Reviewer => UserRole::Reviewer,
            domain::account::Role::Admin => UserRole::Admin,
        }
    }
}

/// The signed-in user, as shown in the navigation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionUser {
    pub id: String,
    pub email: String,
    pub role: UserRole,
}

#[cfg(feature = "ssr")]
impl From<&domain::account::User> for SessionUser {
    fn from(user: &domain::account::User) -> Self {
        Self {
            id: user.id.to_string(),
            email: user.email.as_str().to_owned(),
            role: user.role.into(),
        }
    }
}
