//! Sign-up, login, logout and "who am I".

use leptos::prelude::*;

use super::SessionUser;
#[cfg(feature = "ssr")]
use super::context::{
    keep_device_token, presented_device_token, request_meta, require_user, services, session,
    start_session,
};
use crate::error::AppError;

/// Creates a trader account and signs it in.
#[server(endpoint = "auth/signup")]
pub async fn sign_up(
    email: String,
    password: String,
    password_confirm: String,
) -> Result<(), AppError> {
    use domain::account::{Email, Password, Role};
    use domain::audit::Actor;

    let email =
        Email::parse(&email).map_err(|e| AppError::from(domain::account::AccountError::from(e)))?;
    if password != password_confirm {
        return Err(AppError::Invalid("The two passwords do not match.".into()));
    }
    let password = Password::parse(password)
        .map_err(|e| AppError::from(domain::account::AccountError::from(e)))?;
    let services = services()?;
    let user = services
        .accounts
        .sign_up(
            email,
            password,
            Role::Trader,
            Actor::anonymous(),
            request_meta(),
        )
        .await?;
    start_session(&session().await?, &user, services.clock.now()).await?;
    // The account exists and is signed in either way; without the cookie this browser's
    // later sign-ins are merely counted like a stranger's.
    match services.accounts.remember_device(user.id).await {
        Ok(device) => keep_device_token(&services, &device)?,
        Err(e) => {
            tracing::warn!(error = %e, "could not remember the browser an account signed up in")
        }
    }
    leptos_axum::redirect("/");
    Ok(())
}

#[server(endpoint = "auth/login")]
pub async fn log_in(email: String, password: String) -> Result<(), AppError> {
    use domain::account::Password;

    // Any malformed input gets the same answer as a wrong password.
    let password = Password::for_login(password).map_err(|_| AppError::BadCredentials)?;
    let services = services()?;
    let device = presented_device_token(&services);
    let signed_in = services
        .accounts
        .log_in(&email, password, device, request_meta())
        .await?;
    start_session(&session().await?, &signed_in.user, signed_in.started_at).await?;
    if let Some(device) = &signed_in.device {
        keep_device_token(&services, device)?;
    }
    leptos_axum::redirect("/");
    Ok(())
}

#[server(endpoint = "auth/logout")]
pub async fn log_out() -> Result<(), AppError> {
    if let Some((user, session)) = super::context::current_user().await? {
        services()?
            .accounts
            .log_out(user.id, false, request_meta())
            .await?;
        session.flush().await?;
    }
    leptos_axum::redirect("/login");
    Ok(())
}

/// Ends every session of the signed-in user, on every device, including this one; with
/// `revoke_agent_tokens` (checked by default on the Account page), also revokes every agent
/// token of theirs, in the same transaction.
#[server(endpoint = "auth/logout-everywhere")]
pub async fn log_out_everywhere(
    #[server(default)] revoke_agent_tokens: bool,
) -> Result<(), AppError> {
    let (user, session) = require_user().await?;
    services()?
        .accounts
        .log_out_everywhere(user.id, revoke_agent_tokens, request_meta())
        .await?;
    session.flush().await?;
    leptos_axum::redirect("/login");
    Ok(())
}

/// Changes the signed-in user's password. It needs what adding a factor needs: on an account
/// with a factor, a step-up (with the security key, if there is one); without, a sign-in
/// within the step-up window. So a stolen session cannot lock its owner out. Every session of
/// the user then ends, this one included: sign in again with the new password. With
/// `revoke_agent_tokens` (checked by default on the Account page), every agent token too.
#[server(endpoint = "auth/password")]
pub async fn change_password(
    current_password: String,
    new_password: String,
    #[server(default)] revoke_agent_tokens: bool,
) -> Result<(), AppError> {
    use domain::account::{AccountError, Password};

    let (user, session) = require_user().await?;
    super::stepup::server::require_enrolment_allowed(&user, &session).await?;
    let current = Password::for_login(current_password)
        .map_err(|_| AppError::from(AccountError::WrongCurrentPassword))?;
    let new = Password::parse(new_password)?;
    let services = services()?;
    services
        .accounts
        .change_password(
            &user,
            current,
            new,
            revoke_agent_tokens,
            presented_device_token(&services),
            request_meta(),
        )
        .await?;
    session.flush().await?;
    leptos_axum::redirect("/login");
    Ok(())
}

#[server(endpoint = "auth/me")]
pub async fn who_am_i() -> Result<Option<SessionUser>, AppError> {
    Ok(super::context::current_user()
        .await?
        .map(|(user, _)| SessionUser::from(&user)))
}
