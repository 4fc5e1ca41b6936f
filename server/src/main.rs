use std::process::ExitCode;

use clap::Parser;
use server::cli::{AuditCommand, Cli, Command, ReportCommand};
use server::config::Settings;

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main]
async fn main() -> ExitCode {
    // A missing .env is fine; a malformed one is not.
    if let Err(e) = dotenvy::dotenv()
        && !e.not_found()
    {
        eprintln!("error: cannot read .env: {e}");
        return ExitCode::from(2);
    }
    let cli = Cli::parse();
    // Verifying a report is offline: it must work without settings or a database.
    if let Some(Command::Report {
        command: ReportCommand::Verify { file, public_key },
    }) = &cli.command
    {
        return report_verify(file, public_key.as_deref());
    }
    let settings = match Settings::load(cli.config.as_deref()) {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let result = match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => serve(settings).await,
        Command::Init => server::cli::ensure_master_key(&settings.data_dir)
            .map(|path| println!("data directory ready; master key at {}", path.display()))
            .map_err(Into::into),
        Command::CreateAdmin { email } => server::cli::create_admin(&settings, &email)
            .await
            .map_err(Into::into),
        Command::SetRole { email, role } => server::cli::set_role(&settings, &email, &role)
            .await
            .map_err(Into::into),
        Command::ResetFactors { email } => server::cli::reset_factors(&settings, &email)
            .await
            .map_err(Into::into),
        Command::Audit {
            command: AuditCommand::SignHead { head, reason },
        } => server::cli::audit_sign_head(&settings, &head, &reason, &mut std::io::stdout())
            .await
            .map_err(Into::into),
        Command::Audit {
            command: AuditCommand::Verify { expect_head },
        } => match server::cli::audit_verify(
            &settings,
            expect_head.as_deref(),
            &mut std::io::stdout(),
        )
        .await
        {
            Ok(true) => Ok(()),
            Ok(false) => return ExitCode::from(1),
            Err(e) => Err(e.into()),
        },
        Command::Report {
            command: ReportCommand::PublicKey,
        } => server::cli::report_public_key(&settings, &mut std::io::stdout())
            .await
            .map_err(Into::into),
        Command::Report {
            command: ReportCommand::Verify { file, public_key },
        } => return report_verify(&file, public_key.as_deref()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

/// Exit 0 when the report verifies under the pinned key, 1 when it does not verify, 2 when it
/// cannot be read, 3 when it is intact but no key was pinned: a script reading only the exit
/// code must not take a file anyone could have signed for a verified report.
fn report_verify(file: &std::path::Path, public_key: Option<&str>) -> ExitCode {
    use server::cli::ReportVerdict;
    match server::cli::report_verify(file, public_key, &mut std::io::stdout()) {
        Ok(ReportVerdict::Verified) => ExitCode::SUCCESS,
        Ok(ReportVerdict::Failed) => ExitCode::from(1),
        Ok(ReportVerdict::SignerNotChecked) => ExitCode::from(3),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::from(2)
        }
    }
}

async fn serve(settings: Settings) -> Result<(), Box<dyn std::error::Error>> {
    server::cli::ensure_master_key(&settings.data_dir)?;
    server::telemetry::init(&settings);
    // Baked in from Cargo.toml, so the binary started on its own (run.sh) serves the same site
    // as under cargo-leptos; LEPTOS_* variables still override.
    let (leptos_options, problems) = server::assets::leptos_options()?;
    for problem in problems {
        tracing::warn!("{problem}");
    }
    server::startup::serve(settings, leptos_options).await
}
